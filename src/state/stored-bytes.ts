/** Bytes a provider holds under one placement-policy prefix, as the catalog records them. */
export interface StoredBytes {
  provider: string;
  /** The longest of the given prefixes the keys start with ('' for the rest). */
  prefix: string;
  objects: number;
  bytes: number;
  /** Copies left by reads (copy on read), not base copies. */
  cached: boolean;
}

/**
 * SQL for "the longest of these prefixes that `key` starts with, else ''", with its parameters:
 * numbered from 1 for PostgreSQL, anonymous (one per use, in order) for SQLite. Characters are
 * compared as the database counts them on both sides.
 */
export function prefixCase(prefixes: readonly string[], dialect: 'sqlite' | 'postgres', key: string): { sql: string; params: string[] } {
  const sorted = [...new Set(prefixes)].filter((p) => p !== '').sort((a, b) => b.length - a.length || (a < b ? -1 : 1));
  if (sorted.length === 0) return { sql: "''", params: [] };
  if (dialect === 'sqlite') {
    const whens = sorted.map(() => `WHEN substr(${key}, 1, length(?)) = ? THEN ?`);
    return { sql: `CASE ${whens.join(' ')} ELSE '' END`, params: sorted.flatMap((p) => [p, p, p]) };
  }
  const whens = sorted.map((_, i) => `WHEN left(${key}, length($${i + 1}::text)) = $${i + 1}::text THEN $${i + 1}::text`);
  return { sql: `CASE ${whens.join(' ')} ELSE '' END`, params: sorted };
}

/** The query, for either dialect: base copies (replicas of the current version) and copies left by reads. */
export function storedBytesSql(dialect: 'sqlite' | 'postgres', tables: { objects: string; replicas: string; cached: string }, prefixes: readonly string[]): { sql: string; params: string[] } {
  const b = prefixCase(prefixes, dialect, 'o.key');
  const live = dialect === 'sqlite' ? 'o.deleted = 0' : 'NOT o.deleted';
  const sql = `
    SELECT provider, prefix, SUM(objects) AS objects, SUM(bytes) AS bytes, cached FROM (
      SELECT r.provider AS provider, ${b.sql} AS prefix, COUNT(*) AS objects, SUM(o.size) AS bytes, 0 AS cached
        FROM ${tables.replicas} r JOIN ${tables.objects} o ON o.key = r.key AND o.version = r.version AND ${live}
        GROUP BY 1, 2
      UNION ALL
      SELECT c.provider AS provider, ${b.sql} AS prefix, COUNT(*) AS objects, SUM(o.size) AS bytes, 1 AS cached
        FROM ${tables.cached} c JOIN ${tables.objects} o ON o.key = c.key
        GROUP BY 1, 2
    ) t GROUP BY provider, prefix, cached ORDER BY provider, prefix, cached`;
  // SQLite's anonymous parameters are consumed once per use: the CASE appears twice.
  return { sql, params: dialect === 'sqlite' ? [...b.params, ...b.params] : b.params };
}

export function toStoredBytes(r: { provider: string; prefix: string; objects: number | string; bytes: number | string | null; cached: number | string }): StoredBytes {
  return { provider: r.provider, prefix: r.prefix, objects: Number(r.objects), bytes: Number(r.bytes ?? 0), cached: Number(r.cached) === 1 };
}
