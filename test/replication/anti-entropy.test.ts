import { afterEach, describe, expect, it, vi } from 'vitest';
import { getBuffer } from '../../src/core/index.js';
import { MemoryStore } from '../../providers/memory/index.js';
import { Router } from '../../src/router/router.js';
import type { PolicyInput } from '../../src/router/policy.js';
import { ReplicationWorker } from '../../src/replication/worker.js';
import { SqliteStateStore } from '../../src/state/sqlite.js';
import { AntiEntropyScanner, type AntiEntropyOptions, type ScanRepair } from '../../src/replication/anti-entropy.js';

interface Fixture {
  a: MemoryStore;
  b: MemoryStore;
  state: SqliteStateStore;
  router: Router;
  worker: ReplicationWorker;
  scanner: AntiEntropyScanner;
  repairs: ScanRepair[];
}

const open: Fixture[] = [];
afterEach(async () => {
  for (const f of open.splice(0)) await f.router.close();
});

function fixture(opts: { policies?: PolicyInput[]; scan?: Partial<AntiEntropyOptions>; stores?: { a: MemoryStore; b: MemoryStore }; state?: SqliteStateStore } = {}): Fixture {
  const a = opts.stores?.a ?? new MemoryStore({ name: 'a' });
  const b = opts.stores?.b ?? new MemoryStore({ name: 'b' });
  const state = opts.state ?? new SqliteStateStore({ path: ':memory:' });
  const router = new Router({
    providers: [{ name: 'a', store: a }, { name: 'b', store: b }],
    state,
    policies: opts.policies ?? [{ replicas: 2, writeQuorum: 1, pin: ['a'] }],
    health: { probeIntervalMs: 0 },
    closeResources: false,
  });
  const worker = ReplicationWorker.forRouter(router, { pollIntervalMs: 10, backoffBaseMs: 5, backoffMaxMs: 20 });
  const scanner = new AntiEntropyScanner({ router, settleMs: 0, ...opts.scan });
  const repairs: ScanRepair[] = [];
  scanner.on('repair', (r) => repairs.push(r));
  const f = { a, b, state, router, worker, scanner, repairs };
  open.push(f);
  return f;
}

/** Puts through the router and drains, so both providers hold every key. */
async function seed(f: Fixture, keys: string[]): Promise<void> {
  for (const k of keys) await f.router.put(k, `body of ${k}`);
  await f.worker.drain({ timeoutMs: 5_000 });
}

