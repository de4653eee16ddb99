/**
 * Copies left by reads (copy on read) and the per-object access statistics that choose their
 * TTLs, kept next to the catalog so that routers at several locations sharing one state see the
 * same copies. Times are milliseconds on the router's clock (injectable for tests).
 */

/** A copy of one version of a key that a read left on a provider at the reader's location. */
export interface CachedCopy {
  key: string;
  provider: string;
  /** The catalog version whose bytes the copy holds: a read may use it only while this is the current version. */
  version: number;
  /** When it may be evicted (ms since the epoch); each read served there pushes it out. */
  expiresAt: number;
}

/** Reads of one version of a key at one location. */
export interface AccessStat {
  key: string;
  location: string;
  version: number;
  /** Reads of this version there so far. */
  reads: number;
  /** Time of the last of them (ms). */
  lastRead: number;
}

/**
 * Cached copies and access statistics. Implemented by the SQLite and PostgreSQL state stores
 * ({@link StateStore.cachedCopies}); every method is one atomic statement.
 */
export interface CachedCopyState {
  /** Counts a read of `version` of `key` at `location` at `at`, returning the statistics as they were before it (undefined: the first read of this version there). */
  recordRead(key: string, location: string, version: number, at: number): Promise<AccessStat | undefined>;
  /** Every location's statistics for a key. */
  accessStats(key: string): Promise<AccessStat[]>;
  /** The recorded copy of `version` of `key` on `provider`, expired or not. */
  cachedCopy(key: string, provider: string, version: number): Promise<CachedCopy | undefined>;
  /** Records a copy, or pushes its expiry out (the later expiry wins). */
  keepCachedCopy(copy: CachedCopy): Promise<void>;
  /** Pushes out the expiry of a recorded copy; false if none is recorded (it was taken for eviction). */
  extendCachedCopy(key: string, provider: string, version: number, expiresAt: number): Promise<boolean>;
  /**
   * Removes and returns up to `limit` copies that may go: expired at `now`, or holding a version
   * that is no longer the key's current one (overwritten or deleted). Each copy goes to one caller,
   * which must then delete its bytes (and {@link keepCachedCopy} it back, expired, if it cannot).
   */
  takeEvictable(now: number, limit: number): Promise<CachedCopy[]>;
  /** Recorded copies (of one key, or all), for status pages and tests. */
  cachedCopies(filter?: { key?: string; limit?: number }): Promise<CachedCopy[]>;
}

/** SQLite schema step 4 (see src/state/sqlite.ts). */
export const SQLITE_CACHED_COPIES_SCHEMA = `
CREATE TABLE IF NOT EXISTS cmx_cached_copies (
  key TEXT NOT NULL,
  provider TEXT NOT NULL,
  version INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (key, provider, version)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cmx_cached_copies_expiry ON cmx_cached_copies (expires_at);
CREATE TABLE IF NOT EXISTS cmx_access_stats (
  key TEXT NOT NULL,
  location TEXT NOT NULL,
  version INTEGER NOT NULL,
  reads INTEGER NOT NULL,
  last_read INTEGER NOT NULL,
  PRIMARY KEY (key, location)
) WITHOUT ROWID;
UPDATE cmx_meta SET value = '4' WHERE name = 'schema';
`;

/** PostgreSQL migration: cached copies and access statistics (see src/state/postgres.ts). */
export function postgresCachedCopiesSql(s: string): string {
  return `
CREATE TABLE IF NOT EXISTS ${s}.cached_copies (
  key text COLLATE "C" NOT NULL,
  provider text NOT NULL,
  version bigint NOT NULL,
  expires_at bigint NOT NULL,
  PRIMARY KEY (key, provider, version)
);
CREATE INDEX IF NOT EXISTS cached_copies_expiry ON ${s}.cached_copies (expires_at);
CREATE TABLE IF NOT EXISTS ${s}.access_stats (
  key text COLLATE "C" NOT NULL,
  location text NOT NULL,
  version bigint NOT NULL,
  reads bigint NOT NULL,
  last_read bigint NOT NULL,
  PRIMARY KEY (key, location)
);
`;
}

export interface CachedCopyRow { key: string; provider: string; version: number; expires_at: number }
export interface AccessStatRow { key: string; location: string; version: number; reads: number; last_read: number }

export function toCachedCopy(r: CachedCopyRow): CachedCopy {
  return { key: r.key, provider: r.provider, version: Number(r.version), expiresAt: Number(r.expires_at) };
}

export function toAccessStat(r: AccessStatRow): AccessStat {
  return { key: r.key, location: r.location, version: Number(r.version), reads: Number(r.reads), lastRead: Number(r.last_read) };
}
