import { createHash } from 'node:crypto';
import type { Pool, PoolClient, QueryResult, QueryResultRow } from 'pg';
import { InvalidConfigError } from '../core/errors.js';
import { redactUrl } from '../registry.js';
import { PG_PROVIDER, isRetryableTransaction, mapPgError } from './postgres-errors.js';
import type {
  BacklogStats, CatalogListOptions, CatalogLookup, CatalogObject, CommitResult, DeleteRecord, OutboxEntry, OutboxKind, PutRecord, Replica, StateStore,
} from './types.js';

export interface PostgresStateOptions {
  /** Connection URL, `postgres://user:password@host:5432/database` (libpq-style `?sslmode=` etc. work). */
  url: string;
  /** Schema holding cloudmux's tables (created if missing). Default `cloudmux`. */
  schema?: string;
  /** Connections in the pool. Default 10. */
  maxConnections?: number;
  /** Give up connecting after this long (the call fails with Transient). Default 10 000 ms. */
  connectTimeoutMs?: number;
  /** The server cancels a statement (including a wait for a key's lock) after this long: Transient. Default 30 000 ms. */
  statementTimeoutMs?: number;
  /**
   * Clock for leases, retry times and ages. Default: this process's clock. Leases are compared
   * across processes, so router hosts must keep their clocks in step (NTP); a host whose clock is
   * ahead by d takes over expired leases d early.
   */
  now?: () => number;
}

/** Schema migrations, applied in order; `schema_version.version` is how many have run. */
const MIGRATIONS: ((s: string) => string)[] = [
  (s) => `
CREATE SEQUENCE ${s}.version_seq AS bigint START 1 CACHE 1 NO CYCLE;
CREATE TABLE ${s}.objects (
  key text COLLATE "C" PRIMARY KEY,
  version bigint NOT NULL,
  deleted boolean NOT NULL DEFAULT false,
  size bigint NOT NULL DEFAULT 0,
  sha256 text,
  content_type text,
  metadata text NOT NULL DEFAULT '{}',
  updated_at timestamptz NOT NULL
);
CREATE TABLE ${s}.replicas (
  key text COLLATE "C" NOT NULL,
  provider text NOT NULL,
  version bigint NOT NULL,
  etag text,
  PRIMARY KEY (key, provider)
);
CREATE TABLE ${s}.outbox (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind text NOT NULL CHECK (kind IN ('replicate', 'delete')),
  key text COLLATE "C" NOT NULL,
  version bigint NOT NULL,
  provider text NOT NULL,
  size bigint NOT NULL DEFAULT 0,
  attempts integer NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL,
  next_attempt_at timestamptz NOT NULL,
  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'dead')),
  last_error text,
  lease_owner text,
  lease_until timestamptz
);
CREATE INDEX outbox_due ON ${s}.outbox (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX outbox_key ON ${s}.outbox (key, provider);
`,
];

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
/** Transactions rolled back by a deadlock or serialization failure are run again this many times in all. */
const TRANSACTION_ATTEMPTS = 3;

// Columns are named, never `*`: a prepared `SELECT *` fails once a later schema version adds a column.
function objectColumns(alias = ''): string {
  return ['key', 'version', 'deleted', 'size', 'sha256', 'content_type', 'metadata', 'updated_at'].map((c) => alias + c).join(', ');
}
const OUTBOX_COLUMNS = 'id, kind, key, version, provider, size, attempts, created_at, next_attempt_at, state, last_error, lease_owner, lease_until';

interface ObjectRow { key: string; version: number; deleted: boolean; size: number; sha256: string | null; content_type: string | null; metadata: string; updated_at: Date }
interface OutboxRow {
  id: number; kind: string; key: string; version: number; provider: string; size: number; attempts: number; created_at: Date;
  next_attempt_at: Date; state: string; last_error: string | null; lease_owner: string | null; lease_until: Date | null;
}
interface NewEntry { kind: OutboxKind; version: number; provider: string; size: number }
/**
 * A connection (or the pool) whose parameterized queries are named prepared statements: the server
 * parses and plans each statement once per connection instead of on every call. A query without
 * `params` goes through the simple protocol (DDL, several statements in one string).
 */
interface Db {
  query<R extends QueryResultRow = QueryResultRow>(sql: string, params?: unknown[]): Promise<QueryResult<R>>;
}

