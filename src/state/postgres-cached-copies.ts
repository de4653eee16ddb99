import type { QueryResultRow } from 'pg';
import { toAccessStat, toCachedCopy, type AccessStat, type AccessStatRow, type CachedCopy, type CachedCopyRow, type CachedCopyState } from './cached-copies.js';

/** Runs one statement (errors mapped by the state store). */
export type PgQuery = <R extends QueryResultRow>(op: string, key: string | undefined, sql: string, params: unknown[]) => Promise<R[]>;

/**
 * {@link CachedCopyState} in the PostgreSQL state schema. Each method is one statement, so two
 * routers at two locations never interleave inside one: `takeEvictable` deletes with
 * `FOR UPDATE SKIP LOCKED`, so two evictors never take the same copy.
 */
export class PostgresCachedCopies implements CachedCopyState {
  constructor(private readonly query: PgQuery, private readonly s: string) {}

  async recordRead(key: string, location: string, version: number, at: number): Promise<AccessStat | undefined> {
    // The row as it was before this read: the CTE sees the snapshot before the upsert.
    const rows = await this.query<AccessStatRow>('recordRead', key, `
      WITH before AS (SELECT key, location, version, reads, last_read FROM ${this.s}.access_stats WHERE key = $1 AND location = $2),
      up AS (
        INSERT INTO ${this.s}.access_stats (key, location, version, reads, last_read) VALUES ($1, $2, $3, 1, $4)
        ON CONFLICT (key, location) DO UPDATE SET
          reads = CASE WHEN ${this.s}.access_stats.version = EXCLUDED.version THEN ${this.s}.access_stats.reads + 1 ELSE 1 END,
          version = EXCLUDED.version,
          last_read = GREATEST(${this.s}.access_stats.last_read, EXCLUDED.last_read)
        RETURNING 1)
      SELECT b.key, b.location, b.version, b.reads, b.last_read FROM before b`, [key, location, version, at]);
    const b = rows[0];
    return b !== undefined && Number(b.version) === version ? toAccessStat(b) : undefined;
  }

  async accessStats(key: string): Promise<AccessStat[]> {
    const rows = await this.query<AccessStatRow>('accessStats', key, `SELECT key, location, version, reads, last_read FROM ${this.s}.access_stats WHERE key = $1 ORDER BY location`, [key]);
    return rows.map(toAccessStat);
  }

  async cachedCopy(key: string, provider: string, version: number): Promise<CachedCopy | undefined> {
    const rows = await this.query<CachedCopyRow>('cachedCopy', key, `SELECT key, provider, version, expires_at FROM ${this.s}.cached_copies WHERE key = $1 AND provider = $2 AND version = $3`, [key, provider, version]);
    return rows[0] && toCachedCopy(rows[0]);
  }

  async keepCachedCopy(c: CachedCopy): Promise<void> {
    await this.query('keepCachedCopy', c.key, `INSERT INTO ${this.s}.cached_copies (key, provider, version, expires_at) VALUES ($1, $2, $3, $4)
      ON CONFLICT (key, provider, version) DO UPDATE SET expires_at = GREATEST(${this.s}.cached_copies.expires_at, EXCLUDED.expires_at)`, [c.key, c.provider, c.version, c.expiresAt]);
  }

  async extendCachedCopy(key: string, provider: string, version: number, expiresAt: number): Promise<boolean> {
    const rows = await this.query('extendCachedCopy', key, `UPDATE ${this.s}.cached_copies SET expires_at = GREATEST(expires_at, $4)
      WHERE key = $1 AND provider = $2 AND version = $3 RETURNING 1 AS ok`, [key, provider, version, expiresAt]);
    return rows.length === 1;
  }

  async takeEvictable(now: number, limit: number): Promise<CachedCopy[]> {
    const rows = await this.query<CachedCopyRow>('takeEvictable', undefined, `
      DELETE FROM ${this.s}.cached_copies d USING (
        SELECT c.key, c.provider, c.version FROM ${this.s}.cached_copies c
        LEFT JOIN ${this.s}.objects o ON o.key = c.key
        WHERE c.expires_at <= $1 OR o.key IS NULL OR o.deleted OR o.version <> c.version
        ORDER BY c.expires_at LIMIT $2 FOR UPDATE OF c SKIP LOCKED) t
      WHERE d.key = t.key AND d.provider = t.provider AND d.version = t.version
      RETURNING d.key, d.provider, d.version, d.expires_at`, [now, limit]);
    return rows.map(toCachedCopy);
  }

  async cachedCopies(filter: { key?: string; limit?: number } = {}): Promise<CachedCopy[]> {
    const limit = filter.limit ?? 1000;
    const rows = filter.key === undefined
      ? await this.query<CachedCopyRow>('cachedCopies', undefined, `SELECT key, provider, version, expires_at FROM ${this.s}.cached_copies ORDER BY key, provider, version LIMIT $1`, [limit])
      : await this.query<CachedCopyRow>('cachedCopies', filter.key, `SELECT key, provider, version, expires_at FROM ${this.s}.cached_copies WHERE key = $1 ORDER BY provider, version LIMIT $2`, [filter.key, limit]);
    return rows.map(toCachedCopy);
  }
}
