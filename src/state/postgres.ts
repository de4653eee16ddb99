import type { Pool, PoolClient, QueryResultRow } from 'pg';
import { InvalidConfigError } from '../core/errors.js';
import { redactUrl } from '../registry.js';
import { PG_PROVIDER, mapPgError } from './postgres-errors.js';
import { inTransaction } from './postgres-transaction.js';
import { parseChangeCursor } from './change-cursor.js';
import type {
  BacklogStats, ClaimOptions, CatalogChangeOptions, CatalogChangePage, CatalogListOptions, CatalogLookup, CatalogObject, CommitResult, DeleteRecord, LeaseAttempt, OutboxEntry, OutboxKind, PutRecord, Replica,
  StateStore, WriteLease,
} from './types.js';
import { redactInspection } from '../core/redact.js';
import type { CachedCopyState } from './cached-copies.js';
import { PostgresCachedCopies } from './postgres-cached-copies.js';
import { PRIORITY_CLASSES, PRIORITY_RANK } from '../core/priority.js';
import { backlogOf } from './backlog.js';
import { storedBytesSql, toStoredBytes, type StoredBytes } from './stored-bytes.js';
import { pruneTombstones, readChangePage } from './postgres-change-feed.js';
import { OUTBOX_COLUMNS, objectColumns, toNumber, type NewEntry, type ObjectRow, type OutboxRow } from './postgres-rows.js';
import { replica, supersededCopies, toEntry, toObject } from './catalog-rows.js';
import { MIGRATIONS, SCHEMA_NAME, applyMigrations, lockId, preparedDb, schemaVersion, type Db } from './postgres-schema.js';

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

/** The id of the running (top-level) transaction, assigning one if it has none yet. */
const CURRENT_XID = 'pg_current_xact_id()::text::bigint';

