import pg from 'pg';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isCloudmuxError } from '../../src/core/errors.js';
import { PostgresStateStore } from '../../src/state/postgres.js';
import { mapPgError } from '../../src/state/postgres-errors.js';
import { openStateStore } from '../../src/state/index.js';
import type { OutboxEntry, PutRecord, StateStore } from '../../src/state/types.js';
import { PG_URL, PgSchemas, requirePostgres } from './postgres-fixture.js';
import { stateStoreCases, testClock } from './state-cases.js';

const schemas = new PgSchemas();

beforeAll(requirePostgres);
afterEach(() => schemas.dropAll());

stateStoreCases('postgres', (clock) => schemas.open(clock ? { now: clock } : {}), feedCaughtUp);

/**
 * Waits until every change committed so far in the store's schema is below the cluster's
 * transaction horizon (what the feed may deliver); other tests' open transactions hold it back.
 */
async function feedCaughtUp(s: StateStore): Promise<void> {
  const schema = s.toString().match(/schema (\S+)\)/)![1]!;
  for (let i = 0; i < 1200; i++) {
    const [row] = await schemas.sql<{ ok: boolean }>(`SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint > COALESCE((SELECT max(change_xid) FROM "${schema}".objects), 0) AS ok`);
    if (row?.ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

function rec(key: string, version: number, acked: string[], owed: string[] = [], size = 10): PutRecord {
  return { key, version, size, sha256: `sha-${version}`, metadata: {}, lastModified: new Date(), acked: acked.map((provider) => ({ provider, version })), owed };
}

/** Two stores on one schema, each with its own pool: two router processes sharing one database. */
async function twoProcesses(clock?: () => number): Promise<[StateStore, StateStore]> {
  const schema = schemas.name();
  const a = await schemas.open({ schema, ...(clock ? { now: clock } : {}) });
  const b = await schemas.open({ schema, ...(clock ? { now: clock } : {}) });
  return [a, b];
}

describe('postgres state: several processes on one database', () => {
  it('concurrent claimers in two processes never get the same entry, and together get them all', async () => {
    const [a, b] = await twoProcesses();
    const total = 120;
    for (let i = 0; i < total; i += 10) {
      await Promise.all(Array.from({ length: 10 }, async (_, j) => a.commitPut(rec(`k${i + j}`, await a.nextVersion(), ['x'], ['y']))));
    }
    const seen = new Map<number, string>();
    const dupes: string[] = [];
    // Three claim loops per process, small batches, so claims really overlap.
    const loop = async (store: StateStore, owner: string): Promise<void> => {
      for (;;) {
        const batch = await store.claim(owner, 3, 60_000);
        if (batch.length === 0) return;
        for (const e of batch) {
          if (seen.has(e.id)) dupes.push(`${e.id}: ${seen.get(e.id)} and ${owner}`);
          seen.set(e.id, owner);
          expect(e.leaseOwner).toBe(owner);
        }
      }
    };
    await Promise.all([a, b].flatMap((s, p) => [1, 2, 3].map((n) => loop(s, `p${p}-w${n}`))));
    expect(dupes).toEqual([]);
    expect(seen.size).toBe(total);
    // Both processes took part (each loop claims until the queue is empty).
    const owners = new Set([...seen.values()].map((o) => o.slice(0, 2)));
    expect(owners).toEqual(new Set(['p0', 'p1']));
  });

  it('version stamps from two processes are unique and increasing', async () => {
    const [a, b] = await twoProcesses();
    let last = 0;
    for (let i = 0; i < 20; i++) {
      const v = await (i % 2 ? a : b).nextVersion();
      expect(v).toBeGreaterThan(last);
      last = v;
    }
    const both = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? a : b).nextVersion()));
    expect(new Set(both).size).toBe(100);
    expect(Math.min(...both)).toBeGreaterThan(last);
  });

  it('an expired lease hands the entry to the other process', async () => {
    const clock = testClock();
    const [a, b] = await twoProcesses(clock.now);
    await a.commitPut(rec('k', await a.nextVersion(), ['x'], ['y']));
    const [held] = await a.claim('process-a', 10, 1000);
    expect(held).toMatchObject({ key: 'k', leaseOwner: 'process-a' });
    expect(await b.claim('process-b', 10, 1000)).toEqual([]);
    clock.advance(1001);
    const [taken] = await b.claim('process-b', 10, 1000);
    expect(taken).toMatchObject({ id: held!.id, leaseOwner: 'process-b' });
    expect(await a.claim('process-a', 10, 1000)).toEqual([]);
    // The new holder finishes it; the old holder's late completion finds nothing left to do.
    expect(await b.completeReplicate(taken!)).toBe(true);
    expect((await a.backlog()).count).toBe(0);
  });

  it('racing puts of one key from two processes: the highest version wins, the other is refused', async () => {
    const [a, b] = await twoProcesses();
    for (let round = 0; round < 10; round++) {
      const key = `race-${round}`;
      const [va, vb] = [await a.nextVersion(), await b.nextVersion()];
      const [ra, rb] = await Promise.all([a.commitPut(rec(key, va, ['pa'], ['q'])), b.commitPut(rec(key, vb, ['pb'], ['q']))]);
      const found = await a.lookup(key);
      expect(found.state === 'live' && found.object.version).toBe(vb);
      expect(rb.committed).toBe(true);
      // a's commit may land first (then b supersedes it) or be refused; either way b's replica and outbox stand.
      if (!ra.committed) expect(ra.version).toBe(vb);
      const owed = await b.entries({ key, state: 'pending' });
      expect(owed.map((e: OutboxEntry) => `${e.kind}:${e.provider}@${e.version}`).sort()).toEqual(
        ra.committed ? [`delete:pa@${vb}`, `replicate:q@${vb}`] : [`replicate:q@${vb}`]);
    }
  });

  it('a lease granted by a statement that waited is stamped above every version committed meanwhile', async () => {
    // The history case "postgres: 2 routers, N=1 W=1" under load: a writer's acquire drew its stamp,
    // then waited on the lease row; meanwhile another writer drew a higher stamp, took the free lease
    // and committed. Granted with the lower stamp, the first writer overwrote the providers and was
    // then refused at its commit, leaving its bytes where the catalog did not expect them.
    const [late, other] = await twoProcesses();
    const schema = late.toString().match(/schema (\S+)\)/)![1]!;
    const blocker = new pg.Client({ connectionString: PG_URL });
    await blocker.connect();
    try {
      // A row lock on the key's lease row (an insert not yet committed): the acquire below waits on it.
      await blocker.query(`BEGIN; INSERT INTO "${schema}".write_leases (key, owner, version, expires_at) VALUES ('k', 'blocker', 0, clock_timestamp())`);
      const acquiring = late.acquireWrite('k', 'late', 60_000);
      for (let i = 0; ; i++) {
        const waiting = await schemas.sql<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%"${schema}".write_leases%'`);
        if (Number(waiting[0]!.n) > 0) break;
        if (i > 200) throw new Error('the acquire never waited on the lease row');
        await new Promise((r) => setTimeout(r, 10));
      }
      // Meanwhile another writer draws a stamp and commits; then the lease row is gone again.
      const meanwhile = await other.nextVersion();
      expect((await other.commitPut(rec('k', meanwhile, ['b']))).committed).toBe(true);
      await blocker.query('ROLLBACK');
      const got = await acquiring;
      if (!got.granted) throw new Error(`not granted: held by ${got.holder}`);
      expect(got.lease.version).toBeGreaterThan(meanwhile);
      expect((await late.commitPut({ ...rec('k', got.lease.version, ['a']), lease: got.lease })).committed).toBe(true);
    } finally {
      await blocker.end();
    }
  });

  it('opening one schema from several processes at once creates it once; reopening keeps catalog, outbox and counter', async () => {
    const schema = schemas.name();
    const opened = await Promise.all([1, 2, 3].map(() => schemas.open({ schema })));
    const v = await opened[0]!.nextVersion();
    await opened[1]!.commitPut(rec('k', v, ['a'], ['b']));
    for (const s of opened) await s.close();
    const again = await schemas.open({ schema });
    expect(await again.nextVersion()).toBeGreaterThan(v);
    expect((await again.lookup('k')).state).toBe('live');
    expect((await again.backlog()).count).toBe(1);
    expect(await schemas.sql(`SELECT version FROM "${schema}".schema_version`)).toEqual([{ version: 11 }]);
  });

  it('a schema-2 catalog gains the change feed on open; its rows are delivered first', async () => {
    const schema = schemas.name();
    const a = await schemas.open({ schema });
    const v = await a.nextVersion();
    await a.commitPut(rec('old', v, ['a']));
    await a.close();
    await schemas.sql(`DROP TRIGGER stamp_change ON "${schema}".objects; DROP FUNCTION "${schema}".stamp_change();
      DROP INDEX "${schema}".objects_change; ALTER TABLE "${schema}".objects DROP COLUMN change_xid; DROP TABLE "${schema}".change_feed;
      DROP TABLE "${schema}".migration_upload_parts, "${schema}".migration_uploads, "${schema}".migration_claims, "${schema}".migration_objects, "${schema}".migration_ranges, "${schema}".migration_workers,
        "${schema}".migration_jobs, "${schema}".scan_ranges, "${schema}".leaders, "${schema}".rate_buckets;
      DROP INDEX "${schema}".outbox_class_due; ALTER TABLE "${schema}".outbox DROP COLUMN priority;
      UPDATE "${schema}".schema_version SET version = 2`);
    const b = await schemas.open({ schema });
    await b.commitPut(rec('new', await b.nextVersion(), ['a']));
    await feedCaughtUp(b);
    const page = await b.changesSince(undefined, { limit: 10 });
    expect(page.changes.map((c) => c.key)).toEqual(['old', 'new']);
  });

  it('rows written by an older cloudmux still running (no change position) are delivered', async () => {
    const s = await schemas.open();
    const schema = s.toString().match(/schema (\S+)\)/)![1]!;
    await s.commitPut(rec('k', await s.nextVersion(), ['a']));
    await feedCaughtUp(s);
    const seen = await s.changesSince(undefined, { limit: 10 });
    // What a schema-2 router writes: no change_xid (insert) or leaves it as it was (update).
    await schemas.sql(`INSERT INTO "${schema}".objects (key, version, deleted, size, metadata, updated_at) VALUES ('old-insert', 1000, false, 1, '{}', now())`);
    await schemas.sql(`UPDATE "${schema}".objects SET version = 1001 WHERE key = 'k'`);
    await feedCaughtUp(s);
    const next = await s.changesSince(seen.cursor, { limit: 10 });
    expect(next.changes.map((c) => `${c.key}@${c.version}`).sort()).toEqual(['k@1001', 'old-insert@1000']);
  });

  it('refuses a schema written by a newer cloudmux', async () => {
    const schema = schemas.name();
    await schemas.open({ schema });
    await schemas.sql(`UPDATE "${schema}".schema_version SET version = 99`);
    const err = await PostgresStateStore.open({ url: PG_URL, schema }).catch((e: unknown) => e);
    expect(isCloudmuxError(err, 'InvalidConfig')).toBe(true);
    expect(String((err as Error).message)).toMatch(/version 99, newer/);
  });

  it('keys are text COLLATE "C" (byte order) wherever they are compared', async () => {
    const s = await schemas.open();
    const schema = s.toString().match(/schema (\S+)\)/)![1]!;
    const cols = await schemas.sql<{ table_name: string; collation_name: string | null }>(
      "SELECT table_name, collation_name FROM information_schema.columns WHERE table_schema = $1 AND column_name = 'key' ORDER BY table_name", [schema]);
    expect(cols).toEqual([{ table_name: 'access_stats', collation_name: 'C' }, { table_name: 'cached_copies', collation_name: 'C' }, { table_name: 'migration_claims', collation_name: 'C' }, { table_name: 'migration_objects', collation_name: 'C' }, { table_name: 'migration_upload_parts', collation_name: 'C' }, { table_name: 'migration_uploads', collation_name: 'C' }, { table_name: 'objects', collation_name: 'C' }, { table_name: 'outbox', collation_name: 'C' }, { table_name: 'replicas', collation_name: 'C' }, { table_name: 'write_leases', collation_name: 'C' }]);
    // Case and non-BMP characters, where linguistic and UTF-16 orders both differ from byte order.
    for (const k of ['a', 'B', '\u{10000}', '\uFFFD', '\u00E9', 'e']) await s.commitPut(rec(k, await s.nextVersion(), ['x']));
    expect((await s.listObjects({ limit: 10 })).map((o) => o.key)).toEqual(['B', 'a', 'e', '\u00E9', '\uFFFD', '\u{10000}']);
    expect((await s.listObjects({ startAfter: '\uFFFD', limit: 10 })).map((o) => o.key)).toEqual(['\u{10000}']);
  });

  it('byte order holds in a database whose default collation is linguistic (ICU en-US)', async () => {
    // The test database's default (C.UTF-8) already sorts by code point; this one does not, so
    // only the columns' own COLLATE "C" can make the order right.
    const db = `${schemas.name()}_icu`;
    await schemas.sql(`CREATE DATABASE ${db} TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'`);
    const url = new URL(PG_URL);
    url.pathname = `/${db}`;
    const s = await PostgresStateStore.open({ url: url.href, schema: 'cloudmux', maxConnections: 2 });
    try {
      const probe = new pg.Client({ connectionString: url.href });
      await probe.connect();
      // The database's own order puts 'a' before 'B' (byte order: 'B' first).
      expect((await probe.query<{ lt: boolean }>(`SELECT 'a' < 'B' AS lt`)).rows).toEqual([{ lt: true }]);
      await probe.end();
      const keys = ['a', 'B', 'e', '\u00E9', 'p/\uFF21', 'p/\u{1F600}', 'p/z', 'p-'];
      for (const k of keys) await s.commitPut(rec(k, await s.nextVersion(), ['x']));
      const byteOrder = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
      expect((await s.listObjects({ limit: 100 })).map((o) => o.key)).toEqual(byteOrder);
      expect((await s.listObjects({ prefix: 'p/', startAfter: 'p/\uFF21', limit: 100 })).map((o) => o.key)).toEqual(['p/\u{1F600}']);
    } finally {
      await s.close();
      await schemas.sql(`DROP DATABASE IF EXISTS ${db}`);
    }
  });

  it('a put and its outbox entries commit together or not at all', async () => {
    const s = await schemas.open();
    const schema = s.toString().match(/schema (\S+)\)/)![1]!;
    await schemas.sql(`CREATE FUNCTION "${schema}".fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$;
      CREATE TRIGGER fail BEFORE INSERT ON "${schema}".outbox FOR EACH ROW EXECUTE FUNCTION "${schema}".fail();`);
    const err = await s.commitPut(rec('k', await s.nextVersion(), ['a'], ['b'])).catch((e: unknown) => e);
    expect(isCloudmuxError(err)).toBe(true);
    expect((err as Error).message).toMatch(/commitPut: injected/);
    expect(await s.lookup('k')).toEqual({ state: 'unknown' });
    expect(await schemas.sql(`SELECT * FROM "${schema}".replicas`)).toEqual([]);
  });
});