/**
 * StateStore in PostgreSQL, shared by any number of router and worker processes.
 *
 * - Version stamps come from one sequence (no per-session cache), so they are totally ordered
 *   across processes.
 * - Every mutation of a key runs in one transaction holding a per-key advisory lock, so two
 *   processes committing the same key serialize exactly as SQLite's single writer does.
 * - `claim` leases rows with `FOR UPDATE SKIP LOCKED`: concurrent claimers never receive the same
 *   entry and never wait on each other; an expired lease is taken over by the next claim.
 * - Keys are `text COLLATE "C"`, which compares bytes: in a UTF-8 database (checked at open) that
 *   is the providers' listing order.
 *
 * Open with {@link PostgresStateStore.open}; it creates the schema idempotently (serialized by an
 * advisory lock, so several processes may start at once) and refuses a schema written by a newer
 * cloudmux.
 */
export class PostgresStateStore implements StateStore {
  readonly kind = 'postgres';
  private readonly now: () => number;
  private readonly s: string;
  /** First half of every advisory lock id: one space per schema, so two deployments sharing a database never wait on each other. */
  private readonly lockSpace: number;
  private closed = false;
  /** Statement text to prepared-statement name. */
  private readonly statements = new Map<string, string>();

  private constructor(private readonly pool: Pool, private readonly options: PostgresStateOptions & { schema: string }) {
    this.now = options.now ?? Date.now;
    this.s = `"${options.schema}"`;
    this.lockSpace = lockId(`cloudmux:${options.schema}`);
  }

  /** Connects, checks the database and brings the schema up to date. Fails with InvalidConfig, AuthFailed or Transient. */
  static async open(options: PostgresStateOptions): Promise<PostgresStateStore> {
    const schema = options.schema ?? 'cloudmux';
    if (!SCHEMA_NAME.test(schema)) throw new InvalidConfigError(`state schema name "${schema}" must match ${SCHEMA_NAME.source}`, { provider: PG_PROVIDER });
    try {
      const u = new URL(options.url);
      if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') throw new Error(`scheme ${u.protocol}`);
    } catch {
      throw new InvalidConfigError(`state store URL ${redactUrl(options.url)} is not a postgres:// URL`, { provider: PG_PROVIDER });
    }
    // Loaded here so that users of the SQLite store never load pg.
    const pg = await import('pg');
    const types = new pg.TypeOverrides();
    types.setTypeParser(pg.types.builtins.INT8, toNumber);
    const pool = new pg.Pool({
      connectionString: options.url,
      max: options.maxConnections ?? 10,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
      statement_timeout: options.statementTimeoutMs ?? 30_000,
      // Notices a server that vanished without closing the socket (host down, network cut).
      keepAlive: true,
      application_name: 'cloudmux',
      types,
    });
    // An idle connection dropped by the server emits here; the pool discards it and the next
    // query opens a new one (or fails and is reported), so there is nothing else to do.
    pool.on('error', () => {});
    const store = new PostgresStateStore(pool, { ...options, schema });
    try {
      await store.migrate();
    } catch (e) {
      await pool.end().catch(() => {});
      throw mapPgError(e, 'open');
    }
    return store;
  }

