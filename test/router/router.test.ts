import { afterEach, describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import { getBuffer, listAll } from '../../src/core/helpers.js';
import { CloudmuxError } from '../../src/core/errors.js';
import type { BlobStore } from '../../src/core/types.js';
import { BreakerStore } from '../../src/layers/breaker.js';
import { ReplicationWorker } from '../../src/replication/worker.js';
import { Router } from '../../src/router/router.js';
import { FLAT, routerFixture, type Fixture } from './fixture.js';

const fixtures: Fixture[] = [];
afterEach(async () => {
  for (const f of fixtures.splice(0)) await f.close();
});
async function fixture(...args: Parameters<typeof routerFixture>): Promise<Fixture> {
  const f = await routerFixture(...args);
  fixtures.push(f);
  return f;
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return e instanceof CloudmuxError ? e.code : `non-cloudmux: ${String(e)}`;
  }
}

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

async function shaOn(store: BlobStore, key: string): Promise<string> {
  return sha(await getBuffer(store, key));
}

describe('router: writes', () => {
  it('N=2, W=1: acknowledges after one provider, owes the other, and the worker completes it', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 1 }] });
    const meta = await f.router.put('doc/1', 'hello');
    expect(meta.checksums.sha256).toBe(sha('hello'));
    const held = ['a', 'b'].filter((p) => f.memory[p]!.head('doc/1').then(() => true, () => false));
    expect(held.length).toBeGreaterThan(0);
    const backlog = await f.state.backlog();
    expect(backlog.count).toBe(1);
    expect(backlog.bytes).toBe(5);
    await f.worker.drain({ timeoutMs: 10_000 });
    expect(await shaOn(f.memory.a!, 'doc/1')).toBe(sha('hello'));
    expect(await shaOn(f.memory.b!, 'doc/1')).toBe(sha('hello'));
    expect(f.worker.counters.copied).toBe(1);
  });

  it('W=2 writes both before returning; nothing is owed', async () => {
    const f = await fixture({ providers: ['a', 'b', 'c'], policies: [{ replicas: 2, writeQuorum: 2 }] });
    await f.router.put('k', 'v');
    expect((await f.state.backlog()).count).toBe(0);
    const holders = (await Promise.all(['a', 'b', 'c'].map(async (p) => ((await code(f.memory[p]!.head('k'))) === 'ok' ? p : '')))).filter(Boolean);
    expect(holders).toHaveLength(2);
  });

  it('a failing provider during a put is replaced by the next one; the failed target is owed', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 1 }] });
    // a is cheaper, so it is tried first.
    f.outage('a', true);
    await f.router.put('k', 'data');
    expect(await code(f.memory.b!.head('k'))).toBe('ok');
    expect((await f.state.entries({ key: 'k' })).map((e) => `${e.kind}:${e.provider}`)).toEqual(['replicate:a']);
    f.outage('a', false);
    await f.worker.drain({ timeoutMs: 10_000 });
    expect(await shaOn(f.memory.a!, 'k')).toBe(sha('data'));
  });

  it('streams go to W+1 providers at once, so one failure does not lose an unreplayable body', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 1 }] });
    f.faulty.a!.setPlan({ ops: ['put'], errorRates: { Transient: 1 } });
    const body = Readable.from([Buffer.from('one '), Buffer.from('two')]);
    await f.router.put('s', body);
    expect((await getBuffer(f.router, 's')).toString()).toBe('one two');
    f.faulty.a!.heal();
    await f.router.put('s2', Readable.from([Buffer.from('x')]));
    expect((await f.state.backlog()).count).toBe(1); // s is still owed to a; s2 reached both at once
  });

  it('fails with ProviderUnavailable and records nothing when no provider takes the put', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 1 }] });
    f.outage('a', true);
    f.outage('b', true);
    expect(await code(f.router.put('k', 'v'))).toBe('ProviderUnavailable');
    expect(await f.state.lookup('k')).toEqual({ state: 'unknown' });
  });

  it('pins: a pinned provider always gets a copy even when it is the most expensive', async () => {
    const pricey = { ...FLAT, storageGbMonth: 1 };
    const f = await fixture({ providers: ['a', 'b', { name: 'eu', prices: pricey }], policies: [{ replicas: 2, writeQuorum: 2, pin: ['eu'] }] });
    await f.router.put('k', 'v');
    expect(await code(f.memory.eu!.head('k'))).toBe('ok');
  });

  it('places by price: the cheapest storage gets the writes', async () => {
    const f = await fixture({ providers: [{ name: 'a', prices: { ...FLAT, storageGbMonth: 0.03 } }, { name: 'b', prices: { ...FLAT, storageGbMonth: 0.01 } }], policies: [{ replicas: 1 }] });
    for (let i = 0; i < 5; i++) await f.router.put(`k${i}`, Buffer.alloc(1000));
    expect(f.calls('b', 'put')).toBe(5);
    expect(f.calls('a', 'put')).toBe(0);
  });
});