/** Transactions rolled back by a deadlock or serialization failure are run again this many times in all. */
const TRANSACTION_ATTEMPTS = 3;

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
  /** Copies left by reads and access statistics. */
  readonly cachedCopies: CachedCopyState;

  private constructor(private readonly pool: Pool, private readonly options: PostgresStateOptions & { schema: string }) {
    this.now = options.now ?? Date.now;
    this.s = `"${options.schema}"`;
    this.lockSpace = lockId(`cloudmux:${options.schema}`);
    this.cachedCopies = new PostgresCachedCopies((op, key, sql, params) => this.query(op, key, sql, params), this.s);
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
    if (await schemaVersion(this.prepared(this.pool), this.s, this.options.schema) === MIGRATIONS.length) return;
    await this.tx('open', undefined, (c) => applyMigrations(c, this.s, this.options.schema, this.lockSpace));
  }

  async storedBytes(prefixes: readonly string[]): Promise<StoredBytes[]> {
    const q = storedBytesSql('postgres', { objects: `${this.s}.objects`, replicas: `${this.s}.replicas`, cached: `${this.s}.cached_copies` }, prefixes);
    const rows = await this.query<Parameters<typeof toStoredBytes>[0]>('storedBytes', undefined, q.sql, q.params);
    return rows.map(toStoredBytes);
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

  async acquireWrite(key: string, owner: string, leaseMs: number): Promise<LeaseAttempt> {
    // One statement: a free or expired lease is taken with a fresh stamp; a running one is left alone.
    // Expiry is on the database's clock, so router hosts need not agree on the time.
    const rows = await this.query<{ owner: string; version: number; granted: boolean; remaining_ms: number }>('acquireWrite', key,
      `WITH taken AS (
         INSERT INTO ${this.s}.write_leases AS l (key, owner, version, expires_at)
         VALUES ($1, $2, nextval('${this.s}.version_seq'), clock_timestamp() + $3 * interval '1 millisecond')
         ON CONFLICT (key) DO UPDATE SET owner = EXCLUDED.owner, version = EXCLUDED.version, expires_at = EXCLUDED.expires_at
           WHERE l.expires_at < clock_timestamp()
         RETURNING owner, version)
       SELECT owner, version, true AS granted, 0::float8 AS remaining_ms FROM taken
       UNION ALL
       SELECT owner, version, false, GREATEST(0, EXTRACT(EPOCH FROM (expires_at - clock_timestamp())) * 1000)::float8
         FROM ${this.s}.write_leases WHERE key = $1 AND NOT EXISTS (SELECT 1 FROM taken)`, [key, owner, leaseMs]);
    const row = rows[0];
    if (row?.granted) {
      // The stamp above was drawn when the statement began, which may be long before its row was
      // written (a wait on the previous holder's row lock, a stall): meanwhile another writer may
      // have drawn a higher one, taken the free lease and committed. A writer holding a stamp below
      // the catalog's version would overwrite the providers and then be refused at its commit. So
      // draw again now that the lease is ours: higher than every version committed before it.
      const stamped = await this.query<{ version: number }>('acquireWrite', key, `UPDATE ${this.s}.write_leases SET version = nextval('${this.s}.version_seq')
        WHERE key = $1 AND owner = $2 AND version = $3 RETURNING version`, [key, owner, row.version]);
      if (stamped[0]) return { granted: true, lease: { key, owner, version: stamped[0].version } };
      return { granted: false, holder: '(taken over)', remainingMs: 0 };
    }
    // No row at all: the holder released it between the two halves of the statement; try again soon.
    return { granted: false, holder: row?.owner ?? '(released)', remainingMs: row ? Math.ceil(row.remaining_ms) : 0 };
  }

  async renewWrite(lease: WriteLease, leaseMs: number): Promise<boolean> {
    const res = await this.run('renewWrite', lease.key, (db) => db.query(`UPDATE ${this.s}.write_leases SET expires_at = clock_timestamp() + $4 * interval '1 millisecond'
      WHERE key = $1 AND owner = $2 AND version = $3`, [lease.key, lease.owner, lease.version, leaseMs]));
    return res.rowCount === 1;
  }

  async releaseWrite(lease: WriteLease): Promise<void> {
    await this.run('releaseWrite', lease.key, (db) => db.query(`DELETE FROM ${this.s}.write_leases WHERE key = $1 AND owner = $2 AND version = $3`,
      [lease.key, lease.owner, lease.version]));
  }

  /** Inside a transaction: false when `lease` is no longer its writer's; else releases it. */
  private async takeBackLease(c: Db, lease: WriteLease | undefined, keep = false): Promise<boolean> {
    if (!lease) return true;
    if (keep) {
      const held = await c.query(`SELECT 1 FROM ${this.s}.write_leases WHERE key = $1 AND owner = $2 AND version = $3`, [lease.key, lease.owner, lease.version]);
      return held.rows.length === 1;
    }
    const res = await c.query(`DELETE FROM ${this.s}.write_leases WHERE key = $1 AND owner = $2 AND version = $3`, [lease.key, lease.owner, lease.version]);
    return res.rowCount === 1;
  }

  async commitPut(rec: PutRecord): Promise<CommitResult> {
    return this.tx('commitPut', rec.key, async (c): Promise<CommitResult> => {
      const cur = (await c.query<{ version: number }>(`SELECT version FROM ${this.s}.objects WHERE key = $1`, [rec.key])).rows[0];
      if (cur && (rec.onlyIfUnknown || cur.version > rec.version)) return { committed: false, version: cur.version, entries: [] };
      if (!await this.takeBackLease(c, rec.lease)) return { committed: false, fenced: true, version: cur?.version ?? 0, entries: [] };
      const now = this.now();
      await c.query(`INSERT INTO ${this.s}.objects (key, version, deleted, size, sha256, content_type, metadata, updated_at, change_xid)
        VALUES ($1, $2, false, $3, $4, $5, $6, $7, ${CURRENT_XID})
        ON CONFLICT (key) DO UPDATE SET version = EXCLUDED.version, deleted = false, size = EXCLUDED.size, sha256 = EXCLUDED.sha256,
          content_type = EXCLUDED.content_type, metadata = EXCLUDED.metadata, updated_at = EXCLUDED.updated_at, change_xid = EXCLUDED.change_xid`,
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
      const superseded = await c.query<{ provider: string }>(`DELETE FROM ${this.s}.outbox WHERE key = $1 AND state = 'pending'
        AND (provider = ANY($2::text[]) OR (kind = 'replicate' AND version < $3)) RETURNING provider`, [rec.key, targets, rec.version]);
      // Providers left holding an older copy that is no longer wanted there: a recorded one, or one a
      // superseded replica may have left (a copy that landed with its answer lost; see supersededCopies).
      const others = await c.query<{ provider: string }>(`SELECT r.provider FROM ${this.s}.replicas r
        WHERE r.key = $1 AND r.version < $2 AND NOT (r.provider = ANY($3::text[]))`, [rec.key, rec.version, targets]);
      const deleting = new Set((await c.query<{ provider: string }>(`SELECT provider FROM ${this.s}.outbox
        WHERE key = $1 AND kind = 'delete' AND state = 'pending'`, [rec.key])).rows.map((r) => r.provider));
      const owed: NewEntry[] = [...new Set(rec.owed)].map((provider) => ({ kind: 'replicate', version: rec.version, provider, size: rec.size, priority: rec.priority }));
      for (const provider of supersededCopies([...others.rows, ...superseded.rows, ...(rec.mayHold ?? []).map((provider) => ({ provider }))], targets, deleting)) {
        owed.push({ kind: 'delete', version: rec.version, provider, size: 0, priority: rec.priority });
      }
      return { committed: true, version: rec.version, entries: await this.insertEntries(c, rec.key, owed, now) };
    });
  }

  async commitDelete(rec: DeleteRecord): Promise<CommitResult> {
    return this.tx('commitDelete', rec.key, async (c): Promise<CommitResult> => {
      const cur = (await c.query<{ version: number }>(`SELECT version FROM ${this.s}.objects WHERE key = $1`, [rec.key])).rows[0];
      if (cur && cur.version > rec.version) return { committed: false, version: cur.version, entries: [] };
      if (!await this.takeBackLease(c, rec.lease, rec.keepLease)) return { committed: false, fenced: true, version: cur?.version ?? 0, entries: [] };
      const now = this.now();
      await c.query(`INSERT INTO ${this.s}.objects (key, version, deleted, size, metadata, updated_at, change_xid) VALUES ($1, $2, true, 0, '{}', $3, ${CURRENT_XID})
        ON CONFLICT (key) DO UPDATE SET version = EXCLUDED.version, deleted = true, size = 0, sha256 = NULL, content_type = NULL,
          metadata = '{}', updated_at = EXCLUDED.updated_at, change_xid = EXCLUDED.change_xid`, [rec.key, rec.version, new Date(now)]);
      // What was owed is superseded; a provider it was owed to may hold a copy (a replica that landed
      // unseen, a delete not done yet), recorded or not: owed a delete like every recorded copy.
      const owedTo = (await c.query<{ provider: string }>(`DELETE FROM ${this.s}.outbox WHERE key = $1 AND state = 'pending' RETURNING provider`, [rec.key])).rows;
      const holders = (await c.query<{ provider: string }>(`SELECT provider FROM ${this.s}.replicas WHERE key = $1 ORDER BY provider`, [rec.key])).rows;
      const providers = new Set([...holders, ...owedTo].map((h) => h.provider).concat(rec.alsoOn).sort());
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

  async claim(owner: string, limit: number, leaseMs: number, opts: ClaimOptions = {}): Promise<OutboxEntry[]> {
    const now = this.now();
    const allowed = (opts.classes ?? PRIORITY_CLASSES).map((c) => PRIORITY_RANK[c]);
    const providers = opts.providers ? [...opts.providers] : null;
    const due = `state = 'pending' AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until < $1)
      AND priority = ANY($2::smallint[]) AND ($3::text[] IS NULL OR provider = ANY($3::text[]))`;
    const order = (rows: OutboxRow[]): OutboxEntry[] => rows.map(toEntry)
      .sort((a, b) => PRIORITY_RANK[a.priority] - PRIORITY_RANK[b.priority] || a.nextAttemptAt.getTime() - b.nextAttemptAt.getTime() || a.id - b.id);
    const quotas = PRIORITY_CLASSES.map((c) => [c, opts.quota?.[c] ?? 0] as const).filter(([c, q]) => q > 0 && allowed.includes(PRIORITY_RANK[c]));
    if (quotas.length === 0) {
      // SKIP LOCKED: a row another claimer is leasing right now is passed over, not waited for; once
      // that claim commits, the row's lease excludes it (rows changed since our snapshot are re-checked).
      const rows = await this.query<OutboxRow>('claim', undefined, `UPDATE ${this.s}.outbox SET lease_owner = $4, lease_until = $5
        WHERE id IN (SELECT id FROM ${this.s}.outbox WHERE ${due} ORDER BY priority, next_attempt_at, id LIMIT $6 FOR UPDATE SKIP LOCKED)
        RETURNING ${OUTBOX_COLUMNS}`, [new Date(now), allowed, providers, owner, new Date(now + leaseMs), limit]);
      return order(rows);
    }
    // Reserved slots per class first (oldest due first within each), then the rest, most urgent first;
    // rows locked FOR UPDATE stay ours until the lease is written in the same transaction.
    return this.tx('claim', undefined, async (c) => {
      const ids: number[] = [];
      for (const [cls, q] of quotas) {
        const n = Math.min(q, limit - ids.length);
        if (n <= 0) break;
        const r = await c.query<{ id: number }>(`SELECT id FROM ${this.s}.outbox WHERE ${due} AND priority = $4
          ORDER BY next_attempt_at, id LIMIT $5 FOR UPDATE SKIP LOCKED`, [new Date(now), allowed, providers, PRIORITY_RANK[cls], n]);
        ids.push(...r.rows.map((x) => Number(x.id)));
      }
      if (ids.length < limit) {
        const r = await c.query<{ id: number }>(`SELECT id FROM ${this.s}.outbox WHERE ${due} AND NOT (id = ANY($4::bigint[]))
          ORDER BY priority, next_attempt_at, id LIMIT $5 FOR UPDATE SKIP LOCKED`, [new Date(now), allowed, providers, ids, limit - ids.length]);
        ids.push(...r.rows.map((x) => Number(x.id)));
      }
      if (ids.length === 0) return [];
      const rows = await c.query<OutboxRow>(`UPDATE ${this.s}.outbox SET lease_owner = $1, lease_until = $2 WHERE id = ANY($3::bigint[])
        RETURNING ${OUTBOX_COLUMNS}`, [owner, new Date(now + leaseMs), ids]);
      return order(rows.rows);
    });
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
    const rows = await this.query<{ provider: string; state: string; priority: number; n: number; bytes: number; oldest: Date }>('backlog', undefined,
      `SELECT provider, state, priority, count(*) AS n, COALESCE(sum(size), 0)::bigint AS bytes, min(created_at) AS oldest
       FROM ${this.s}.outbox GROUP BY provider, state, priority`);
    const dead = rows.filter((r) => r.state === 'dead').reduce((n, r) => n + Number(r.n), 0);
    return backlogOf(rows.filter((r) => r.state !== 'dead').map((r) => ({ ...r, oldest: r.oldest.getTime() })), dead, now);
  }

  async pruneTombstones(olderThanMs: number): Promise<number> {
    return this.tx('pruneTombstones', undefined, (c) => pruneTombstones(c, this.s, new Date(this.now() - olderThanMs)));
  }

  /** Pages through catalog changes in the order (writing transaction id, key): see {@link readChangePage}. */
  async changesSince(cursor: string | undefined, opts: CatalogChangeOptions): Promise<CatalogChangePage> {
    const after = cursor === undefined ? undefined : parseChangeCursor(cursor, this.kind);
    return this.tx('changesSince', undefined, (c) => readChangePage(c, this.s, after, opts), 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  }

  /**
   * The pool and quoted schema, for modules keeping their own tables in this schema (src/jobs): one
   * connection budget. Internal: its `pg` types are not part of the published declarations (a
   * consumer need not install @types/pg).
   * @internal
   */
  shared(): { pool: Pool; schema: string; lockSpace: number } {
    return { pool: this.pool, schema: this.s, lockSpace: this.lockSpace };
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
    const res = await c.query<OutboxRow>(`INSERT INTO ${this.s}.outbox (kind, key, version, provider, size, created_at, next_attempt_at, lease_owner, lease_until, priority)
      SELECT k, $1, v, p, z, $2, $2, $3, $4, r FROM unnest($5::text[], $6::bigint[], $7::text[], $8::bigint[], $9::smallint[]) WITH ORDINALITY AS u(k, v, p, z, r, n)
      ORDER BY n RETURNING ${OUTBOX_COLUMNS}`,
    [key, new Date(now), lease?.owner ?? null, lease ? new Date(lease.until) : null,
      items.map((i) => i.kind), items.map((i) => i.version), items.map((i) => i.provider), items.map((i) => i.size), items.map((i) => PRIORITY_RANK[i.priority ?? 'normal'])]);
    return res.rows.map(toEntry).sort((a, b) => a.id - b.id);
  }

  private prepared(target: Pool | PoolClient): Db {
    return preparedDb(target, this.statements);
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
  private async tx<T>(op: string, key: string | undefined, fn: (c: Db) => Promise<T>, begin = 'BEGIN'): Promise<T> {
    // The lock ids are numbers computed here, so BEGIN and the lock share one round trip.
    const open = key === undefined ? begin : `${begin}; SELECT pg_advisory_xact_lock(${this.lockSpace}, ${lockId(key)})`;
    return inTransaction(this.pool, op, (c) => fn(this.prepared(c)), { begin: open, attempts: TRANSACTION_ATTEMPTS, key });
  }
}
redactInspection(PostgresStateStore);