  private async migrate(): Promise<void> {
    const enc = await this.pool.query<{ server_encoding: string }>('SHOW server_encoding');
    if (enc.rows[0]?.server_encoding !== 'UTF8') {
      throw new InvalidConfigError(`the state database must use UTF8 encoding (has ${enc.rows[0]?.server_encoding}): keys are ordered by their UTF-8 bytes`, { provider: PG_PROVIDER });
    }
    // Fast path for every start but the first: no DDL, so a role without CREATE can run cloudmux.
    if (await this.schemaVersion(this.prepared(this.pool)) === MIGRATIONS.length) return;
    await this.tx('open', undefined, async (c) => {
      await c.query(`SELECT pg_advisory_xact_lock(${this.lockSpace}, ${lockId('')})`);
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${this.s}`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${this.s}.schema_version (
        id integer PRIMARY KEY CHECK (id = 1), version integer NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`);
      const current = await this.schemaVersion(c) ?? 0;
      for (let v = current; v < MIGRATIONS.length; v++) await c.query(MIGRATIONS[v]!(this.s));
      if (current < MIGRATIONS.length) {
        await c.query(`INSERT INTO ${this.s}.schema_version (id, version) VALUES (1, $1)
          ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, updated_at = now()`, [MIGRATIONS.length]);
      }
    });
  }

  /** The schema's version, undefined before the first migration; throws when a newer cloudmux wrote it. */
  private async schemaVersion(db: Db): Promise<number | undefined> {
    const exists = await db.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [`${this.s}.schema_version`]);
    if (exists.rows[0]?.t == null) return undefined;
    const row = (await db.query<{ version: number }>(`SELECT version FROM ${this.s}.schema_version WHERE id = 1`)).rows[0];
    if (row && row.version > MIGRATIONS.length) {
      throw new InvalidConfigError(`state schema ${this.options.schema} is at version ${row.version}, newer than this cloudmux understands (${MIGRATIONS.length})`, { provider: PG_PROVIDER });
    }
    return row?.version;
  }

  async nextVersion(): Promise<number> {
    const rows = await this.query<{ v: number }>('nextVersion', undefined, `SELECT nextval('${this.s}.version_seq') AS v`, []);
    return rows[0]!.v;
  }

  async lookup(key: string): Promise<CatalogLookup> {
    // One statement, so the object and its replicas come from the same snapshot.
    const rows = await this.query<ObjectRow & { r_provider: string | null; r_version: number | null; r_etag: string | null }>('lookup', key,
      `SELECT ${objectColumns('o.')}, r.provider AS r_provider, r.version AS r_version, r.etag AS r_etag
       FROM ${this.s}.objects o LEFT JOIN ${this.s}.replicas r ON r.key = o.key WHERE o.key = $1 ORDER BY r.provider`, [key]);
    const row = rows[0];
    if (!row) return { state: 'unknown' };
    if (row.deleted) return { state: 'deleted', version: row.version };
    const holders: Replica[] = [];
    const stale: Replica[] = [];
    for (const r of rows) {
      if (r.r_provider === null || r.r_version === null) continue;
      (r.r_version === row.version ? holders : stale).push(replica({ provider: r.r_provider, version: r.r_version, etag: r.r_etag }));
    }
    return { state: 'live', object: toObject(row), holders, stale };
  }

  async commitPut(rec: PutRecord): Promise<CommitResult> {
    return this.tx('commitPut', rec.key, async (c): Promise<CommitResult> => {
      const cur = (await c.query<{ version: number }>(`SELECT version FROM ${this.s}.objects WHERE key = $1`, [rec.key])).rows[0];
      if (cur && (rec.onlyIfUnknown || cur.version > rec.version)) return { committed: false, version: cur.version, entries: [] };
      const now = this.now();
      await c.query(`INSERT INTO ${this.s}.objects (key, version, deleted, size, sha256, content_type, metadata, updated_at)
        VALUES ($1, $2, false, $3, $4, $5, $6, $7)
        ON CONFLICT (key) DO UPDATE SET version = EXCLUDED.version, deleted = false, size = EXCLUDED.size, sha256 = EXCLUDED.sha256,
          content_type = EXCLUDED.content_type, metadata = EXCLUDED.metadata, updated_at = EXCLUDED.updated_at`,
      [rec.key, rec.version, rec.size, rec.sha256 ?? null, rec.contentType ?? null, JSON.stringify(rec.metadata), rec.lastModified]);
      // One row per provider (the last mention wins), as ON CONFLICT may not touch a row twice.
      const acked = new Map(rec.acked.map((a) => [a.provider, a.etag ?? null]));
      if (acked.size > 0) {
        await c.query(`INSERT INTO ${this.s}.replicas (key, provider, version, etag)
          SELECT $1, p, $2, e FROM unnest($3::text[], $4::text[]) AS u(p, e)
          ON CONFLICT (key, provider) DO UPDATE SET version = EXCLUDED.version, etag = EXCLUDED.etag`,
        [rec.key, rec.version, [...acked.keys()], [...acked.values()]]);
      }
      const targets = [...new Set([...acked.keys(), ...rec.owed])];
      // Whatever was owed to the targets before, and replicas owed of older versions, are superseded.
      await c.query(`DELETE FROM ${this.s}.outbox WHERE key = $1 AND state = 'pending'
        AND (provider = ANY($2::text[]) OR (kind = 'replicate' AND version < $3))`, [rec.key, targets, rec.version]);
      // Providers left holding an older copy that is no longer wanted there.
      const others = await c.query<{ provider: string }>(`SELECT r.provider FROM ${this.s}.replicas r
        WHERE r.key = $1 AND r.version < $2 AND NOT (r.provider = ANY($3::text[]))
          AND NOT EXISTS (SELECT 1 FROM ${this.s}.outbox o WHERE o.key = r.key AND o.provider = r.provider AND o.kind = 'delete' AND o.state = 'pending')
        ORDER BY r.provider`, [rec.key, rec.version, targets]);
      const owed: NewEntry[] = [...new Set(rec.owed)].map((provider) => ({ kind: 'replicate', version: rec.version, provider, size: rec.size }));
      for (const { provider } of others.rows) owed.push({ kind: 'delete', version: rec.version, provider, size: 0 });
      return { committed: true, version: rec.version, entries: await this.insertEntries(c, rec.key, owed, now) };
    });
  }

  async commitDelete(rec: DeleteRecord): Promise<CommitResult> {
    return this.tx('commitDelete', rec.key, async (c): Promise<CommitResult> => {
      const cur = (await c.query<{ version: number }>(`SELECT version FROM ${this.s}.objects WHERE key = $1`, [rec.key])).rows[0];
      if (cur && cur.version > rec.version) return { committed: false, version: cur.version, entries: [] };
      const now = this.now();
      await c.query(`INSERT INTO ${this.s}.objects (key, version, deleted, size, metadata, updated_at) VALUES ($1, $2, true, 0, '{}', $3)
        ON CONFLICT (key) DO UPDATE SET version = EXCLUDED.version, deleted = true, size = 0, sha256 = NULL, content_type = NULL,
          metadata = '{}', updated_at = EXCLUDED.updated_at`, [rec.key, rec.version, new Date(now)]);
      await c.query(`DELETE FROM ${this.s}.outbox WHERE key = $1 AND state = 'pending'`, [rec.key]);
      const holders = (await c.query<{ provider: string }>(`SELECT provider FROM ${this.s}.replicas WHERE key = $1 ORDER BY provider`, [rec.key])).rows;
      const providers = new Set([...holders.map((h) => h.provider), ...rec.alsoOn]);
      const lease = rec.leaseOwner ? { owner: rec.leaseOwner, until: now + (rec.leaseMs ?? 60_000) } : undefined;
      const entries = await this.insertEntries(c, rec.key, [...providers].map((provider) => ({ kind: 'delete', version: rec.version, provider, size: 0 })), now, lease);
      return { committed: true, version: rec.version, entries };
    });
  }

  async repairReplica(key: string, provider: string): Promise<OutboxEntry | undefined> {
    return this.tx('repairReplica', key, async (c): Promise<OutboxEntry | undefined> => {
      const had = (await c.query<{ version: number }>(`DELETE FROM ${this.s}.replicas WHERE key = $1 AND provider = $2 RETURNING version`, [key, provider])).rows[0];
      const cur = (await c.query<{ version: number; deleted: boolean; size: number }>(`SELECT version, deleted, size FROM ${this.s}.objects WHERE key = $1`, [key])).rows[0];
      const now = this.now();
      if (cur && !cur.deleted && had?.version === cur.version) {
        if (await this.hasPending(c, key, provider, 'replicate')) return undefined;
        await c.query(`DELETE FROM ${this.s}.outbox WHERE key = $1 AND provider = $2 AND state = 'pending'`, [key, provider]);
        return (await this.insertEntries(c, key, [{ kind: 'replicate', version: cur.version, provider, size: cur.size }], now))[0];
      }
      if (await this.hasPending(c, key, provider)) return undefined;
      return (await this.insertEntries(c, key, [{ kind: 'delete', version: cur?.version ?? 0, provider, size: 0 }], now))[0];
    });
  }

  async listObjects(opts: CatalogListOptions): Promise<CatalogObject[]> {
    const prefix = opts.prefix ?? '';
    // The key column is COLLATE "C": comparisons and ORDER BY are byte order, and the range is an index scan.
    const rows = opts.startAfter !== undefined
      ? await this.query<ObjectRow>('listObjects', undefined, `SELECT ${objectColumns()} FROM ${this.s}.objects WHERE NOT deleted AND key > $1 AND key >= $2 ORDER BY key LIMIT $3`, [opts.startAfter, prefix, opts.limit])
      : await this.query<ObjectRow>('listObjects', undefined, `SELECT ${objectColumns()} FROM ${this.s}.objects WHERE NOT deleted AND key >= $1 ORDER BY key LIMIT $2`, [prefix, opts.limit]);
    const out: CatalogObject[] = [];
    for (const row of rows) {
      if (!row.key.startsWith(prefix)) break;
      out.push(toObject(row));
    }
    return out;
  }

  async claim(owner: string, limit: number, leaseMs: number): Promise<OutboxEntry[]> {
    const now = this.now();
    // SKIP LOCKED: a row another claimer is leasing right now is passed over, not waited for; once
    // that claim commits, the row's lease excludes it (rows changed since our snapshot are re-checked).
    const rows = await this.query<OutboxRow>('claim', undefined, `UPDATE ${this.s}.outbox SET lease_owner = $1, lease_until = $2
      WHERE id IN (SELECT id FROM ${this.s}.outbox WHERE state = 'pending' AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < $3)
        ORDER BY next_attempt_at, id LIMIT $4 FOR UPDATE SKIP LOCKED)
      RETURNING ${OUTBOX_COLUMNS}`, [owner, new Date(now + leaseMs), new Date(now), limit]);
    return rows.map(toEntry).sort((a, b) => a.nextAttemptAt.getTime() - b.nextAttemptAt.getTime() || a.id - b.id);
  }

  async completeReplicate(e: OutboxEntry, etag?: string): Promise<boolean> {
    return this.tx('completeReplicate', e.key, async (c): Promise<boolean> => {
      await c.query(`DELETE FROM ${this.s}.outbox WHERE id = $1`, [e.id]);
      const cur = (await c.query<{ version: number; deleted: boolean }>(`SELECT version, deleted FROM ${this.s}.objects WHERE key = $1`, [e.key])).rows[0];
      if (!cur || cur.deleted || cur.version !== e.version) {
        // The key moved on while we copied; the copy we made is now a stale one to clean up.
        await c.query(`INSERT INTO ${this.s}.replicas (key, provider, version, etag) VALUES ($1, $2, $3, $4)
          ON CONFLICT (key, provider) DO UPDATE SET version = EXCLUDED.version, etag = EXCLUDED.etag WHERE replicas.version < EXCLUDED.version`,
        [e.key, e.provider, e.version, etag ?? null]);
        if (!await this.hasPending(c, e.key, e.provider)) {
          await this.insertEntries(c, e.key, [{ kind: 'delete', version: cur?.version ?? e.version, provider: e.provider, size: 0 }], this.now());
        }
        return false;
      }
      await c.query(`INSERT INTO ${this.s}.replicas (key, provider, version, etag) VALUES ($1, $2, $3, $4)
        ON CONFLICT (key, provider) DO UPDATE SET version = EXCLUDED.version, etag = EXCLUDED.etag`, [e.key, e.provider, e.version, etag ?? null]);
      return true;
    });
  }

  async completeDelete(e: OutboxEntry): Promise<void> {
    await this.tx('completeDelete', e.key, async (c) => {
      await c.query(`DELETE FROM ${this.s}.outbox WHERE id = $1`, [e.id]);
      const cur = (await c.query<{ version: number; deleted: boolean }>(`SELECT version, deleted FROM ${this.s}.objects WHERE key = $1`, [e.key])).rows[0];
      if (!cur || cur.deleted) await c.query(`DELETE FROM ${this.s}.replicas WHERE key = $1 AND provider = $2`, [e.key, e.provider]);
      else await c.query(`DELETE FROM ${this.s}.replicas WHERE key = $1 AND provider = $2 AND version < $3`, [e.key, e.provider, cur.version]);
    });
  }

  async discard(id: number): Promise<void> {
    await this.query('discard', undefined, `DELETE FROM ${this.s}.outbox WHERE id = $1`, [id]);
  }

  async retryLater(id: number, error: string, at: Date, countAttempt: boolean): Promise<void> {
    await this.query('retryLater', undefined, `UPDATE ${this.s}.outbox SET attempts = attempts + $1, last_error = $2, next_attempt_at = $3,
      lease_owner = NULL, lease_until = NULL WHERE id = $4`, [countAttempt ? 1 : 0, error.slice(0, 2000), at, id]);
  }

  async deadLetter(id: number, reason: string): Promise<void> {
    await this.query('deadLetter', undefined, `UPDATE ${this.s}.outbox SET state = 'dead', attempts = attempts + 1, last_error = $1,
      lease_owner = NULL, lease_until = NULL WHERE id = $2`, [reason.slice(0, 2000), id]);
  }

  async requeueDead(ids?: number[]): Promise<number> {
    const now = new Date(this.now());
    const sql = `UPDATE ${this.s}.outbox SET state = 'pending', attempts = 0, next_attempt_at = $1 WHERE state = 'dead'`;
    const res = ids
      ? await this.run('requeueDead', undefined, (db) => db.query(`${sql} AND id = ANY($2::bigint[])`, [now, ids]))
      : await this.run('requeueDead', undefined, (db) => db.query(sql, [now]));
    return res.rowCount ?? 0;
  }

  async entries(filter: { key?: string; state?: 'pending' | 'dead'; limit?: number } = {}): Promise<OutboxEntry[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.key !== undefined) { args.push(filter.key); where.push(`key = $${args.length}`); }
    if (filter.state !== undefined) { args.push(filter.state); where.push(`state = $${args.length}`); }
    args.push(filter.limit ?? 1000);
    const sql = `SELECT ${OUTBOX_COLUMNS} FROM ${this.s}.outbox ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id LIMIT $${args.length}`;
    return (await this.query<OutboxRow>('entries', filter.key, sql, args)).map(toEntry);
  }

  async backlog(): Promise<BacklogStats> {
    const now = this.now();
    // One statement: pending and dead counts from the same snapshot.
    const rows = await this.query<{ provider: string; state: string; n: number; bytes: number; oldest: Date }>('backlog', undefined,
      `SELECT provider, state, count(*) AS n, COALESCE(sum(size), 0)::bigint AS bytes, min(created_at) AS oldest
       FROM ${this.s}.outbox GROUP BY provider, state`);
    const stats: BacklogStats = { count: 0, bytes: 0, oldestAgeMs: 0, dead: 0, byProvider: {} };
    let oldest = Infinity;
    for (const r of rows) {
      if (r.state === 'dead') {
        stats.dead += r.n;
        continue;
      }
      stats.count += r.n;
      stats.bytes += r.bytes;
      oldest = Math.min(oldest, r.oldest.getTime());
      stats.byProvider[r.provider] = { count: r.n, bytes: r.bytes };
    }
    if (oldest !== Infinity) stats.oldestAgeMs = Math.max(0, now - oldest);
    return stats;
  }

  async pruneTombstones(olderThanMs: number): Promise<number> {
    const res = await this.run('pruneTombstones', undefined, (db) => db.query(`DELETE FROM ${this.s}.objects o WHERE o.deleted AND o.updated_at < $1
      AND NOT EXISTS (SELECT 1 FROM ${this.s}.outbox x WHERE x.key = o.key)
      AND NOT EXISTS (SELECT 1 FROM ${this.s}.replicas r WHERE r.key = o.key)`, [new Date(this.now() - olderThanMs)]));
    return res.rowCount ?? 0;
  }

  /** Ends the pool (waiting for checked-out connections to be released). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  toString(): string {
    return `PostgresStateStore(${redactUrl(this.options.url)}, schema ${this.options.schema})`;
  }

  private async hasPending(c: Db, key: string, provider: string, kind?: OutboxKind): Promise<boolean> {
    const res = kind
      ? await c.query(`SELECT 1 FROM ${this.s}.outbox WHERE key = $1 AND provider = $2 AND kind = $3 AND state = 'pending' LIMIT 1`, [key, provider, kind])
      : await c.query(`SELECT 1 FROM ${this.s}.outbox WHERE key = $1 AND provider = $2 AND state = 'pending' LIMIT 1`, [key, provider]);
    return res.rows.length > 0;
  }

  /** Inserts entries for one key in one statement; returned in insertion (id) order. */
  private async insertEntries(c: Db, key: string, items: NewEntry[], now: number, lease?: { owner: string; until: number }): Promise<OutboxEntry[]> {
    if (items.length === 0) return [];
    const res = await c.query<OutboxRow>(`INSERT INTO ${this.s}.outbox (kind, key, version, provider, size, created_at, next_attempt_at, lease_owner, lease_until)
      SELECT k, $1, v, p, z, $2, $2, $3, $4 FROM unnest($5::text[], $6::bigint[], $7::text[], $8::bigint[]) WITH ORDINALITY AS u(k, v, p, z, n)
      ORDER BY n RETURNING ${OUTBOX_COLUMNS}`,
    [key, new Date(now), lease?.owner ?? null, lease ? new Date(lease.until) : null,
      items.map((i) => i.kind), items.map((i) => i.version), items.map((i) => i.provider), items.map((i) => i.size)]);
    return res.rows.map(toEntry).sort((a, b) => a.id - b.id);
  }

  private prepared(target: Pool | PoolClient): Db {
    return {
      query: <R extends QueryResultRow>(sql: string, params?: unknown[]) => {
        if (params === undefined) return target.query<R>(sql);
        let name = this.statements.get(sql);
        if (name === undefined) {
          name = `cmx_${createHash('sha256').update(sql).digest('hex').slice(0, 24)}`;
          this.statements.set(sql, name);
        }
        return target.query<R>({ name, text: sql, values: params });
      },
    };
  }

  /** One statement outside a transaction, errors mapped. */
  private async query<R extends QueryResultRow>(op: string, key: string | undefined, sql: string, params: unknown[] = []): Promise<R[]> {
    return (await this.run(op, key, (db) => db.query<R>(sql, params))).rows;
  }

  private async run<T>(op: string, key: string | undefined, fn: (db: Db) => Promise<T>): Promise<T> {
    try {
      return await fn(this.prepared(this.pool));
    } catch (e) {
      throw mapPgError(e, op, key);
    }
  }

  /**
   * Runs `fn` in one transaction on one pooled connection, holding the key's advisory lock when
   * a key is given. A transaction rolled back by a deadlock or serialization failure is run again.
   */
  private async tx<T>(op: string, key: string | undefined, fn: (c: Db) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let client: PoolClient;
      try {
        client = await this.pool.connect();
      } catch (e) {
        throw mapPgError(e, op, key);
      }
      let broken: Error | undefined;
      try {
        // The lock ids are numbers computed here, so BEGIN and the lock share one round trip.
        await client.query(key === undefined ? 'BEGIN' : `BEGIN; SELECT pg_advisory_xact_lock(${this.lockSpace}, ${lockId(key)})`);
        const out = await fn(this.prepared(client));
        await client.query('COMMIT');
        return out;
      } catch (e) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackError) {
          // The connection is unusable: destroy it rather than hand it to the next caller.
          broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
        }
        if (attempt < TRANSACTION_ATTEMPTS && isRetryableTransaction(e)) continue;
        throw mapPgError(e, op, key);
      } finally {
        client.release(broken);
      }
    }
  }
}

