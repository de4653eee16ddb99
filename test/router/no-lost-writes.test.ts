import { afterEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { MemoryStore } from '../../providers/memory/store.js';
import { AbortedError } from '../../src/core/errors.js';
import { getBuffer } from '../../src/core/helpers.js';
import type { BlobStore, Body, ObjectMeta, PutOptions } from '../../src/core/types.js';
import { ForwardingStore } from '../../src/layers/forwarding-store.js';
import { ReplicationWorker } from '../../src/replication/worker.js';
import { Router, routerEtag } from '../../src/router/router.js';
import { SqliteStateStore } from '../../src/state/sqlite.js';
import { tempDir } from '../harness/emulator.js';
import { FLAT, routerFixture, type Fixture } from './fixture.js';

/**
 * Regression tests for issue 14's router findings: each history here lost an acknowledged write,
 * or left a key with no readable version, before write leases and in-doubt resolution.
 */

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

async function fixture(...args: Parameters<typeof routerFixture>): Promise<Fixture> {
  const f = await routerFixture(...args);
  cleanups.push(() => f.close());
  return f;
}

/** Every provider holding the key holds the catalog's bytes, and at least one does. */
async function expectReplicasMatchCatalog(router: Router, stores: Record<string, BlobStore>, key: string): Promise<void> {
  const found = await router.state.lookup(key);
  expect(found.state).toBe('live');
  if (found.state !== 'live') return;
  expect(found.holders.length).toBeGreaterThan(0);
  for (const h of found.holders) expect(sha(await getBuffer(stores[h.provider]!, key)), `${h.provider} holds the catalog's bytes`).toBe(found.object.sha256);
}

/** The provider finishes the write whatever the caller's signal says, then reports the abort: the caller gave up, the write landed. */
class FinishesAfterAbort extends ForwardingStore {
  protected readonly layerName = 'FinishesAfterAbort';
  override async put(key: string, body: Body, opts: PutOptions = {}): Promise<ObjectMeta> {
    const { signal, ...rest } = opts;
    const meta = await this.inner.put(key, body, rest);
    if (signal?.aborted) throw new AbortedError('put aborted', { provider: this.provider, key, cause: signal.reason });
    return meta;
  }
}

/** Holds every put until released, so a test can order two writers' landings. */
class Gate extends ForwardingStore {
  protected readonly layerName = 'Gate';
  private release: (() => void) | undefined;
  private closed = false;
  private opened = Promise.resolve();
  hold(): void {
    this.closed = true;
    this.opened = new Promise((r) => (this.release = r));
  }
  open(): void {
    this.closed = false;
    this.release?.();
  }
  get holding(): boolean {
    return this.closed;
  }
  override async put(key: string, body: Body, opts: PutOptions = {}): Promise<ObjectMeta> {
    await this.opened;
    return this.inner.put(key, body, opts);
  }
}

describe('a failed put never destroys the previous version (N=2, W=2)', () => {
  it('a lost response after the write landed: the put is resolved by looking, and the key reads as the new bytes', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 2 }] });
    await f.router.put('k', 'v1');
    f.faulty.b!.setPlan({ ops: ['put'], lostResponse: 1, maxFaults: 1 });
    // The write landed on both; one answer was lost. Looking at b shows the bytes: two of two.
    const meta = await f.router.put('k', 'v2');
    expect(meta.checksums.sha256).toBe(sha('v2'));
    expect((await getBuffer(f.router, 'k')).toString()).toBe('v2');
    await f.worker.drain({ timeoutMs: 10_000 });
    await expectReplicasMatchCatalog(f.router, f.memory, 'k');
    expect((await f.state.backlog()).dead).toBe(0);
  });

  it('lost responses on both providers: still readable, as v1 or v2, never as neither', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 2 }] });
    await f.router.put('k', 'v1');
    for (const p of ['a', 'b']) f.faulty[p]!.setPlan({ ops: ['put'], lostResponse: 1, maxFaults: 1 });
    const outcome = await f.router.put('k', 'v2').then(() => 'ok', (e: Error) => e.message);
    const value = (await getBuffer(f.router, 'k')).toString();
    expect(['v1', 'v2']).toContain(value);
    if (outcome !== 'ok') expect(outcome).toMatch(/acknowledged/);
    await f.worker.drain({ timeoutMs: 10_000 });
    await expectReplicasMatchCatalog(f.router, f.memory, 'k');
    expect((await f.state.backlog()).dead).toBe(0);
  });

  it('the caller aborts while both providers finish: the put fails with Aborted and the key reads as v2', async () => {
    const f = await fixture({
      providers: [{ name: 'a', wrap: (s) => new FinishesAfterAbort(s) }, { name: 'b', wrap: (s) => new FinishesAfterAbort(s) }],
      policies: [{ replicas: 2, writeQuorum: 2 }],
    });
    await f.router.put('k', 'v1');
    for (const p of ['a', 'b']) {
      f.faulty[p]!.setPlan({ ops: ['put'], latencyMs: 100 });
      f.faulty[p]!.log.length = 0;
    }
    const ctrl = new AbortController();
    const put = f.router.put('k', 'v2', { signal: ctrl.signal });
    // Abort once both provider writes are under way (they then finish regardless).
    while (f.faulty.a!.log.length === 0 || f.faulty.b!.log.length === 0) await new Promise((r) => setTimeout(r, 2));
    ctrl.abort(new Error('caller gave up'));
    await expect(put).rejects.toMatchObject({ code: 'Aborted' });
    expect(['v1', 'v2']).toContain((await getBuffer(f.router, 'k')).toString());
    await f.worker.drain({ timeoutMs: 10_000 });
    await expectReplicasMatchCatalog(f.router, f.memory, 'k');
    expect((await f.state.backlog()).dead).toBe(0);
  });

  it('one provider refuses and the other took the bytes: the put fails, the key reads as v2, and replication completes it', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 2 }] });
    await f.router.put('k', 'v1');
    f.faulty.b!.setPlan({ ops: ['put'], errorRates: { Transient: 1 }, maxFaults: 1 });
    const err = await f.router.put('k', 'v2').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ProviderUnavailable' });
    expect((err as Error).message).toMatch(/1 of 2 required providers acknowledged the put; it is committed as version/);
    expect((await getBuffer(f.router, 'k')).toString()).toBe('v2');
    f.faulty.b!.heal();
    await f.worker.drain({ timeoutMs: 10_000 });
    expect((await getBuffer(f.memory.b!, 'k')).toString()).toBe('v2');
  });
});