describe('router: reads', () => {
  it('never serves a stale version: v1 on A and B, v2 on A only, A down → ProviderUnavailable', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 1 }] });
    await f.router.put('k', 'v1');
    await f.worker.drain({ timeoutMs: 10_000 });
    f.outage('b', true);
    await f.router.put('k', 'v2');
    f.outage('a', true);
    f.outage('b', false);
    // b still holds v1.
    expect((await getBuffer(f.memory.b!, 'k')).toString()).toBe('v1');
    expect(await code(getBuffer(f.router, 'k'))).toBe('ProviderUnavailable');
    expect(await code(f.router.head('k'))).toBe('ok'); // the catalog knows v2 exists
    f.outage('a', false);
    expect((await getBuffer(f.router, 'k')).toString()).toBe('v2');
  });

  it('allowStaleReads serves an older copy, marked stale', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 1, allowStaleReads: true }] });
    await f.router.put('k', 'v1');
    await f.worker.drain({ timeoutMs: 10_000 });
    f.outage('b', true);
    await f.router.put('k', 'v2');
    f.outage('a', true);
    f.outage('b', false);
    const res = await f.router.get('k');
    expect(res.stale).toBe(true);
    expect(res.provider).toBe('b');
    res.body.destroy();
  });

  it('a holder that lost its copy is skipped and repaired', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 2, read: 'primary' }] });
    await f.router.put('k', 'data');
    await f.memory.a!.delete('k');
    expect((await getBuffer(f.router, 'k')).toString()).toBe('data');
    expect((await f.state.entries({ key: 'k' })).map((e) => `${e.kind}:${e.provider}`)).toEqual(['replicate:a']);
    await f.worker.drain({ timeoutMs: 10_000 });
    expect((await getBuffer(f.memory.a!, 'k')).toString()).toBe('data');
  });

  it('a holder with other bytes (changed behind cloudmux) is never served', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 2, read: 'primary' }] });
    await f.router.put('k', 'right');
    await f.memory.a!.put('k', 'wrong');
    expect((await getBuffer(f.router, 'k')).toString()).toBe('right');
    await f.worker.drain({ timeoutMs: 10_000 });
    expect((await getBuffer(f.memory.a!, 'k')).toString()).toBe('right');
  });

  it('adopts keys written before cloudmux, probing in policy order, and replicates them', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 1 }] });
    await f.memory.b!.put('old/file', 'legacy', { contentType: 'text/plain' });
    expect((await getBuffer(f.router, 'old/file')).toString()).toBe('legacy');
    const found = await f.state.lookup('old/file');
    expect(found.state === 'live' && found.holders.map((h) => h.provider)).toEqual(['b']);
    expect(await code(f.router.head('never/written'))).toBe('NotFound');
    await f.worker.drain({ timeoutMs: 10_000 });
    expect((await getBuffer(f.memory.a!, 'old/file')).toString()).toBe('legacy');
    expect((await listAll(f.router)).map((i) => (i.type === 'object' ? i.key : i.prefix))).toEqual(['old/file']);
  });

  it('a conditional create that meets a copy outside the catalog adopts it: the key it says exists is listed and in the change feed', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 2 }] });
    // What a put leaves when every provider's answer was lost: bytes on a provider, no catalog row.
    await f.memory.b!.put('orphan', 'landed');
    expect(await code(f.router.put('orphan', 'again', { ifNoneMatch: '*' }))).toBe('AlreadyExists');
    expect((await listAll(f.router)).map((i) => (i.type === 'object' ? i.key : i.prefix))).toEqual(['orphan']);
    const feed = await f.router.changesSince(undefined);
    expect(feed.changes.map((c) => c.key)).toEqual(['orphan']);
    const meta = await f.router.head('orphan');
    expect(await code(f.router.put('orphan', 'stale etag', { ifMatch: 'cmx-999999' }))).toBe('PreconditionFailed');
    await f.router.put('orphan', 'replaced', { ifMatch: meta.etag });
    expect((await getBuffer(f.router, 'orphan')).toString()).toBe('replaced');
  });

  it('cost routing: reads go to the cheaper replica, move when its breaker opens and come back when it closes', async () => {
    let breaker: BreakerStore | undefined;
    const f = await fixture({
      providers: [
        { name: 'a', prices: { ...FLAT, egressInternetGb: 0.12 } },
        { name: 'b', prices: { ...FLAT, egressInternetGb: 0.02 }, wrap: (s) => (breaker = new BreakerStore(s, { volumeThreshold: 3, errorThresholdPercentage: 25, resetTimeoutMs: 200 })) },
      ],
      policies: [{ replicas: 2, writeQuorum: 2, read: 'cheapest' }],
      health: { windowMs: 60_000, minRequests: 1000 },
    });
    const data = Buffer.alloc(64 * 1024, 7);
    await f.router.put('k', data);
    const readsOn = async (n: number): Promise<Record<string, number>> => {
      const before = { a: f.calls('a', 'get'), b: f.calls('b', 'get') };
      for (let i = 0; i < n; i++) expect((await getBuffer(f.router, 'k')).equals(data)).toBe(true);
      return { a: f.calls('a', 'get') - before.a, b: f.calls('b', 'get') - before.b };
    };
    expect(await readsOn(10)).toEqual({ a: 0, b: 10 });
    // b starts failing: its breaker opens after a few failures; every read still succeeds (on a).
    const opened = new Promise<void>((r) => breaker!.on('open', () => r()));
    f.faulty.b!.setPlan({ ops: ['get'], errorRates: { Transient: 1 } });
    const during = await readsOn(10);
    await opened;
    expect(f.router.health.state('b')).toBe('down');
    expect(during.a).toBe(10);
    expect(await readsOn(10)).toEqual({ a: 10, b: 0 });
    // b recovers; after the reset timeout a trial read closes the breaker and reads return to b.
    f.faulty.b!.heal();
    const closed = new Promise<void>((r) => breaker!.on('close', () => r()));
    await new Promise((r) => setTimeout(r, 250));
    // The router sends nothing to a down provider; the canary probe is what tries the breaker again.
    await f.router.health.probe('b', f.router.providerStores().b!);
    await closed;
    expect(f.router.health.state('b')).toBe('healthy');
    expect(await readsOn(10)).toEqual({ a: 0, b: 10 });
  });

  it('hedges a slow read to the second replica within the budget', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 2, read: 'primary', hedge: { afterPercentile: 95, budget: 0.5 } }] });
    await f.router.put('k', 'data');
    for (let i = 0; i < 20; i++) await getBuffer(f.router, 'k'); // latency samples for a
    f.faulty.a!.setPlan({ ops: ['get'], latencyMs: 2_000 });
    const served: { provider: string; hedged: boolean }[] = [];
    f.router.events.on('read', (r) => served.push(r));
    expect((await getBuffer(f.router, 'k')).toString()).toBe('data');
    expect(served.at(-1)).toEqual({ key: 'k', provider: 'b', hedged: true });
  });
});