describe('postgres state: configuration and errors', () => {
  it('openStateStore opens PostgreSQL from the config section', async () => {
    const schema = schemas.name();
    const s = await openStateStore({ postgres: { url: PG_URL, schema, maxConnections: 2 } });
    try {
      expect(s.kind).toBe('postgres');
      expect(await s.nextVersion()).toBe(1);
    } finally {
      await s.close();
    }
  });

  it('maps failures: unreachable server is Transient, missing database InvalidConfig, bad URL InvalidConfig; no password in messages', async () => {
    const down = await PostgresStateStore.open({ url: 'postgres://u:s3cret-pw@127.0.0.1:9/db', connectTimeoutMs: 2000 }).catch((e: unknown) => e);
    expect(isCloudmuxError(down, 'Transient')).toBe(true);
    expect(String(down)).not.toContain('s3cret-pw');
    const url = new URL(PG_URL);
    url.pathname = '/cloudmux_no_such_db';
    const missing = await PostgresStateStore.open({ url: url.href }).catch((e: unknown) => e);
    expect(isCloudmuxError(missing, 'InvalidConfig')).toBe(true);
    const bad = await PostgresStateStore.open({ url: 'mysql://u:s3cret-pw@h/db' }).catch((e: unknown) => e);
    expect(isCloudmuxError(bad, 'InvalidConfig')).toBe(true);
    expect(String(bad)).not.toContain('s3cret-pw');
    const badSchema = await PostgresStateStore.open({ url: PG_URL, schema: 'Robert"); DROP' }).catch((e: unknown) => e);
    expect(isCloudmuxError(badSchema, 'InvalidConfig')).toBe(true);
    // Trust auth ignores the password; a real one (from CLOUDMUX_TEST_PG_URL) must not show either.
    const withPassword = new URL(PG_URL);
    if (!withPassword.password) withPassword.password = 's3cret-pw';
    const s = await schemas.open({ url: withPassword.href });
    expect(s.toString()).not.toContain(withPassword.password);
  });

  it('a closed store fails calls cleanly and closes twice without error', async () => {
    const s = await schemas.open();
    await s.close();
    await s.close();
    await expect(s.nextVersion()).rejects.toSatisfy((e: unknown) => isCloudmuxError(e));
  });
});