describe('the last holder is never forgotten', () => {
  it('an outside program rewrote the only copy: the router adopts those bytes instead of losing the key', async () => {
    const f = await fixture({ providers: ['a'], policies: [{ replicas: 1, writeQuorum: 1 }] });
    await f.router.put('k', 'mine');
    await f.memory.a!.put('k', 'theirs');
    expect((await getBuffer(f.router, 'k')).toString()).toBe('theirs');
    await expectReplicasMatchCatalog(f.router, f.memory, 'k');
  });

  it('one of two holders holds other bytes: it is repaired from the other, not adopted', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 2, read: 'primary', pin: ['a'] }] });
    await f.router.put('k', 'mine');
    await f.memory.a!.put('k', 'rot');
    expect((await getBuffer(f.router, 'k')).toString()).toBe('mine');
    await f.worker.drain({ timeoutMs: 10_000 });
    expect((await getBuffer(f.memory.a!, 'k')).toString()).toBe('mine');
  });
});

describe('several routers on one StateStore', () => {
  async function twoRouters(): Promise<{ r1: Router; r2: Router; stores: Record<string, MemoryStore>; gate: Gate; worker: ReplicationWorker }> {
    const dir = await tempDir('routers');
    cleanups.push(() => dir.remove());
    const stores = { a: new MemoryStore({ name: 'two-a' }), b: new MemoryStore({ name: 'two-b' }) };
    const gate = new Gate(stores.a);
    const make = (a: BlobStore): Router => new Router({
      providers: [{ name: 'a', store: a, prices: FLAT }, { name: 'b', store: stores.b, prices: FLAT }],
      state: new SqliteStateStore({ path: `${dir.path}/state.db`, durability: 'normal' }),
      policies: [{ replicas: 2, writeQuorum: 2 }],
      health: { probeIntervalMs: 0 },
      closeResources: false,
    });
    const r1 = make(gate);
    const r2 = make(stores.a);
    const worker = ReplicationWorker.forRouter(r2, { pollIntervalMs: 20, backoffBaseMs: 5, backoffMaxMs: 50 });
    cleanups.push(async () => {
      gate.open();
      await worker.stop();
      await r1.close();
      await r2.close();
      await r1.state.close();
      await r2.state.close();
    });
    return { r1, r2, stores, gate, worker };
  }

  it('two routers put one key at once: both succeed, and every replica holds the bytes of the put the catalog names', async () => {
    const { r1, r2, stores, gate, worker } = await twoRouters();
    await r1.put('k', 'v0');
    // r1's put reaches b, then stalls on its way to a; r2 puts meanwhile. Before write leases r2
    // took a newer version, its bytes landed first and r1's older bytes overwrote them on a.
    gate.hold();
    const first = r1.put('k', 'from-r1');
    await new Promise((r) => setTimeout(r, 50));
    const second = r2.put('k', 'from-r2');
    await new Promise((r) => setTimeout(r, 50));
    gate.open();
    const [m1, m2] = await Promise.all([first, second]);
    expect(Number(m2.version)).toBeGreaterThan(Number(m1.version));
    for (const r of [r1, r2]) expect((await getBuffer(r, 'k')).toString()).toBe('from-r2');
    await worker.drain({ timeoutMs: 10_000 });
    await expectReplicasMatchCatalog(r2, stores, 'k');
  });

  it('compare-and-swap through two routers: 40 increments of one counter, none lost', async () => {
    const { r1, r2 } = await twoRouters();
    await r1.put('counter', '0');
    const increment = async (r: Router): Promise<void> => {
      for (;;) {
        const meta = await r.head('counter');
        const n = Number((await getBuffer(r, 'counter', { ifMatch: meta.etag }).catch(() => Buffer.from('-1'))).toString());
        if (n < 0) continue;
        const ok = await r.put('counter', String(n + 1), { ifMatch: meta.etag }).then(() => true, (e: { code?: string }) => {
          if (e.code === 'PreconditionFailed') return false;
          throw e;
        });
        if (ok) return;
      }
    };
    await Promise.all(Array.from({ length: 40 }, (_, i) => increment(i % 2 ? r1 : r2)));
    expect((await getBuffer(r1, 'counter')).toString()).toBe('40');
  });

  it('conditional puts compare with the catalog version: ifNoneMatch on a live key and a stale ifMatch are refused', async () => {
    const { r1, r2 } = await twoRouters();
    const v1 = await r1.put('c', 'one', { ifNoneMatch: '*' });
    expect(v1.etag).toBe(routerEtag(Number(v1.version)));
    await expect(r2.put('c', 'two', { ifNoneMatch: '*' })).rejects.toMatchObject({ code: 'AlreadyExists' });
    const v2 = await r2.put('c', 'two', { ifMatch: v1.etag });
    await expect(r1.put('c', 'three', { ifMatch: v1.etag })).rejects.toMatchObject({ code: 'PreconditionFailed' });
    await expect(r1.put('missing', 'x', { ifMatch: v2.etag })).rejects.toMatchObject({ code: 'NotFound' });
    expect((await getBuffer(r1, 'c')).toString()).toBe('two');
  });
});

describe('a write that failed but landed leaves no stray copy', () => {
  it('N=1: the cheapest provider lost its answer, the put moved on to the spare; the copy left behind is deleted', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 1, writeQuorum: 1, pin: ['a'] }] });
    f.faulty.a!.setPlan({ ops: ['put'], lostResponse: 1, maxFaults: 1 });
    await f.router.put('k', 'v1');
    await f.router.delete('k');
    await f.worker.drain({ timeoutMs: 10_000 });
    for (const p of ['a', 'b']) await expect(f.memory[p]!.head('k'), `${p} keeps no copy of a deleted key`).rejects.toMatchObject({ code: 'NotFound' });
  });
});
