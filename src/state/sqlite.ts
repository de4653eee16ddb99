import { openSqlite, type SqlDatabase } from './sqlite-driver.js';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { InvalidConfigError } from '../core/errors.js';
import type {
  BacklogStats, CatalogListOptions, CatalogLookup, CatalogObject, CommitResult, DeleteRecord, OutboxEntry, PutRecord, Replica, StateStore,
} from './types.js';

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
INSERT OR IGNORE INTO cmx_meta (name, value) VALUES ('schema', '1');
`;

interface ObjectRow { key: string; version: number; deleted: number; size: number; sha256: string | null; content_type: string | null; metadata: string; updated_at: number }
interface OutboxRow {
  id: number; kind: string; key: string; version: number; provider: string; size: number; attempts: number; created_at: number;
  next_attempt_at: number; state: string; last_error: string | null; lease_owner: string | null; lease_until: number | null;
}

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
    this.db.exec(SCHEMA);
  }

  async nextVersion(): Promise<number> {
    return (this.db.prepare('UPDATE cmx_version SET last = last + 1 WHERE id = 1 RETURNING last').get() as { last: number }).last;
  }

  async lookup(key: string): Promise<CatalogLookup> {
    return this.lookupSync(key);
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
      const now = this.now();
      this.db.prepare(`INSERT INTO cmx_objects (key, version, deleted, size, sha256, content_type, metadata, updated_at) VALUES (?, ?, 0, ?, ?, ?, ?, ?)
        ON CONFLICT (key) DO UPDATE SET version = excluded.version, deleted = 0, size = excluded.size, sha256 = excluded.sha256,
          content_type = excluded.content_type, metadata = excluded.metadata, updated_at = excluded.updated_at`)
        .run(rec.key, rec.version, rec.size, rec.sha256 ?? null, rec.contentType ?? null, JSON.stringify(rec.metadata), rec.lastModified.getTime());
      const upsertReplica = this.db.prepare(`INSERT INTO cmx_replicas (key, provider, version, etag) VALUES (?, ?, ?, ?)
        ON CONFLICT (key, provider) DO UPDATE SET version = excluded.version, etag = excluded.etag`);
      for (const a of rec.acked) upsertReplica.run(rec.key, a.provider, rec.version, a.etag ?? null);
      const targets = new Set([...rec.acked.map((a) => a.provider), ...rec.owed]);
      // Whatever was owed to the targets before is superseded by this version.
      const dropOwed = this.db.prepare("DELETE FROM cmx_outbox WHERE key = ? AND provider = ? AND state = 'pending'");
      for (const p of targets) dropOwed.run(rec.key, p);
      this.db.prepare("DELETE FROM cmx_outbox WHERE key = ? AND kind = 'replicate' AND version < ? AND state = 'pending'").run(rec.key, rec.version);
      const entries: OutboxEntry[] = [];
      for (const p of rec.owed) entries.push(this.insertEntry('replicate', rec.key, rec.version, p, rec.size, now));
      // Providers left holding an older copy that is no longer wanted there.
      const others = this.db.prepare('SELECT provider FROM cmx_replicas WHERE key = ? AND version < ?').all(rec.key, rec.version) as { provider: string }[];
      for (const { provider } of others) {
        if (targets.has(provider)) continue;
        if (!this.hasPending(rec.key, provider, 'delete')) entries.push(this.insertEntry('delete', rec.key, rec.version, provider, 0, now));
      }
      return { committed: true, version: rec.version, entries };
    }).immediate();
  }

  async commitDelete(rec: DeleteRecord): Promise<CommitResult> {
    return this.db.transaction((): CommitResult => {
      const cur = this.db.prepare('SELECT version FROM cmx_objects WHERE key = ?').get(rec.key) as { version: number } | undefined;
      if (cur && cur.version > rec.version) return { committed: false, version: cur.version, entries: [] };
      const now = this.now();
      this.db.prepare(`INSERT INTO cmx_objects (key, version, deleted, size, metadata, updated_at) VALUES (?, ?, 1, 0, '{}', ?)
        ON CONFLICT (key) DO UPDATE SET version = excluded.version, deleted = 1, size = 0, sha256 = NULL, content_type = NULL, metadata = '{}', updated_at = excluded.updated_at`)
        .run(rec.key, rec.version, now);
      this.db.prepare("DELETE FROM cmx_outbox WHERE key = ? AND state = 'pending'").run(rec.key);
      const holders = (this.db.prepare('SELECT provider FROM cmx_replicas WHERE key = ?').all(rec.key) as { provider: string }[]).map((r) => r.provider);
      const entries: OutboxEntry[] = [];
      for (const p of new Set([...holders, ...rec.alsoOn])) {
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

  async claim(owner: string, limit: number, leaseMs: number): Promise<OutboxEntry[]> {
    return this.db.transaction((): OutboxEntry[] => {
      const now = this.now();
      const rows = this.db.prepare(`SELECT * FROM cmx_outbox WHERE state = 'pending' AND next_attempt_at <= ?
        AND (lease_until IS NULL OR lease_until < ?) ORDER BY next_attempt_at, id LIMIT ?`).all(now, now, limit) as OutboxRow[];
      const lease = this.db.prepare('UPDATE cmx_outbox SET lease_owner = ?, lease_until = ? WHERE id = ?');
      for (const r of rows) {
        lease.run(owner, now + leaseMs, r.id);
        r.lease_owner = owner;
        r.lease_until = now + leaseMs;
      }
      return rows.map(toEntry);
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
    const rows = this.db.prepare(`SELECT provider, COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes, MIN(created_at) AS oldest
      FROM cmx_outbox WHERE state = 'pending' GROUP BY provider`).all() as { provider: string; n: number; bytes: number; oldest: number }[];
    const dead = (this.db.prepare("SELECT COUNT(*) AS n FROM cmx_outbox WHERE state = 'dead'").get() as { n: number }).n;
    const stats: BacklogStats = { count: 0, bytes: 0, oldestAgeMs: 0, dead, byProvider: {} };
    let oldest = Infinity;
    for (const r of rows) {
      stats.count += r.n;
      stats.bytes += r.bytes;
      oldest = Math.min(oldest, r.oldest);
      stats.byProvider[r.provider] = { count: r.n, bytes: r.bytes };
    }
    if (oldest !== Infinity) stats.oldestAgeMs = Math.max(0, now - oldest);
    return stats;
  }

  async pruneTombstones(olderThanMs: number): Promise<number> {
    return this.db.prepare(`DELETE FROM cmx_objects WHERE deleted = 1 AND updated_at < ?
      AND NOT EXISTS (SELECT 1 FROM cmx_outbox o WHERE o.key = cmx_objects.key)
      AND NOT EXISTS (SELECT 1 FROM cmx_replicas r WHERE r.key = cmx_objects.key)`).run(this.now() - olderThanMs).changes;
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

  private insertEntry(kind: string, key: string, version: number, provider: string, size: number, now: number, leaseOwner?: string, leaseUntil?: number): OutboxEntry {
    const row = this.db.prepare(`INSERT INTO cmx_outbox (kind, key, version, provider, size, created_at, next_attempt_at, lease_owner, lease_until)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`).get(kind, key, version, provider, size, now, now, leaseOwner ?? null, leaseUntil ?? null) as OutboxRow;
    return toEntry(row);
  }
}

function replica(r: { provider: string; version: number; etag: string | null }): Replica {
  return r.etag === null ? { provider: r.provider, version: r.version } : { provider: r.provider, version: r.version, etag: r.etag };
}

function toObject(row: ObjectRow): CatalogObject {
  const o: CatalogObject = { key: row.key, version: row.version, size: row.size, metadata: JSON.parse(row.metadata) as Record<string, string>, lastModified: new Date(row.updated_at) };
  if (row.sha256 !== null) o.sha256 = row.sha256;
  if (row.content_type !== null) o.contentType = row.content_type;
  return o;
}

function toEntry(r: OutboxRow): OutboxEntry {
  const e: OutboxEntry = {
    id: r.id, kind: r.kind as OutboxEntry['kind'], key: r.key, version: r.version, provider: r.provider, size: r.size, attempts: r.attempts,
    createdAt: new Date(r.created_at), nextAttemptAt: new Date(r.next_attempt_at), state: r.state as OutboxEntry['state'],
  };
  if (r.last_error !== null) e.lastError = r.last_error;
  if (r.lease_owner !== null) e.leaseOwner = r.lease_owner;
  if (r.lease_until !== null) e.leaseUntil = new Date(r.lease_until);
  return e;
}