describe('postgres state: error mapping and transaction retries', () => {
  it('maps SQLSTATEs into the taxonomy', () => {
    const code = (c: string) => mapPgError(Object.assign(new Error(`server says ${c}`), { code: c }), 'op').code;
    expect(['08006', '57P01', '53300', '40001', '40P01', '55P03', '57014'].map(code)).toEqual(Array(7).fill('Transient'));
    expect(code('28P01')).toBe('AuthFailed');
    expect(code('42501')).toBe('AccessDenied');
    expect(code('3D000')).toBe('InvalidConfig');
    expect(code('23505')).toBe('ProviderError');
    expect(mapPgError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' }), 'open').retryable).toBe(true);
    expect(mapPgError(new Error('Connection terminated unexpectedly'), 'claim').code).toBe('Transient');
  });

  it('a statement stuck behind a lock is cancelled after statementTimeoutMs and reported as Transient', async () => {
    const s = await schemas.open({ statementTimeoutMs: 300 });
    const schema = s.toString().match(/schema (\S+)\)/)![1]!;
    const blocker = new pg.Client({ connectionString: PG_URL });
    await blocker.connect();
    try {
      await blocker.query(`BEGIN; LOCK TABLE "${schema}".objects IN ACCESS EXCLUSIVE MODE`);
      const err = await s.lookup('k').catch((e: unknown) => e);
      expect(isCloudmuxError(err, 'Transient')).toBe(true);
      await blocker.query('ROLLBACK');
      expect(await s.lookup('k')).toEqual({ state: 'unknown' });
    } finally {
      await blocker.end();
    }
  });

  it('a transaction rolled back by a deadlock runs again and commits once', async () => {
    const s = await schemas.open();
    const schema = s.toString().match(/schema (\S+)\)/)![1]!;
    // The sequence is not transactional, so the trigger fails only the first attempt.
    await schemas.sql(`CREATE SEQUENCE "${schema}".calls;
      CREATE FUNCTION "${schema}".deadlock_once() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF nextval('"${schema}".calls') = 1 THEN RAISE EXCEPTION 'injected deadlock' USING ERRCODE = '40P01'; END IF; RETURN NEW; END $$;
      CREATE TRIGGER deadlock_once BEFORE INSERT ON "${schema}".outbox FOR EACH ROW EXECUTE FUNCTION "${schema}".deadlock_once();`);
    const v = await s.nextVersion();
    const res = await s.commitPut(rec('k', v, ['a'], ['b']));
    expect(res.committed).toBe(true);
    expect((await s.entries({ key: 'k' })).map((e) => e.provider)).toEqual(['b']);
    expect(await schemas.sql(`SELECT last_value FROM "${schema}".calls`)).toEqual([{ last_value: '2' }]);
  });
});
