import type { SqlDatabase } from './sqlite-driver.js';
import { toAccessStat, toCachedCopy, type AccessStat, type AccessStatRow, type CachedCopy, type CachedCopyRow, type CachedCopyState } from './cached-copies.js';

/** {@link CachedCopyState} in the SQLite state database (schema 4). */
export class SqliteCachedCopies implements CachedCopyState {
  constructor(private readonly db: SqlDatabase) {}

  recordRead(key: string, location: string, version: number, at: number): Promise<AccessStat | undefined> {
    return Promise.resolve(this.db.transaction(() => {
      const before = this.db.prepare('SELECT key, location, version, reads, last_read FROM cmx_access_stats WHERE key = ? AND location = ?').get(key, location) as AccessStatRow | undefined;
      const same = before !== undefined && before.version === version;
      this.db.prepare(`INSERT INTO cmx_access_stats (key, location, version, reads, last_read) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (key, location) DO UPDATE SET version = excluded.version, reads = excluded.reads, last_read = MAX(cmx_access_stats.last_read, excluded.last_read)`)
        .run(key, location, version, same ? before.reads + 1 : 1, at);
      return same ? toAccessStat(before) : undefined;
    }).immediate());
  }

  accessStats(key: string): Promise<AccessStat[]> {
    const rows = this.db.prepare('SELECT key, location, version, reads, last_read FROM cmx_access_stats WHERE key = ? ORDER BY location').all(key) as AccessStatRow[];
    return Promise.resolve(rows.map(toAccessStat));
  }

  cachedCopy(key: string, provider: string, version: number): Promise<CachedCopy | undefined> {
    const row = this.db.prepare('SELECT key, provider, version, expires_at FROM cmx_cached_copies WHERE key = ? AND provider = ? AND version = ?').get(key, provider, version) as CachedCopyRow | undefined;
    return Promise.resolve(row && toCachedCopy(row));
  }

  keepCachedCopy(c: CachedCopy): Promise<void> {
    this.db.prepare(`INSERT INTO cmx_cached_copies (key, provider, version, expires_at) VALUES (?, ?, ?, ?)
      ON CONFLICT (key, provider, version) DO UPDATE SET expires_at = MAX(cmx_cached_copies.expires_at, excluded.expires_at)`).run(c.key, c.provider, c.version, c.expiresAt);
    return Promise.resolve();
  }

  extendCachedCopy(key: string, provider: string, version: number, expiresAt: number): Promise<boolean> {
    const r = this.db.prepare('UPDATE cmx_cached_copies SET expires_at = MAX(expires_at, ?) WHERE key = ? AND provider = ? AND version = ?').run(expiresAt, key, provider, version);
    return Promise.resolve(r.changes === 1);
  }

  takeEvictable(now: number, limit: number): Promise<CachedCopy[]> {
    return Promise.resolve(this.db.transaction(() => {
      const rows = this.db.prepare(`SELECT c.key, c.provider, c.version, c.expires_at FROM cmx_cached_copies c
        LEFT JOIN cmx_objects o ON o.key = c.key
        WHERE c.expires_at <= ? OR o.key IS NULL OR o.deleted = 1 OR o.version <> c.version
        ORDER BY c.expires_at LIMIT ?`).all(now, limit) as CachedCopyRow[];
      const del = this.db.prepare('DELETE FROM cmx_cached_copies WHERE key = ? AND provider = ? AND version = ?');
      for (const r of rows) del.run(r.key, r.provider, r.version);
      return rows.map(toCachedCopy);
    }).immediate());
  }

  cachedCopies(filter: { key?: string; limit?: number } = {}): Promise<CachedCopy[]> {
    const limit = filter.limit ?? 1000;
    const rows = (filter.key === undefined
      ? this.db.prepare('SELECT key, provider, version, expires_at FROM cmx_cached_copies ORDER BY key, provider, version LIMIT ?').all(limit)
      : this.db.prepare('SELECT key, provider, version, expires_at FROM cmx_cached_copies WHERE key = ? ORDER BY provider, version LIMIT ?').all(filter.key, limit)) as CachedCopyRow[];
    return Promise.resolve(rows.map(toCachedCopy));
  }
}
