import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import { AntiEntropyScanner } from '../../src/replication/anti-entropy.js';
import { ReplicationWorker } from '../../src/replication/worker.js';
import { Router } from '../../src/router/router.js';
import { DaemonCoordination } from '../../src/jobs/daemon-coordination.js';
import { LeaderElection } from '../../src/jobs/leader-election.js';
import { SharedScan } from '../../src/jobs/shared-scan.js';
import { ChunkedStore } from '../../src/layers/chunked/index.js';
import type { GcReport } from '../../src/layers/chunked/gc.js';
import { randomBytes } from 'node:crypto';
import type { PostgresStateStore } from '../../src/state/postgres.js';
import { SqliteStateStore } from '../../src/state/sqlite.js';
import { PG_URL, PgSchemas, requirePostgres } from '../state/postgres-fixture.js';

const schemas = new PgSchemas();
beforeAll(requirePostgres);
afterAll(() => schemas.dropAll());
const routers: Router[] = [];
afterEach(async () => {
  for (const r of routers.splice(0)) await r.close();
});

/** A daemon's scanning half: its own connection pool on the shared schema, its router over the shared providers. */
async function daemon(schema: string, a: MemoryStore, b: MemoryStore, name: string, leaseMs = 60_000, ranges = 8): Promise<{ state: PostgresStateStore; router: Router; scanner: AntiEntropyScanner; scan: SharedScan; counts: Map<string, number> }> {
  const state = await schemas.open({ schema });
  const router = new Router({
    providers: [{ name: 'a', store: a }, { name: 'b', store: b }], state, policies: [{ replicas: 2, writeQuorum: 1, pin: ['a'] }],
    health: { probeIntervalMs: 0 }, closeResources: false,
  });
  routers.push(router);
  const scanner = new AntiEntropyScanner({ router, settleMs: 0, batchSize: 25 });
  const counts = new Map<string, number>();
  scanner.on('checked', (k) => counts.set(k, (counts.get(k) ?? 0) + 1));
  return { state, router, scanner, scan: new SharedScan({ state, scanner, owner: name, ranges, leaseMs }), counts };
}

async function cyclesDone(scan: SharedScan): Promise<number> {
  const ranges = await scan.ranges();
  return ranges.length === 0 ? -1 : Math.min(...ranges.map((r) => r.cycle));
}

describe('anti-entropy divided between daemons on one PostgreSQL', () => {
  it('three daemons: each key is checked once per cycle, whatever the number of daemons', async () => {
    const schema = schemas.name();
    const a = new MemoryStore({ name: 'a' });
    const b = new MemoryStore({ name: 'b' });
    const ds = await Promise.all(['d1', 'd2', 'd3'].map((n) => daemon(schema, a, b, n)));
    const keys = Array.from({ length: 300 }, (_, i) => `k/${String(i).padStart(4, '0')}`);
    for (const k of keys) await ds[0]!.router.put(k, `body ${k}`);
    await ReplicationWorker.forRouter(ds[0]!.router, { pollIntervalMs: 10 }).drain({ timeoutMs: 30_000 });
    for (let cycle = 1; cycle <= 2; cycle++) {
      while (await cyclesDone(ds[0]!.scan) < cycle) await Promise.all(ds.map((d) => d.scan.tick()));
      const total = new Map<string, number>();
      for (const d of ds) for (const [k, n] of d.counts) total.set(k, (total.get(k) ?? 0) + n);
      expect([...total.keys()].sort()).toEqual(keys);
      expect([...total.values()].every((n) => n === cycle), JSON.stringify([...total].filter(([, n]) => n !== cycle).slice(0, 5))).toBe(true);
    }
    const ranges = await ds[0]!.scan.ranges();
    expect(ranges.length).toBeGreaterThan(3);
    // Every daemon did part of the work.
    for (const d of ds) expect(d.counts.size).toBeGreaterThan(0);
  });

  it('a daemon that dies holding a range: another takes it over from its position after the lease, no key checked twice', async () => {
    const schema = schemas.name();
    const a = new MemoryStore({ name: 'a' });
    const b = new MemoryStore({ name: 'b' });
    // Two ranges of 60 keys, slices of 25: the dead daemon stops inside its range.
    const dead = await daemon(schema, a, b, 'dead', 1_000, 2);
    const alive = await daemon(schema, a, b, 'alive', 1_000, 2);
    const keys = Array.from({ length: 120 }, (_, i) => `k/${String(i).padStart(4, '0')}`);
    for (const k of keys) await dead.router.put(k, `body ${k}`);
    await ReplicationWorker.forRouter(dead.router, { pollIntervalMs: 10 }).drain({ timeoutMs: 30_000 });
    await dead.scan.tick(); // one slice of range 1, then silence
    const held = (await alive.scan.ranges()).find((r) => r.owner === 'dead');
    expect(held?.position).toBeTruthy();
    while (await cyclesDone(alive.scan) < 1) {
      if (!(await alive.scan.tick())) await new Promise((ok) => setTimeout(ok, 100)); // waiting for the dead lease to end (database clock)
    }
    const total = new Map(dead.counts);
    for (const [k, n] of alive.counts) total.set(k, (total.get(k) ?? 0) + n);
    expect([...total.keys()].sort()).toEqual(keys);
    expect([...total.values()].every((n) => n === 1)).toBe(true);
  });
});

