import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { InvalidConfigError } from '../core/errors.js';
import { openSqlite, type SqlDatabase } from '../state/sqlite-driver.js';
import type { BaseEntry, FileStamp } from './types.js';

/** The schema this code writes; a file with a newer one is refused (never downgraded in place). */
export const SYNC_STATE_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS base (
  path TEXT PRIMARY KEY, size INTEGER NOT NULL, sha256 TEXT NOT NULL, etag TEXT NOT NULL, version TEXT,
  ino TEXT, mtime_ns TEXT, ctime_ns TEXT, hlc TEXT NOT NULL, device TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS queue (
  path TEXT PRIMARY KEY, sha256 TEXT, size INTEGER, hlc TEXT NOT NULL, detected_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS versions (
  key TEXT PRIMARY KEY, path TEXT NOT NULL, hlc TEXT NOT NULL, device TEXT NOT NULL, reason TEXT NOT NULL,
  size INTEGER, sha256 TEXT, created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS versions_path ON versions(path);
CREATE TABLE IF NOT EXISTS conflicts (
  id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, policy TEXT NOT NULL, outcome TEXT NOT NULL,
  copy TEXT, at INTEGER NOT NULL);
`;

/** A local change seen but not yet propagated (kept across offline rounds, restarts and kill -9). */
export interface QueuedChange {
  path: string;
  /** The content seen; null for a deletion. */
  sha256: string | null;
  size: number | null;
  /** HLC stamp taken when this content was first seen. */
  hlc: string;
  detectedAt: number;
}

/** One entry of the versions area this device knows of. */
export interface VersionRecord {
  key: string;
  path: string;
  hlc: string;
  device: string;
  reason: string;
  size?: number;
  sha256?: string;
  createdAt: number;
}

export interface ConflictRecord {
  path: string;
  policy: string;
  outcome: string;
  copy?: string;
  at: number;
}

interface BaseRow {
  path: string; size: number; sha256: string; etag: string; version: string | null;
  ino: string | null; mtime_ns: string | null; ctime_ns: string | null; hlc: string; device: string;
}

/**
 * The durable state of one sync pair on one device (SQLite, WAL): the base per path, the queue of
 * local changes not yet propagated, the versions this device stashed, conflicts, and meta (schema
 * version, pair identity, device id, change cursor, HLC high-water mark).
 *
 * # Durability
 * Every method commits before it returns (`synchronous=NORMAL` in WAL: survives kill -9; a power
 * cut may lose the last commits, which costs a re-reconciliation of those paths, never bytes: the
 * base is only ever written after the action it records is done on both sides).
 */
export class SyncState {
  private readonly db: SqlDatabase;
  private readonly stmts;

  private constructor(readonly path: string, db: SqlDatabase) {
    this.db = db;
    const getMeta = db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE name = ?');
    this.stmts = {
      getMeta,
      setMeta: db.prepare<[string, string]>('INSERT INTO meta(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value'),
      delMeta: db.prepare<[string]>('DELETE FROM meta WHERE name = ?'),
      allBase: db.prepare<[], BaseRow>('SELECT * FROM base'),
      getBase: db.prepare<[string], BaseRow>('SELECT * FROM base WHERE path = ?'),
      putBase: db.prepare(`INSERT INTO base(path, size, sha256, etag, version, ino, mtime_ns, ctime_ns, hlc, device) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(path) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256, etag = excluded.etag, version = excluded.version,
          ino = excluded.ino, mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns, hlc = excluded.hlc, device = excluded.device`),
      delBase: db.prepare<[string]>('DELETE FROM base WHERE path = ?'),
      countBase: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM base'),
      allQueue: db.prepare<[], { path: string; sha256: string | null; size: number | null; hlc: string; detected_at: number }>('SELECT * FROM queue ORDER BY path'),
      putQueue: db.prepare('INSERT INTO queue(path, sha256, size, hlc, detected_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, hlc = excluded.hlc, detected_at = excluded.detected_at'),
      delQueue: db.prepare<[string]>('DELETE FROM queue WHERE path = ?'),
      oneQueue: db.prepare<[string], { path: string }>('SELECT path FROM queue WHERE path = ?'),
      someQueue: db.prepare<[number], { path: string }>('SELECT path FROM queue ORDER BY path LIMIT ?'),
      countQueue: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM queue'),
      putVersion: db.prepare('INSERT OR REPLACE INTO versions(key, path, hlc, device, reason, size, sha256, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      delVersion: db.prepare<[string]>('DELETE FROM versions WHERE key = ?'),
      allVersions: db.prepare<[], Record<string, unknown>>('SELECT * FROM versions ORDER BY path, hlc'),
      putConflict: db.prepare('INSERT INTO conflicts(path, policy, outcome, copy, at) VALUES (?, ?, ?, ?, ?)'),
      recentConflicts: db.prepare<[number], Record<string, unknown>>('SELECT * FROM conflicts ORDER BY id DESC LIMIT ?'),
      countConflicts: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM conflicts'),
    };
  }

  /**
   * Opens (creating) the state file of a pair. `pair` identifies the remote (a credential-free
   * URL); a file of another pair, or written by a newer schema, is InvalidConfig and left as is.
   * Without `pair` (status, restore) the recorded pair is taken as is.
   */
  static open(path: string, pair?: string): SyncState {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    const db = openSqlite(path);
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('busy_timeout = 5000');
      db.exec('CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)');
      const version = db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE name = ?').get('version')?.value;
      if (version !== undefined && Number(version) > SYNC_STATE_VERSION) {
        throw new InvalidConfigError(`sync state ${path} has schema version ${version}; this cloudmux reads version ${SYNC_STATE_VERSION} (upgrade cloudmux, or use another --state file)`);
      }
      db.exec(SCHEMA);
      const s = new SyncState(path, db);
      const existing = s.getMeta('pair');
      if (pair !== undefined && existing !== undefined && existing !== pair) {
        throw new InvalidConfigError(`sync state ${path} belongs to another pair (${existing}); use another --state file`);
      }
      if (version === undefined) s.setMeta('version', String(SYNC_STATE_VERSION));
      if (existing === undefined && pair !== undefined) s.setMeta('pair', pair);
      return s;
    } catch (e) {
      db.close();
      throw e;
    }
  }

  getMeta(name: string): string | undefined {
    return this.stmts.getMeta.get(name)?.value;
  }

  setMeta(name: string, value: string | undefined): void {
    if (value === undefined) this.stmts.delMeta.run(name);
    else this.stmts.setMeta.run(name, value);
  }

  /** Sets several meta values in one transaction. */
  setMetaMany(values: Record<string, string>): void {
    this.db.transaction(() => {
      for (const [k, v] of Object.entries(values)) this.stmts.setMeta.run(k, v);
    })();
  }

  bases(): Map<string, BaseEntry> {
    const out = new Map<string, BaseEntry>();
    for (const r of this.stmts.allBase.all()) out.set(r.path, fromRow(r));
    return out;
  }

  base(path: string): BaseEntry | undefined {
    const r = this.stmts.getBase.get(path);
    return r ? fromRow(r) : undefined;
  }

  /** Records `path`'s base and clears its queued change, in one transaction. */
  setBase(path: string, b: BaseEntry): void {
    this.db.transaction(() => {
      const s: Partial<FileStamp> = b.stamp ?? {};
      this.stmts.putBase.run(path, b.size, b.sha256, b.etag, b.version ?? null, s.ino ?? null, s.mtimeNs ?? null, s.ctimeNs ?? null, b.hlc, b.device);
      this.stmts.delQueue.run(path);
    })();
  }

  /** Forgets `path`'s base (both sides are gone) and its queued change. */
  dropBase(path: string): void {
    this.db.transaction(() => {
      this.stmts.delBase.run(path);
      this.stmts.delQueue.run(path);
    })();
  }

  baseCount(): number {
    return this.stmts.countBase.get()!.n;
  }

  queue(): Map<string, QueuedChange> {
    const out = new Map<string, QueuedChange>();
    for (const r of this.stmts.allQueue.all()) out.set(r.path, { path: r.path, sha256: r.sha256, size: r.size, hlc: r.hlc, detectedAt: r.detected_at });
    return out;
  }

  /** Replaces the queue entries of the given paths in one transaction (undefined: the path is back to its base). */
  updateQueue(changes: Iterable<[string, QueuedChange | undefined]>): void {
    this.db.transaction(() => {
      for (const [path, q] of changes) {
        if (q) this.stmts.putQueue.run(path, q.sha256, q.size, q.hlc, q.detectedAt);
        else this.stmts.delQueue.run(path);
      }
    })();
  }

  /**
   * Queues one local change made through the sync's own local store (offlineFirst), with the
   * clock's high-water mark, in one transaction: committed before the write is acknowledged.
   */
  enqueue(change: QueuedChange, hlc: string): void {
    this.db.transaction(() => {
      this.stmts.putQueue.run(change.path, change.sha256, change.size, change.hlc, change.detectedAt);
      this.stmts.setMeta.run('hlc', hlc);
    })();
  }

  isQueued(path: string): boolean {
    return this.stmts.oneQueue.get(path) !== undefined;
  }

  /** The paths of queued changes, in path order (at most `limit`). */
  queuedPaths(limit: number): string[] {
    return this.stmts.someQueue.all(limit).map((r) => r.path);
  }

  queueCount(): number {
    return this.stmts.countQueue.get()!.n;
  }

  addVersion(v: VersionRecord): void {
    this.stmts.putVersion.run(v.key, v.path, v.hlc, v.device, v.reason, v.size ?? null, v.sha256 ?? null, v.createdAt);
  }

  removeVersion(key: string): void {
    this.stmts.delVersion.run(key);
  }

  versions(): VersionRecord[] {
    return this.stmts.allVersions.all().map((r) => ({
      key: String(r.key), path: String(r.path), hlc: String(r.hlc), device: String(r.device), reason: String(r.reason),
      size: r.size === null ? undefined : Number(r.size), sha256: r.sha256 === null ? undefined : String(r.sha256), createdAt: Number(r.created_at),
    }));
  }

  addConflict(c: ConflictRecord): void {
    this.stmts.putConflict.run(c.path, c.policy, c.outcome, c.copy ?? null, c.at);
  }

  conflicts(limit = 50): ConflictRecord[] {
    return this.stmts.recentConflicts.all(limit).map((r) => ({
      path: String(r.path), policy: String(r.policy), outcome: String(r.outcome), copy: r.copy === null ? undefined : String(r.copy), at: Number(r.at),
    }));
  }

  conflictCount(): number {
    return this.stmts.countConflicts.get()!.n;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

function fromRow(r: BaseRow): BaseEntry {
  const stamp = r.ino !== null && r.mtime_ns !== null && r.ctime_ns !== null ? { ino: r.ino, size: r.size, mtimeNs: r.mtime_ns, ctimeNs: r.ctime_ns } : undefined;
  return { size: r.size, sha256: r.sha256, etag: r.etag, version: r.version ?? undefined, stamp, hlc: r.hlc, device: r.device };
}