describe('router: deletes and listing', () => {
  it('a delete during an outage is owed, and the object never comes back', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 2 }] });
    await f.router.put('k', 'v');
    f.outage('b', true);
    await f.router.delete('k');
    expect(await code(f.router.get('k'))).toBe('NotFound');
    f.outage('b', false);
    expect(await code(f.memory.b!.head('k'))).toBe('ok'); // not yet deleted there
    expect(await code(f.router.get('k'))).toBe('NotFound'); // yet never adopted back
    await f.worker.drain({ timeoutMs: 10_000 });
    expect(await code(f.memory.b!.head('k'))).toBe('NotFound');
    expect(await code(f.memory.a!.head('k'))).toBe('NotFound');
  });

  it('a put after a delete wins over the owed delete', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 2 }] });
    await f.router.put('k', 'v1');
    f.outage('b', true);
    await f.router.delete('k');
    f.outage('b', false);
    await f.router.put('k', 'v2');
    await f.worker.drain({ timeoutMs: 10_000 });
    expect((await getBuffer(f.memory.b!, 'k')).toString()).toBe('v2');
    expect((await getBuffer(f.router, 'k')).toString()).toBe('v2');
  });

  it('delete ifMatch: only the catalog version named is deleted, on every provider; a stale etag deletes nothing', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 2 }] });
    expect(f.router.capabilities.conditionalDelete).toBe(true);
    const v1 = await f.router.put('k', 'v1');
    const v2 = await f.router.put('k', 'v2');
    expect(await code(f.router.delete('k', { ifMatch: v1.etag }))).toBe('PreconditionFailed');
    expect((await getBuffer(f.router, 'k')).toString()).toBe('v2');
    expect((await getBuffer(f.memory.a!, 'k')).toString()).toBe('v2');
    expect((await getBuffer(f.memory.b!, 'k')).toString()).toBe('v2');
    await f.router.delete('k', { ifMatch: v2.etag });
    expect(await code(f.router.head('k'))).toBe('NotFound');
    expect(await code(f.memory.a!.head('k'))).toBe('NotFound');
    expect(await code(f.memory.b!.head('k'))).toBe('NotFound');
    // Idempotent: the version named is gone either way.
    expect(await code(f.router.delete('k', { ifMatch: v2.etag }))).toBe('ok');
    expect(await code(f.router.delete('never', { ifMatch: 'cmx-1' }))).toBe('ok');
  });

  it('delete ifMatch against a writer that got in first: the put wins, nothing is deleted', async () => {
    const f = await fixture({ providers: ['a'] });
    const seen = await f.router.put('k', 'seen');
    // Two routers over one catalog: the other one's put lands between our look and our delete.
    const other = new Router({ providers: [{ name: 'a', store: f.memory.a! }], state: f.state, closeResources: false, health: { probeIntervalMs: 0 } });
    await other.put('k', 'written meanwhile', { ifMatch: seen.etag });
    expect(await code(f.router.delete('k', { ifMatch: seen.etag }))).toBe('PreconditionFailed');
    expect((await getBuffer(f.router, 'k')).toString()).toBe('written meanwhile');
    await other.close();
  });

  it('delete ifMatch of a key only on a provider (not in the catalog): no etag can name it, nothing is deleted', async () => {
    const f = await fixture({ providers: ['a'] });
    await f.memory.a!.put('outside', 'x');
    expect(await code(f.router.delete('outside', { ifMatch: 'cmx-1' }))).toBe('PreconditionFailed');
    expect(await code(f.memory.a!.head('outside'))).toBe('ok');
    // Once read through the router it has an etag, and a delete naming it works.
    const meta = await f.router.head('outside');
    await f.router.delete('outside', { ifMatch: meta.etag });
    expect(await code(f.memory.a!.head('outside'))).toBe('NotFound');
  });

  it('lists from the catalog in byte order with prefix, delimiter and startAfter', async () => {
    const f = await fixture({ providers: ['a'] });
    for (const k of ['d/a', 'd/b/1', 'd/b/2', 'd/c', 'd/\u{1F600}', 'd/\uFF21', 'e']) await f.router.put(k, k);
    await f.memory.a!.put('d/only-on-provider', 'x'); // not in the catalog: not listed
    const names = async (o: Parameters<typeof listAll>[1]): Promise<string[]> => (await listAll(f.router, o)).map((i) => (i.type === 'object' ? i.key : `${i.prefix}*`));
    expect(await names({ prefix: 'd/' })).toEqual(['d/a', 'd/b/1', 'd/b/2', 'd/c', 'd/\uFF21', 'd/\u{1F600}']);
    expect(await names({ prefix: 'd/', delimiter: '/' })).toEqual(['d/a', 'd/b/*', 'd/c', 'd/\uFF21', 'd/\u{1F600}']);
    expect(await names({ prefix: 'd/', startAfter: 'd/b/1', pageSize: 1 })).toEqual(['d/b/2', 'd/c', 'd/\uFF21', 'd/\u{1F600}']);
  });
});