describe('singleton jobs under an advisory-lock leader', () => {
  it('kill -9 the leader: another process takes over within one check interval of noticing', async () => {
    const schema = schemas.name();
    const state = await schemas.open({ schema });
    const child = spawn(process.execPath, ['--import', 'tsx', resolve('test/jobs/leader-child.ts'), PG_URL, schema, 'tombstone-pruner', 'child'], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((ok, fail) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('ELECTED') && ok());
      child.once('exit', (c) => fail(new Error(`leader child exited ${c}`)));
    });
    const follower = new LeaderElection({ state, role: 'tombstone-pruner', owner: 'follower', checkMs: 100 });
    await follower.check();
    expect(follower.isLeader).toBe(false);
    expect((await follower.current())?.owner).toBe('child');
    const exited = new Promise((ok) => child.once('exit', ok));
    child.kill('SIGKILL');
    await exited;
    // The server drops the dead session (and its lock) as soon as it reads the closed socket: a
    // check or two later the follower leads. Bounded by checks, not by a clock.
    let checks = 0;
    while (!follower.isLeader && checks < 100) {
      checks++;
      await follower.check();
      if (!follower.isLeader) await new Promise((ok) => setTimeout(ok, 50));
    }
    expect(follower.isLeader).toBe(true);
    expect((await follower.current())?.owner).toBe('follower');
    await follower.stop();
  }, 60_000);

  it('only the leader prunes tombstones; with SQLite the one daemon prunes on its schedule', async () => {
    const schema = schemas.name();
    const s1 = await schemas.open({ schema });
    const s2 = await schemas.open({ schema });
    const scannerStub = {} as AntiEntropyScanner;
    const tomb = { pruneIntervalMs: 0, retainMs: 1, leaderCheckMs: 60_000 };
    const c1 = new DaemonCoordination({ state: s1, scanner: scannerStub, owner: 'one', scan: { ranges: 4, leaseMs: 1000 }, tombstones: tomb });
    const c2 = new DaemonCoordination({ state: s2, scanner: scannerStub, owner: 'two', scan: { ranges: 4, leaseMs: 1000 }, tombstones: tomb });
    c1.start();
    await new Promise((ok) => setTimeout(ok, 0));
    // c1's first check runs at start; c2 starts after c1 leads.
    while (!c1.isLeader) await new Promise((ok) => setTimeout(ok, 20));
    c2.start();
    expect(await c2.pruneNow()).toBeUndefined();
    expect(typeof (await c1.pruneNow())).toBe('number');
    const st = await c2.status();
    expect(st).toMatchObject({ daemon: 'two', isLeader: false, leader: { owner: 'one' } });
    await c1.stop();
    await c2.stop();
    const lite = new SqliteStateStore({ path: ':memory:' });
    const solo = new DaemonCoordination({ state: lite, scanner: scannerStub, scan: { ranges: 4, leaseMs: 1000 }, tombstones: tomb });
    expect(solo.isLeader).toBe(true);
    expect(await solo.pruneNow()).toBe(0);
    await lite.close();
  });

  it('chunk GC of a configured store runs on the leader only, and on another daemon once the leader is gone', async () => {
    const schema = schemas.name();
    const inner = new MemoryStore({ name: 'chunks' });
    const chunked = new ChunkedStore(inner, { sizes: { min: 4096, target: 16384, max: 65536 }, threshold: 16384, graceMs: 60 * 60_000 });
    // v1's chunks lose their last reference when v2 (other bytes) replaces it.
    await chunked.put('disk.img', randomBytes(200_000));
    await chunked.put('disk.img', randomBytes(200_000));
    const job = { name: 'chunks', store: { inner, chunkPrefix: chunked.chunkPrefix, graceMs: 0 }, intervalMs: 50 };
    const tomb = { pruneIntervalMs: 0, retainMs: 1, leaderCheckMs: 100 };
    const scannerStub = {} as AntiEntropyScanner;
    const open = async (owner: string): Promise<{ c: DaemonCoordination; runs: GcReport[] }> => {
      const c = new DaemonCoordination({ state: await schemas.open({ schema }), scanner: scannerStub, owner, scan: { ranges: 4, leaseMs: 1000 }, tombstones: tomb, chunkGc: [job] });
      const runs: GcReport[] = [];
      c.chunkGc.on('collected', (_name, r) => runs.push(r));
      return { c, runs };
    };
    const one = await open('one');
    const two = await open('two');
    one.c.start();
    while (!one.c.isLeader) await new Promise((ok) => setTimeout(ok, 20));
    two.c.start();
    expect(await two.c.chunkGc.runNow('chunks')).toBeUndefined();
    while (one.runs.length < 2) await new Promise((ok) => setTimeout(ok, 20));
    expect(one.runs.reduce((n, r) => n + r.deleted, 0)).toBeGreaterThan(0);
    expect(two.runs).toEqual([]);
    // Nothing a manifest names was deleted: v2 reads back whole.
    expect((await chunked.get('disk.img', { verify: true })).meta.size).toBe(200_000);
    const st = await one.c.status();
    expect(st.chunkGc).toMatchObject([{ name: 'chunks', running: expect.any(Boolean), last: { report: { missing: 0 } } }]);
    // The leader stops: the other daemon leads within a check interval and collects on its schedule.
    await one.c.stop();
    while (two.runs.length < 1) await new Promise((ok) => setTimeout(ok, 20));
    expect(two.c.isLeader).toBe(true);
    await two.c.stop();
  }, 60_000);
});