describe('anti-entropy scan', () => {
  it('finds nothing to repair when catalog and providers agree', async () => {
    const f = fixture();
    await seed(f, ['k1', 'k2', 'k3']);
    const r = await f.scanner.scanSlice();
    expect(r).toMatchObject({ passComplete: true, keysChecked: 3, replicasChecked: 6, repairCount: 0, deferred: 0, unknownKeys: 0 });
    expect(r.errors).toEqual([]);
  });

  it('a holder that lost its copy is owed a replica, and the worker puts it back', async () => {
    const f = fixture();
    await seed(f, ['lost', 'kept']);
    await f.b.delete('lost');
    const r = await f.scanner.scanSlice();
    expect(r.repairs).toEqual([expect.objectContaining({ key: 'lost', provider: 'b', problem: 'missing', action: 'replicate' })]);
    await f.worker.drain({ timeoutMs: 5_000 });
    expect((await getBuffer(f.b, 'lost')).toString()).toBe('body of lost');
    expect((await f.scanner.scanSlice()).repairCount).toBe(0);
  });

  it('a holder whose bytes were overwritten behind cloudmux gets the catalog version back', async () => {
    const f = fixture();
    await seed(f, ['tampered']);
    // Same size, other bytes (the store records their own digest).
    await f.b.put('tampered', 'BODY OF tampered');
    const r = await f.scanner.scanSlice();
    expect(r.repairs).toEqual([expect.objectContaining({ key: 'tampered', provider: 'b', problem: 'sha256', action: 'replicate' })]);
    await f.worker.drain({ timeoutMs: 5_000 });
    expect((await getBuffer(f.b, 'tampered')).toString()).toBe('body of tampered');
  });

  it('compare "size" reads listings only: no head per object, size changes still found', async () => {
    const f = fixture({ scan: { compare: 'size' } });
    await seed(f, ['same', 'resized']);
    await f.b.put('resized', 'longer body of resized');
    const heads = [vi.spyOn(f.a, 'head'), vi.spyOn(f.b, 'head')];
    const r = await f.scanner.scanSlice();
    expect(r.repairs.map((x) => [x.key, x.problem])).toEqual([['resized', 'size']]);
    // One head: the confirmation of the difference found.
    expect(heads.reduce((n, h) => n + h.mock.calls.length, 0)).toBe(1);
  });

  it('an object left on a provider after its key was deleted is owed a delete', async () => {
    const f = fixture();
    await seed(f, ['gone']);
    await f.router.delete('gone');
    await f.worker.drain({ timeoutMs: 5_000 });
    // A late write (e.g. a replica copy that landed after the delete) resurrects it on b.
    await f.b.put('gone', 'zombie');
    const r = await f.scanner.scanSlice();
    expect(r.repairs).toEqual([expect.objectContaining({ key: 'gone', provider: 'b', problem: 'deleted-but-present', action: 'delete' })]);
    await f.worker.drain({ timeoutMs: 5_000 });
    await expect(f.b.head('gone')).rejects.toMatchObject({ code: 'NotFound' });
  });

  it('objects the catalog never heard of are counted and left alone', async () => {
    const f = fixture();
    await seed(f, ['known']);
    await f.b.put('foreign', 'written by someone else');
    const r = await f.scanner.scanSlice();
    expect(r.unknownKeys).toBe(1);
    expect(r.repairCount).toBe(0);
    expect((await getBuffer(f.b, 'foreign')).toString()).toBe('written by someone else');
  });

  it('a correct unrecorded copy on a provider the policy needs is adopted, a wrong one is owed a delete', async () => {
    const state = new SqliteStateStore({ path: ':memory:' });
    const stores = { a: new MemoryStore(), b: new MemoryStore() };
    // Written with one replica: only a holds them.
    const one = fixture({ policies: [{ replicas: 1, writeQuorum: 1, pin: ['a'] }], stores, state });
    await one.router.put('right', 'right bytes');
    await one.router.put('wrong', 'wrong bytes');
    await stores.b.put('right', 'right bytes');
    await stores.b.put('wrong', 'other bytes!');
    // Now the policy asks for two.
    const two = fixture({ policies: [{ replicas: 2, writeQuorum: 1, pin: ['a'] }], stores, state });
    const r = await two.scanner.scanSlice();
    const byKey = Object.fromEntries(r.repairs.map((x) => [x.key, x]));
    expect(byKey.right).toMatchObject({ provider: 'b', problem: 'stray', action: 'adopt' });
    expect(byKey.wrong).toMatchObject({ provider: 'b', problem: 'stray', action: 'delete' });
    const right = await state.lookup('right');
    expect(right.state === 'live' && right.holders.map((h) => h.provider).sort()).toEqual(['a', 'b']);
    await two.worker.drain({ timeoutMs: 5_000 });
    // The wrong copy went; the next slice finds `wrong` under-replicated and owes it a real copy.
    const r2 = await two.scanner.scanSlice();
    expect(r2.repairs).toEqual([expect.objectContaining({ key: 'wrong', provider: 'b', problem: 'under-replicated', action: 'replicate' })]);
    await two.worker.drain({ timeoutMs: 5_000 });
    expect((await getBuffer(stores.b, 'wrong')).toString()).toBe('wrong bytes');
    expect((await two.scanner.scanSlice()).repairCount).toBe(0);
  });

  it('raising replicas makes existing keys under-replicated: the scan owes the missing copies', async () => {
    const state = new SqliteStateStore({ path: ':memory:' });
    const stores = { a: new MemoryStore(), b: new MemoryStore() };
    const one = fixture({ policies: [{ replicas: 1, writeQuorum: 1, pin: ['a'] }], stores, state });
    await seed(one, ['u1', 'u2']);
    expect(await stores.b.head('u1').catch(() => null)).toBeNull();
    const two = fixture({ policies: [{ replicas: 2, writeQuorum: 1, pin: ['a'] }], stores, state });
    const r = await two.scanner.scanSlice();
    expect(r.repairs.map((x) => [x.key, x.provider, x.problem])).toEqual([['u1', 'b', 'under-replicated'], ['u2', 'b', 'under-replicated']]);
    await two.worker.drain({ timeoutMs: 5_000 });
    expect((await getBuffer(stores.b, 'u2')).toString()).toBe('body of u2');
  });

  it('differences on objects changed within settleMs wait for the next pass', async () => {
    const f = fixture({ scan: { settleMs: 60_000 } });
    await seed(f, ['fresh']);
    await f.b.put('fresh', 'FRESH BYTES OF fresh');
    const r = await f.scanner.scanSlice();
    expect(r.deferred).toBe(1);
    expect(r.repairCount).toBe(0);
  });

  it('scans the key space in rolling slices and wraps around', async () => {
    const f = fixture({ scan: { batchSize: 3 } });
    const keys = Array.from({ length: 8 }, (_, i) => `key-${i}`);
    await seed(f, keys);
    await f.b.delete('key-6');
    const reports = await f.scanner.scanToEnd();
    expect(reports.map((r) => [r.from ?? null, r.to ?? null, r.passComplete])).toEqual([
      [null, 'key-2', false], ['key-2', 'key-5', false], ['key-5', null, true],
    ]);
    expect(reports.map((r) => r.keysChecked)).toEqual([3, 3, 2]);
    expect(f.repairs.map((r) => r.key)).toEqual(['key-6']);
    expect(f.scanner.passes).toBe(1);
    expect(f.scanner.cursor).toBeUndefined();
    expect((await f.scanner.scanSlice()).from).toBeUndefined();
  });

  it('a provider listing with many keys the catalog lacks ends the slice early instead of listing it all', async () => {
    const f = fixture({ scan: { batchSize: 2 } });
    await seed(f, ['m-1', 'z-1']);
    for (let i = 0; i < 10; i++) await f.b.put(`n-${i}`, 'foreign');
    const first = await f.scanner.scanSlice();
    // b lists m-1, n-0, n-1, n-2 (2 × batchSize) and the slice stops at n-2.
    expect(first.to).toBe('n-2');
    const rest = await f.scanner.scanToEnd();
    expect(rest[rest.length - 1]!.passComplete).toBe(true);
    const all = [first, ...rest];
    expect(all.reduce((n, r) => n + r.unknownKeys, 0)).toBe(10);
    expect(all.reduce((n, r) => n + r.repairCount, 0)).toBe(0);
  });

  it('skips down providers, leaves canary keys and dead-lettered keys alone', async () => {
    const f = fixture();
    await seed(f, ['dead-one', 'ok']);
    await f.a.put('cloudmux-probe/host-1-abc', 'canary');
    // A dead-lettered entry for dead-one: an operator has to look at it.
    await f.b.delete('dead-one');
    const entry = await f.state.repairReplica('dead-one', 'b');
    await f.state.deadLetter(entry!.id, 'test');
    f.router.health.setBreaker('b', 'open');
    const r = await f.scanner.scanSlice();
    expect(r.skippedProviders).toEqual([expect.objectContaining({ provider: 'b' })]);
    expect(r.deadLettered).toBe(1);
    expect(r.unknownKeys).toBe(0);
    expect(r.repairCount).toBe(0);
  });
});
