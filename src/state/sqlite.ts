import { openSqlite, type SqlDatabase } from './sqlite-driver.js';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { InvalidConfigError } from '../core/errors.js';
import { formatChangeCursor, parseChangeCursor } from './change-cursor.js';
import { PRIORITY_CLASSES, PRIORITY_RANK, type PriorityClass } from '../core/priority.js';
import { backlogOf } from './backlog.js';
import type {
  BacklogStats, ClaimOptions, CatalogChangeOptions, CatalogChangePage, CatalogListOptions, CatalogLookup, CatalogObject, CommitResult, DeleteRecord, LeaseAttempt, OutboxEntry, PutRecord, Replica, StateStore,
  WriteLease,
} from './types.js';
import { redactInspection } from '../core/redact.js';
import { SQLITE_CACHED_COPIES_SCHEMA, type CachedCopyState } from './cached-copies.js';
import { SqliteCachedCopies } from './sqlite-cached-copies.js';
import { storedBytesSql, toStoredBytes, type StoredBytes } from './stored-bytes.js';
import { replica, supersededCopies, toChange, toEntry, toObject, type ChangeRowOf, type ObjectRowOf, type OutboxRowOf } from './catalog-rows.js';

export interface SqliteStateOptions {
  /** Database file, or `:memory:` for tests. */
  path: string;
  /** `full` (default) fsyncs every commit; `normal` (WAL) may lose the last commits on power loss, never on a process crash. */
  durability?: 'normal' | 'full';
  /** Clock for tests. */
  now?: () => number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS cmx_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cmx_version (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL);
INSERT OR IGNORE INTO cmx_version (id, last) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS cmx_objects (
  key TEXT PRIMARY KEY,
  version INTEGER NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0,
  size INTEGER NOT NULL DEFAULT 0,
  sha256 TEXT,
  content_type TEXT,
  metadata TEXT NOT NULL DEFAULT '{}',
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cmx_replicas (
  key TEXT NOT NULL,
  provider TEXT NOT NULL,
  version INTEGER NOT NULL,
  etag TEXT,
  PRIMARY KEY (key, provider)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cmx_outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  key TEXT NOT NULL,
  version INTEGER NOT NULL,
  provider TEXT NOT NULL,
  size INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  next_attempt_at INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending',
  last_error TEXT,
  lease_owner TEXT,
  lease_until INTEGER
);
CREATE INDEX IF NOT EXISTS cmx_outbox_due ON cmx_outbox (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS cmx_outbox_key ON cmx_outbox (key, provider);
CREATE TABLE IF NOT EXISTS cmx_write_leases (
  key TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  version INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO cmx_meta (name, value) VALUES ('schema', '1');
`;

/** The schema version this code writes (`cmx_meta.schema`); a database at a higher one is refused. */
export const SQLITE_SCHEMA_VERSION = 5;

/**
 * Schema 2: the change feed. Each catalog row carries the commit sequence of its last change
 * (assigned inside the write transaction; SQLite runs one writer at a time, so sequence order is
 * commit order), `cmx_change_feed` holds the counter, the newest pruned position and the catalog's
 * random id. Rows from schema 1 take their version as sequence (versions are unique).
 */
const CHANGE_FEED_SCHEMA = `
ALTER TABLE cmx_objects ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
UPDATE cmx_objects SET change_seq = version;
CREATE INDEX cmx_objects_change ON cmx_objects (change_seq);
CREATE TABLE cmx_change_feed (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last INTEGER NOT NULL,
  pruned INTEGER NOT NULL DEFAULT 0,
  catalog TEXT NOT NULL
);
INSERT INTO cmx_change_feed (id, last, catalog) VALUES (1, (SELECT COALESCE(MAX(change_seq), 0) FROM cmx_objects), lower(hex(randomblob(16))));
UPDATE cmx_meta SET value = '2' WHERE name = 'schema';
`;

/**
 * Schema 3: rows written by an older cloudmux sharing the file (it does not know change_seq: it
 * inserts the default 0 or leaves the old value) still take the next commit sequence, so the feed
 * delivers them. This code always sets a new sequence itself, so the triggers do not fire for it.
 */
const CHANGE_FEED_TRIGGERS = `
CREATE TRIGGER cmx_objects_seq_insert AFTER INSERT ON cmx_objects WHEN NEW.change_seq = 0 BEGIN
  UPDATE cmx_change_feed SET last = last + 1 WHERE id = 1;
  UPDATE cmx_objects SET change_seq = (SELECT last FROM cmx_change_feed WHERE id = 1) WHERE key = NEW.key;
END;
CREATE TRIGGER cmx_objects_seq_update AFTER UPDATE ON cmx_objects WHEN NEW.change_seq = OLD.change_seq BEGIN
  UPDATE cmx_change_feed SET last = last + 1 WHERE id = 1;
  UPDATE cmx_objects SET change_seq = (SELECT last FROM cmx_change_feed WHERE id = 1) WHERE key = NEW.key;
END;
UPDATE cmx_meta SET value = '3' WHERE name = 'schema';
`;

/**
 * Schema 5: priority classes. Each outbox entry carries its class's rank (0 critical, 1 normal,
 * 2 bulk); rows an older cloudmux writes take the default, normal. Claims read it through the
 * (state, priority, next_attempt_at) index.
 */
const PRIORITY_SCHEMA = `
ALTER TABLE cmx_outbox ADD COLUMN priority INTEGER NOT NULL DEFAULT 1;
CREATE INDEX cmx_outbox_class_due ON cmx_outbox (state, priority, next_attempt_at);
UPDATE cmx_meta SET value = '5' WHERE name = 'schema';
`;

type ChangeRow = ChangeRowOf<number> & { change_seq: number };
type ObjectRow = ObjectRowOf<number, number>;
type OutboxRow = OutboxRowOf<number>;

/**
 * StateStore in an embedded SQLite database (WAL). Several processes may share the file: write
 * transactions are IMMEDIATE and claims use leases, so two workers never hold the same entry.
 * Keys are TEXT with the default BINARY collation, which compares UTF-8 bytes: catalog order is
 * the providers' listing order.
 */
export class SqliteStateStore implements StateStore {
  readonly kind = 'sqlite';
  private readonly db: SqlDatabase;
  private readonly now: () => number;
  /** Copies left by reads and access statistics (schema 4). */
  readonly cachedCopies: CachedCopyState;

  constructor(private readonly options: SqliteStateOptions) {
    if (options.path !== ':memory:') mkdirSync(dirname(options.path), { recursive: true });
    try {
      this.db = openSqlite(options.path);
    } catch (e) {
      throw new InvalidConfigError(`cannot open state database ${options.path}: ${(e as Error).message}`, { cause: e });
    }
    this.now = options.now ?? Date.now;
    this.db.pragma('journal_mode = WAL');
    this.db.pragma(`synchronous = ${options.durability === 'normal' ? 'NORMAL' : 'FULL'}`);
    this.db.pragma('busy_timeout = 10000');
    this.refuseNewer();
    this.db.exec(SCHEMA);
    this.migrate();
    this.cachedCopies = new SqliteCachedCopies(this.db);
  }

  /**
   * The same rule as the PostgreSQL schema: a database a newer cloudmux wrote is refused before
   * anything is touched (InvalidConfig naming both versions), never half-understood.
   */
  private refuseNewer(): void {
    const hasMeta = this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cmx_meta'").get() !== undefined;
    const row = hasMeta ? this.db.prepare("SELECT value FROM cmx_meta WHERE name = 'schema'").get() as { value: string } | undefined : undefined;
    const found = row ? Number(row.value) : undefined;
    if (found !== undefined && !(found <= SQLITE_SCHEMA_VERSION)) {
      this.db.close();
      throw new InvalidConfigError(`state database ${this.options.path} is at schema version ${row!.value}, newer than this cloudmux understands (${SQLITE_SCHEMA_VERSION})`, { provider: 'sqlite' });
    }
  }

  /** Brings an older database up to the current schema (once, even with several processes opening it at once). */
  private migrate(): void {
    const version = (): number => Number((this.db.prepare("SELECT value FROM cmx_meta WHERE name = 'schema'").get() as { value: string }).value);
    if (version() >= SQLITE_SCHEMA_VERSION) return;
    this.db.transaction(() => {
      if (version() < 2) this.db.exec(CHANGE_FEED_SCHEMA);
      if (version() < 3) this.db.exec(CHANGE_FEED_TRIGGERS);
      // Schema 4: copies left by reads and per-object access statistics (src/state/cached-copies.ts).
      if (version() < 4) this.db.exec(SQLITE_CACHED_COPIES_SCHEMA);
      if (version() < 5) this.db.exec(PRIORITY_SCHEMA);
    }).immediate();
  }

  storedBytes(prefixes: readonly string[]): Promise<StoredBytes[]> {
    const q = storedBytesSql('sqlite', { objects: 'cmx_objects', replicas: 'cmx_replicas', cached: 'cmx_cached_copies' }, prefixes);
    const rows = this.db.prepare(q.sql).all(...q.params) as Parameters<typeof toStoredBytes>[0][];
    return Promise.resolve(rows.map(toStoredBytes));
  }

  /** Inside a write transaction: the next commit sequence. */
  private nextChangeSeq(): number {
    return (this.db.prepare('UPDATE cmx_change_feed SET last = last + 1 WHERE id = 1 RETURNING last').get() as { last: number }).last;
  }

  async nextVersion(): Promise<number> {
    return (this.db.prepare('UPDATE cmx_version SET last = last + 1 WHERE id = 1 RETURNING last').get() as { last: number }).last;
  }

  async lookup(key: string): Promise<CatalogLookup> {
    return this.lookupSync(key);
  }

  async acquireWrite(key: string, owner: string, leaseMs: number): Promise<LeaseAttempt> {
    return this.db.transaction((): LeaseAttempt => {
      const now = this.now();
      const held = this.db.prepare('SELECT owner, expires_at FROM cmx_write_leases WHERE key = ?').get(key) as { owner: string; expires_at: number } | undefined;
      if (held && held.expires_at >= now) return { granted: false, holder: held.owner, remainingMs: held.expires_at - now };
      const version = (this.db.prepare('UPDATE cmx_version SET last = last + 1 WHERE id = 1 RETURNING last').get() as { last: number }).last;
      this.db.prepare(`INSERT INTO cmx_write_leases (key, owner, version, expires_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, version = excluded.version, expires_at = excluded.expires_at`).run(key, owner, version, now + leaseMs);
      return { granted: true, lease: { key, owner, version } };
    }).immediate();
  }

  async renewWrite(lease: WriteLease, leaseMs: number): Promise<boolean> {
    return this.db.prepare('UPDATE cmx_write_leases SET expires_at = ? WHERE key = ? AND owner = ? AND version = ?')
      .run(this.now() + leaseMs, lease.key, lease.owner, lease.version).changes === 1;
  }

  async releaseWrite(lease: WriteLease): Promise<void> {
    this.db.prepare('DELETE FROM cmx_write_leases WHERE key = ? AND owner = ? AND version = ?').run(lease.key, lease.owner, lease.version);
  }

  /** Inside a transaction: false when `lease` is no longer its writer's; else releases it. */
  private takeBackLease(lease: WriteLease | undefined, keep = false): boolean {
    if (!lease) return true;
    if (keep) return this.db.prepare('SELECT 1 FROM cmx_write_leases WHERE key = ? AND owner = ? AND version = ?').get(lease.key, lease.owner, lease.version) !== undefined;
    return this.db.prepare('DELETE FROM cmx_write_leases WHERE key = ? AND owner = ? AND version = ?').run(lease.key, lease.owner, lease.version).changes === 1;
  }

  private lookupSync(key: string): CatalogLookup {
    const row = this.db.prepare('SELECT * FROM cmx_objects WHERE key = ?').get(key) as ObjectRow | undefined;
    if (!row) return { state: 'unknown' };
    if (row.deleted) return { state: 'deleted', version: row.version };
    const replicas = this.db.prepare('SELECT provider, version, etag FROM cmx_replicas WHERE key = ? ORDER BY provider').all(key) as { provider: string; version: number; etag: string | null }[];
    const holders: Replica[] = [];
    const stale: Replica[] = [];
    for (const r of replicas) (r.version === row.version ? holders : stale).push(replica(r));
    return { state: 'live', object: toObject(row), holders, stale };
  }

  async commitPut(rec: PutRecord): Promise<CommitResult> {
    return this.db.transaction((): CommitResult => {
      const cur = this.db.prepare('SELECT version, deleted FROM cmx_objects WHERE key = ?').get(rec.key) as { version: number; deleted: number } | undefined;
      if (cur && (rec.onlyIfUnknown || cur.version > rec.version)) return { committed: false, version: cur.version, entries: [] };
      if (!this.takeBackLease(rec.lease)) return { committed: false, fenced: true, version: cur?.version ?? 0, entries: [] };
      const now = this.now();
      this.db.prepare(`INSERT INTO cmx_objects (key, version, deleted, size, sha256, content_type, metadata, updated_at, change_seq) VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (key) DO UPDATE SET version = excluded.version, deleted = 0, size = excluded.size, sha256 = excluded.sha256,
          content_type = excluded.content_type, metadata = excluded.metadata, updated_at = excluded.updated_at, change_seq = excluded.change_seq`)
        .run(rec.key, rec.version, rec.size, rec.sha256 ?? null, rec.contentType ?? null, JSON.stringify(rec.metadata), rec.lastModified.getTime(), this.nextChangeSeq());
      const upsertReplica = this.db.prepare(`INSERT INTO cmx_replicas (key, provider, version, etag) VALUES (?, ?, ?, ?)
        ON CONFLICT (key, provider) DO UPDATE SET version = excluded.version, etag = excluded.etag`);
      for (const a of rec.acked) upsertReplica.run(rec.key, a.provider, rec.version, a.etag ?? null);
      const targets = new Set([...rec.acked.map((a) => a.provider), ...rec.owed]);
      // Whatever was owed to the targets before is superseded by this version.
      const dropOwed = this.db.prepare("DELETE FROM cmx_outbox WHERE key = ? AND provider = ? AND state = 'pending'");
      for (const p of targets) dropOwed.run(rec.key, p);
      const superseded = this.db.prepare("DELETE FROM cmx_outbox WHERE key = ? AND kind = 'replicate' AND version < ? AND state = 'pending' RETURNING provider")
        .all(rec.key, rec.version) as { provider: string }[];
      const entries: OutboxEntry[] = [];
      for (const p of rec.owed) entries.push(this.insertEntry('replicate', rec.key, rec.version, p, rec.size, now, undefined, undefined, rec.priority));
      // Providers left holding an older copy that is no longer wanted there: a recorded one, or one a
      // superseded replica may have left (a copy that landed with its answer lost; see supersededCopies).
      const others = this.db.prepare('SELECT provider FROM cmx_replicas WHERE key = ? AND version < ?').all(rec.key, rec.version) as { provider: string }[];
      const deleting = new Set((this.db.prepare("SELECT provider FROM cmx_outbox WHERE key = ? AND kind = 'delete' AND state = 'pending'").all(rec.key) as { provider: string }[])
        .map((r) => r.provider));
      for (const provider of supersededCopies([...others, ...superseded, ...(rec.mayHold ?? []).map((provider) => ({ provider }))], targets, deleting)) {
        entries.push(this.insertEntry('delete', rec.key, rec.version, provider, 0, now, undefined, undefined, rec.priority));
      }
      return { committed: true, version: rec.version, entries };
    }).immediate();
  }

  async commitDelete(rec: DeleteRecord): Promise<CommitResult> {
    return this.db.transaction((): CommitResult => {
      const cur = this.db.prepare('SELECT version FROM cmx_objects WHERE key = ?').get(rec.key) as { version: number } | undefined;
      if (cur && cur.version > rec.version) return { committed: false, version: cur.version, entries: [] };
      if (!this.takeBackLease(rec.lease, rec.keepLease)) return { committed: false, fenced: true, version: cur?.version ?? 0, entries: [] };
      const now = this.now();
      this.db.prepare(`INSERT INTO cmx_objects (key, version, deleted, size, metadata, updated_at, change_seq) VALUES (?, ?, 1, 0, '{}', ?, ?)
        ON CONFLICT (key) DO UPDATE SET version = excluded.version, deleted = 1, size = 0, sha256 = NULL, content_type = NULL, metadata = '{}',
          updated_at = excluded.updated_at, change_seq = excluded.change_seq`)
        .run(rec.key, rec.version, now, this.nextChangeSeq());
      // What was owed is superseded; a provider it was owed to may hold a copy (a replica that landed
      // unseen, a delete not done yet), recorded or not: owed a delete like every recorded copy.
      const owedTo = (this.db.prepare("DELETE FROM cmx_outbox WHERE key = ? AND state = 'pending' RETURNING provider").all(rec.key) as { provider: string }[]).map((r) => r.provider);
      const holders = (this.db.prepare('SELECT provider FROM cmx_replicas WHERE key = ?').all(rec.key) as { provider: string }[]).map((r) => r.provider);
      const entries: OutboxEntry[] = [];
      for (const p of new Set([...holders, ...owedTo, ...rec.alsoOn].sort())) {
        entries.push(this.insertEntry('delete', rec.key, rec.version, p, 0, now, rec.leaseOwner, rec.leaseOwner ? now + (rec.leaseMs ?? 60_000) : undefined));
      }
      return { committed: true, version: rec.version, entries };
    }).immediate();
  }

  async repairReplica(key: string, provider: string): Promise<OutboxEntry | undefined> {
    return this.db.transaction((): OutboxEntry | undefined => {
      const had = this.db.prepare('SELECT version FROM cmx_replicas WHERE key = ? AND provider = ?').get(key, provider) as { version: number } | undefined;
      this.db.prepare('DELETE FROM cmx_replicas WHERE key = ? AND provider = ?').run(key, provider);
      const cur = this.db.prepare('SELECT version, deleted, size FROM cmx_objects WHERE key = ?').get(key) as { version: number; deleted: number; size: number } | undefined;
      const now = this.now();
      if (cur && !cur.deleted && had?.version === cur.version) {
        if (this.hasPending(key, provider, 'replicate')) return undefined;
        this.db.prepare("DELETE FROM cmx_outbox WHERE key = ? AND provider = ? AND state = 'pending'").run(key, provider);
        return this.insertEntry('replicate', key, cur.version, provider, cur.size, now);
      }
      if (this.hasPending(key, provider)) return undefined;
      return this.insertEntry('delete', key, cur?.version ?? 0, provider, 0, now);
    }).immediate();
  }

  async listObjects(opts: CatalogListOptions): Promise<CatalogObject[]> {
    const prefix = opts.prefix ?? '';
    const rows = opts.startAfter !== undefined
      ? this.db.prepare('SELECT * FROM cmx_objects WHERE deleted = 0 AND key > ? AND key >= ? ORDER BY key LIMIT ?').all(opts.startAfter, prefix, opts.limit)
      : this.db.prepare('SELECT * FROM cmx_objects WHERE deleted = 0 AND key >= ? ORDER BY key LIMIT ?').all(prefix, opts.limit);
    const out: CatalogObject[] = [];
    for (const row of rows as ObjectRow[]) {
      if (!row.key.startsWith(prefix)) break;
      out.push(toObject(row));
    }
    return out;
  }

  async claim(owner: string, limit: number, leaseMs: number, opts: ClaimOptions = {}): Promise<OutboxEntry[]> {
    return this.db.transaction((): OutboxEntry[] => {
      const now = this.now();
      const allowed = (opts.classes ?? PRIORITY_CLASSES).map((c) => PRIORITY_RANK[c]);
      let where = `state = 'pending' AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?) AND priority IN (${allowed.map(() => '?').join(', ')})`;
      const args: unknown[] = [now, now, ...allowed];
      if (opts.providers) {
        where += ` AND provider IN (${opts.providers.map(() => '?').join(', ') || 'NULL'})`;
        args.push(...opts.providers);
      }
      const rows: OutboxRow[] = [];
      // The reserved slots first, oldest due first within each class; then the rest, most urgent first.
      for (const c of PRIORITY_CLASSES) {
        const q = Math.min(opts.quota?.[c] ?? 0, limit - rows.length);
        if (q <= 0 || !allowed.includes(PRIORITY_RANK[c])) continue;
        rows.push(...this.db.prepare(`SELECT * FROM cmx_outbox WHERE ${where} AND priority = ? ORDER BY next_attempt_at, id LIMIT ?`).all(...args, PRIORITY_RANK[c], q) as OutboxRow[]);
      }
      if (rows.length < limit) {
        const taken = rows.map((r) => r.id);
        rows.push(...this.db.prepare(`SELECT * FROM cmx_outbox WHERE ${where} AND id NOT IN (${taken.map(() => '?').join(', ')})
          ORDER BY priority, next_attempt_at, id LIMIT ?`).all(...args, ...taken, limit - rows.length) as OutboxRow[]);
      }
      const lease = this.db.prepare('UPDATE cmx_outbox SET lease_owner = ?, lease_until = ? WHERE id = ?');
      for (const r of rows) {
        lease.run(owner, now + leaseMs, r.id);
        r.lease_owner = owner;
        r.lease_until = now + leaseMs;
      }
      return rows.sort((a, b) => a.priority - b.priority || a.next_attempt_at - b.next_attempt_at || a.id - b.id).map(toEntry);
    }).immediate();
  }

  async completeReplicate(e: OutboxEntry, etag?: string): Promise<boolean> {
    return this.db.transaction((): boolean => {
      this.db.prepare('DELETE FROM cmx_outbox WHERE id = ?').run(e.id);
      const cur = this.db.prepare('SELECT version, deleted FROM cmx_objects WHERE key = ?').get(e.key) as { version: number; deleted: number } | undefined;
      if (!cur || cur.deleted || cur.version !== e.version) {
        // The key moved on while we copied; the copy we made is now a stale one to clean up.
        this.db.prepare(`INSERT INTO cmx_replicas (key, provider, version, etag) VALUES (?, ?, ?, ?)
          ON CONFLICT (key, provider) DO UPDATE SET version = excluded.version, etag = excluded.etag WHERE cmx_replicas.version < excluded.version`)
          .run(e.key, e.provider, e.version, etag ?? null);
        if (!this.hasPending(e.key, e.provider)) this.insertEntry('delete', e.key, cur?.version ?? e.version, e.provider, 0, this.now());
        return false;
      }
      this.db.prepare(`INSERT INTO cmx_replicas (key, provider, version, etag) VALUES (?, ?, ?, ?)
        ON CONFLICT (key, provider) DO UPDATE SET version = excluded.version, etag = excluded.etag`).run(e.key, e.provider, e.version, etag ?? null);
      return true;
    }).immediate();
  }

  async completeDelete(e: OutboxEntry): Promise<void> {
    this.db.transaction((): void => {
      this.db.prepare('DELETE FROM cmx_outbox WHERE id = ?').run(e.id);
      const cur = this.db.prepare('SELECT version, deleted FROM cmx_objects WHERE key = ?').get(e.key) as { version: number; deleted: number } | undefined;
      if (!cur || cur.deleted) this.db.prepare('DELETE FROM cmx_replicas WHERE key = ? AND provider = ?').run(e.key, e.provider);
      else this.db.prepare('DELETE FROM cmx_replicas WHERE key = ? AND provider = ? AND version < ?').run(e.key, e.provider, cur.version);
    }).immediate();
  }

  async discard(id: number): Promise<void> {
    this.db.prepare('DELETE FROM cmx_outbox WHERE id = ?').run(id);
  }

  async retryLater(id: number, error: string, at: Date, countAttempt: boolean): Promise<void> {
    this.db.prepare(`UPDATE cmx_outbox SET attempts = attempts + ?, last_error = ?, next_attempt_at = ?, lease_owner = NULL, lease_until = NULL WHERE id = ?`)
      .run(countAttempt ? 1 : 0, error.slice(0, 2000), at.getTime(), id);
  }

  async deadLetter(id: number, reason: string): Promise<void> {
    this.db.prepare(`UPDATE cmx_outbox SET state = 'dead', attempts = attempts + 1, last_error = ?, lease_owner = NULL, lease_until = NULL WHERE id = ?`)
      .run(reason.slice(0, 2000), id);
  }

  async requeueDead(ids?: number[]): Promise<number> {
    const now = this.now();
    if (!ids) return this.db.prepare("UPDATE cmx_outbox SET state = 'pending', attempts = 0, next_attempt_at = ? WHERE state = 'dead'").run(now).changes;
    const stmt = this.db.prepare("UPDATE cmx_outbox SET state = 'pending', attempts = 0, next_attempt_at = ? WHERE state = 'dead' AND id = ?");
    return this.db.transaction(() => ids.reduce((n, id) => n + stmt.run(now, id).changes, 0)).immediate();
  }

  async entries(filter: { key?: string; state?: 'pending' | 'dead'; limit?: number } = {}): Promise<OutboxEntry[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.key !== undefined) { where.push('key = ?'); args.push(filter.key); }
    if (filter.state !== undefined) { where.push('state = ?'); args.push(filter.state); }
    const sql = `SELECT * FROM cmx_outbox ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id LIMIT ?`;
    return (this.db.prepare(sql).all(...args, filter.limit ?? 1000) as OutboxRow[]).map(toEntry);
  }

  async backlog(): Promise<BacklogStats> {
    const now = this.now();
    return this.db.transaction((): BacklogStats => {
      const rows = this.db.prepare(`SELECT provider, priority, COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes, MIN(created_at) AS oldest
        FROM cmx_outbox WHERE state = 'pending' GROUP BY provider, priority`).all() as { provider: string; priority: number; n: number; bytes: number; oldest: number }[];
      const dead = (this.db.prepare("SELECT COUNT(*) AS n FROM cmx_outbox WHERE state = 'dead'").get() as { n: number }).n;
      return backlogOf(rows, dead, now);
    })();
  }

  async pruneTombstones(olderThanMs: number): Promise<number> {
    return this.db.transaction((): number => {
      const gone = this.db.prepare(`DELETE FROM cmx_objects WHERE deleted = 1 AND updated_at < ?
        AND NOT EXISTS (SELECT 1 FROM cmx_outbox o WHERE o.key = cmx_objects.key)
        AND NOT EXISTS (SELECT 1 FROM cmx_replicas r WHERE r.key = cmx_objects.key) RETURNING change_seq`).all(this.now() - olderThanMs) as { change_seq: number }[];
      // A feed reader whose cursor is below a forgotten delete could miss it: such cursors reset.
      const newest = gone.reduce((m, r) => Math.max(m, r.change_seq), 0);
      if (newest > 0) this.db.prepare('UPDATE cmx_change_feed SET pruned = MAX(pruned, ?) WHERE id = 1').run(newest);
      return gone.length;
    }).immediate();
  }

  async changesSince(cursor: string | undefined, opts: CatalogChangeOptions): Promise<CatalogChangePage> {
    const after = cursor === undefined ? undefined : parseChangeCursor(cursor, this.kind);
    // One read transaction: the counter, the pruned position and the rows come from one snapshot.
    return this.db.transaction((): CatalogChangePage => {
      const feed = this.db.prepare('SELECT last, pruned, catalog FROM cmx_change_feed WHERE id = 1').get() as { last: number; pruned: number; catalog: string };
      const at = (seq: number): string => formatChangeCursor({ kind: 's', catalog: feed.catalog, seq });
      let from = 0;
      if (after) {
        // Another catalog, a position this catalog never reached (a restored file), or deletes forgotten past it.
        if (after.kind !== 's' || after.catalog !== feed.catalog || after.seq > feed.last || after.seq < feed.pruned) {
          return { changes: [], cursor: at(feed.last), more: false, reset: true };
        }
        from = after.seq;
      }
      const prefix = opts.prefix ?? '';
      const rows = (prefix === ''
        ? this.db.prepare('SELECT key, version, deleted, size, sha256, change_seq FROM cmx_objects WHERE change_seq > ? ORDER BY change_seq LIMIT ?').all(from, opts.limit + 1)
        : this.db.prepare(`SELECT key, version, deleted, size, sha256, change_seq FROM cmx_objects WHERE change_seq > ? AND substr(key, 1, ?) = ?
            ORDER BY change_seq LIMIT ?`).all(from, [...prefix].length, prefix, opts.limit + 1)) as ChangeRow[];
      const more = rows.length > opts.limit;
      if (more) rows.length = opts.limit;
      return { changes: rows.map(toChange), cursor: at(more ? rows[rows.length - 1]!.change_seq : feed.last), more, reset: false };
    })();
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  toString(): string {
    return `SqliteStateStore(${this.options.path})`;
  }

  private hasPending(key: string, provider: string, kind?: string): boolean {
    const row = kind
      ? this.db.prepare("SELECT 1 FROM cmx_outbox WHERE key = ? AND provider = ? AND kind = ? AND state = 'pending' LIMIT 1").get(key, provider, kind)
      : this.db.prepare("SELECT 1 FROM cmx_outbox WHERE key = ? AND provider = ? AND state = 'pending' LIMIT 1").get(key, provider);
    return row !== undefined;
  }

  private insertEntry(kind: string, key: string, version: number, provider: string, size: number, now: number, leaseOwner?: string, leaseUntil?: number, priority: PriorityClass = 'normal'): OutboxEntry {
    const row = this.db.prepare(`INSERT INTO cmx_outbox (kind, key, version, provider, size, created_at, next_attempt_at, lease_owner, lease_until, priority)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`).get(kind, key, version, provider, size, now, now, leaseOwner ?? null, leaseUntil ?? null, PRIORITY_RANK[priority]) as OutboxRow;
    return toEntry(row);
  }
}
redactInspection(SqliteStateStore);
