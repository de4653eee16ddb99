// The PostgreSQL state schema: its migrations, the check that refuses a newer one, the prepared
// statements every query goes through, and the advisory lock ids that serialize writers of one key.
import { createHash } from 'node:crypto';
import type { Pool, PoolClient, QueryResult, QueryResultRow } from 'pg';
import { InvalidConfigError } from '../core/errors.js';
import { jobPrioritySql, jobTablesSql, jobUploadsSql, rangeSplitSql, rateBucketsSql } from '../jobs/job-schema.js';
import { postgresCachedCopiesSql } from './cached-copies.js';
import { PG_PROVIDER } from './postgres-errors.js';

/**
 * A connection (or the pool) whose parameterized queries are named prepared statements: the server
 * parses and plans each statement once per connection instead of on every call. A query without
 * `params` goes through the simple protocol (DDL, several statements in one string).
 */
export interface Db {
  query<R extends QueryResultRow = QueryResultRow>(sql: string, params?: unknown[]): Promise<QueryResult<R>>;
}

/** `target` as a {@link Db}; `statements` maps statement text to its prepared name (one map per store). */
export function preparedDb(target: Pool | PoolClient, statements: Map<string, string>): Db {
  return {
    query: <R extends QueryResultRow>(sql: string, params?: unknown[]) => {
      if (params === undefined) return target.query<R>(sql);
      let name = statements.get(sql);
      if (name === undefined) {
        name = `cmx_${createHash('sha256').update(sql).digest('hex').slice(0, 24)}`;
        statements.set(sql, name);
      }
      return target.query<R>({ name, text: sql, values: params });
    },
  };
}

/** Schema migrations, applied in order; `schema_version.version` is how many have run. */
export const MIGRATIONS: ((s: string) => string)[] = [
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
  // Writer leases: one row per key being written, expiring on the database's clock.
  (s) => `
CREATE TABLE ${s}.write_leases (
  key text COLLATE "C" PRIMARY KEY,
  owner text NOT NULL,
  version bigint NOT NULL,
  expires_at timestamptz NOT NULL
);
`,
  // The change feed: each row carries the id of the transaction that last wrote it (see
  // changesSince for why that, not the version, orders the feed); existing rows sort first.
  (s) => `
ALTER TABLE ${s}.objects ADD COLUMN change_xid bigint NOT NULL DEFAULT 0;
CREATE INDEX objects_change ON ${s}.objects (change_xid, key);
CREATE TABLE ${s}.change_feed (
  id integer PRIMARY KEY CHECK (id = 1),
  catalog text NOT NULL,
  pruned_xid bigint NOT NULL DEFAULT -1,
  pruned_key text COLLATE "C" NOT NULL DEFAULT ''
);
INSERT INTO ${s}.change_feed (id, catalog) VALUES (1, md5(random()::text || clock_timestamp()::text));
`,
  // Migration jobs, leased key ranges and leaders (src/jobs).
  jobTablesSql,
  // Every write of a catalog row takes its transaction's position, whoever writes it: a router of
  // an older cloudmux still running during a rolling upgrade (it checked the schema version when
  // it opened) writes rows without change_xid, which the feed would otherwise never deliver.
  (s) => `
CREATE FUNCTION ${s}.stamp_change() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN NEW.change_xid := pg_current_xact_id()::text::bigint; RETURN NEW; END $$;
CREATE TRIGGER stamp_change BEFORE INSERT OR UPDATE ON ${s}.objects FOR EACH ROW EXECUTE FUNCTION ${s}.stamp_change();
`,
  // Job key ranges split where the source's keys are (src/jobs/range-probe.ts).
  rangeSplitSql,
  // Copies left by reads (copy on read) and per-object access statistics (src/state/cached-copies.ts).
  postgresCachedCopiesSql,
  // Priority classes (0 critical, 1 normal, 2 bulk): rows an older cloudmux inserts during a
  // rolling upgrade take normal; claims read the class through its own partial index.
  (s) => `
ALTER TABLE ${s}.outbox ADD COLUMN priority smallint NOT NULL DEFAULT 1 CHECK (priority BETWEEN 0 AND 2);
CREATE INDEX outbox_class_due ON ${s}.outbox (priority, next_attempt_at, id) WHERE state = 'pending';
`,
  // Resumable uploads of a job's large objects, resumed by whoever takes the object over.
  jobUploadsSql,
  // Token buckets shared by every process on this database (src/jobs/shared-token-bucket.ts).
  rateBucketsSql,
  // Priority classes of a job's objects (src/jobs/job-worker.ts: claimed critical first, small before large).
  jobPrioritySql,
];

export const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** The schema's version, undefined before the first migration; throws when a newer cloudmux wrote it. */
export async function schemaVersion(db: Db, s: string, schema: string): Promise<number | undefined> {
  const exists = await db.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [`${s}.schema_version`]);
  if (exists.rows[0]?.t == null) return undefined;
  const row = (await db.query<{ version: number }>(`SELECT version FROM ${s}.schema_version WHERE id = 1`)).rows[0];
  if (row && row.version > MIGRATIONS.length) {
    throw new InvalidConfigError(`state schema ${schema} is at version ${row.version}, newer than this cloudmux understands (${MIGRATIONS.length})`, { provider: PG_PROVIDER });
  }
  return row?.version;
}

/** Brings schema `s` up to date inside transaction `c`, serialized against other processes by an advisory lock. */
export async function applyMigrations(c: Db, s: string, schema: string, lockSpace: number): Promise<void> {
  await c.query(`SELECT pg_advisory_xact_lock(${lockSpace}, ${lockId('')})`);
  await c.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
  await c.query(`CREATE TABLE IF NOT EXISTS ${s}.schema_version (
    id integer PRIMARY KEY CHECK (id = 1), version integer NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`);
  const current = await schemaVersion(c, s, schema) ?? 0;
  for (let v = current; v < MIGRATIONS.length; v++) await c.query(MIGRATIONS[v]!(s));
  if (current < MIGRATIONS.length) {
    await c.query(`INSERT INTO ${s}.schema_version (id, version) VALUES (1, $1)
      ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, updated_at = now()`, [MIGRATIONS.length]);
  }
}

/**
 * A 32-bit advisory lock id for a key. Two keys sharing an id only serialize their commits, which
 * is harmless; the schema migration uses the empty string, which is never a valid key.
 */
export function lockId(text: string): number {
  return createHash('sha256').update(text).digest().readInt32BE(0);
}