/**
 * A 32-bit advisory lock id for a key. Two keys sharing an id only serialize their commits, which
 * is harmless; the schema migration uses the empty string, which is never a valid key.
 */
function lockId(text: string): number {
  return createHash('sha256').update(text).digest().readInt32BE(0);
}

/** int8 as a JS number: stamps, ids, sizes and counts stay far below 2^53. */
function toNumber(value: string): number {
  return Number(value);
}

function replica(r: { provider: string; version: number; etag: string | null }): Replica {
  return r.etag === null ? { provider: r.provider, version: r.version } : { provider: r.provider, version: r.version, etag: r.etag };
}

function toObject(row: ObjectRow): CatalogObject {
  const o: CatalogObject = { key: row.key, version: row.version, size: row.size, metadata: JSON.parse(row.metadata) as Record<string, string>, lastModified: row.updated_at };
  if (row.sha256 !== null) o.sha256 = row.sha256;
  if (row.content_type !== null) o.contentType = row.content_type;
  return o;
}

function toEntry(r: OutboxRow): OutboxEntry {
  const e: OutboxEntry = {
    id: r.id, kind: r.kind as OutboxKind, key: r.key, version: r.version, provider: r.provider, size: r.size, attempts: r.attempts,
    createdAt: r.created_at, nextAttemptAt: r.next_attempt_at, state: r.state as OutboxEntry['state'],
  };
  if (r.last_error !== null) e.lastError = r.last_error;
  if (r.lease_owner !== null) e.leaseOwner = r.lease_owner;
  if (r.lease_until !== null) e.leaseUntil = r.lease_until;
  return e;
}