describe('replication worker', () => {
  it('dead-letters an entry after maxAttempts with the reason, and requeues it on demand', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 1 }] });
    await f.router.put('k', 'v'); // a is tried first (same price, config order)
    f.faulty.b!.setPlan({ ops: ['put'], errorRates: { AccessDenied: 1 } });
    const worker = new ReplicationWorker({ state: f.state, providers: f.router.providerStores(), maxAttempts: 3, backoffBaseMs: 1, backoffMaxMs: 2 });
    for (let i = 0; i < 10 && (await f.state.backlog()).count > 0; i++) {
      await worker.runOnce();
      await new Promise((r) => setTimeout(r, 5));
    }
    const dead = await f.state.entries({ state: 'dead' });
    expect(dead).toHaveLength(1);
    expect(dead[0]!.attempts).toBe(3);
    expect(dead[0]!.lastError).toMatch(/after 3 attempts: AccessDenied/);
    expect((await f.state.backlog()).dead).toBe(1);
    f.faulty.b!.heal();
    await f.state.requeueDead();
    await worker.drain({ timeoutMs: 10_000 });
    expect((await getBuffer(f.memory.b!, 'k')).toString()).toBe('v');
  });

  it('defers entries for a down destination without spending attempts', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 1 }] });
    await f.router.put('k', 'v');
    f.router.health.setBreaker('b', 'open');
    await f.worker.runOnce();
    const [e] = await f.state.entries({ key: 'k' });
    expect(e!.attempts).toBe(0);
    expect(e!.lastError).toBe('b is down');
    f.router.health.setBreaker('b', 'closed');
    await f.worker.drain({ timeoutMs: 10_000 });
    expect((await getBuffer(f.memory.b!, 'k')).toString()).toBe('v');
  });

  it('replays idempotently: an entry whose copy already happened is simply completed', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 1 }] });
    await f.router.put('k', 'v');
    // Simulate a crash after the copy but before the commit: the bytes are there, the entry too.
    await f.memory.b!.put('k', 'v');
    await f.worker.drain({ timeoutMs: 10_000 });
    expect((await getBuffer(f.memory.b!, 'k')).toString()).toBe('v');
    const found = await f.state.lookup('k');
    expect(found.state === 'live' && found.holders.map((h) => h.provider)).toEqual(['a', 'b']);
  });

  it('the background loop drains what puts owe', async () => {
    const f = await fixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 1 }] });
    f.worker.start();
    for (let i = 0; i < 20; i++) await f.router.put(`k${i}`, `v${i}`);
    for (let i = 0; i < 200 && (await f.state.backlog()).count > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect((await f.state.backlog()).count).toBe(0);
    for (let i = 0; i < 20; i++) expect((await getBuffer(f.memory.b!, `k${i}`)).toString()).toBe(`v${i}`);
  });
});
