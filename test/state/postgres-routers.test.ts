import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/store.js';
import { getBuffer } from '../../src/core/helpers.js';
import { ReplicationWorker } from '../../src/replication/worker.js';
import { Router } from '../../src/router/router.js';
import { FaultyStore } from '../faults/faulty-store.js';
import { FLAT } from '../router/fixture.js';
import { PgSchemas, requirePostgres } from './postgres-fixture.js';

const schemas = new PgSchemas();
beforeAll(requirePostgres);
afterEach(() => schemas.dropAll());

describe('postgres state: two router processes share one catalog and outbox', () => {
  it('puts through either router are read by the other; two workers drain the owed replicas with no copy made twice', async () => {
    const schema = schemas.name();
    const memory = { a: new MemoryStore({ name: 'a' }), b: new MemoryStore({ name: 'b' }) };
    const faulty = { a: new FaultyStore(memory.a), b: new FaultyStore(memory.b) };
    // Both "processes" reach the same providers; each has its own pool on the shared schema.
    const routers = await Promise.all([1, 2].map(async () => new Router({
      providers: (['a', 'b'] as const).map((name) => ({ name, store: faulty[name], prices: FLAT })),
      state: await schemas.open({ schema }),
      policies: [{ replicas: 2, writeQuorum: 1 }],
      health: { probeIntervalMs: 0 },
      closeResources: false,
    })));
    const [one, two] = routers as [Router, Router];
    // b is down while the keys are written: each put lands on a and owes b a replica.
    faulty.b.setPlan({ errorRates: { Transient: 1 } });
    const keys = Array.from({ length: 40 }, (_, i) => `k/${String(i).padStart(3, '0')}`);
    await Promise.all(keys.map((k, i) => (i % 2 ? one : two).put(k, `body of ${k}`)));
    for (const [i, k] of keys.entries()) expect((await getBuffer(i % 2 ? two : one, k)).toString()).toBe(`body of ${k}`);
    expect((await one.state.backlog()).byProvider.b?.count).toBe(keys.length);

    faulty.b.heal();
    const putsToB = (): number => faulty.b.log.filter((r) => r.op === 'put' && !r.fault).length;
    const before = putsToB();
    const workers = routers.map((r, i) => new ReplicationWorker({ state: r.state, providers: r.providerStores(), owner: `process-${i}`, concurrency: 3, backoffBaseMs: 5, backoffMaxMs: 20, pollIntervalMs: 10 }));
    await Promise.all(workers.map((w) => w.drain({ timeoutMs: 30_000 })));
    expect(putsToB() - before).toBe(keys.length);
    expect(workers.reduce((n, w) => n + w.counters.copied, 0)).toBe(keys.length);
    // Both processes took part.
    expect(workers.every((w) => w.counters.copied > 0)).toBe(true);
    for (const k of keys) expect((await getBuffer(memory.b, k)).toString()).toBe(`body of ${k}`);
    const found = await two.state.lookup(keys[0]!);
    expect(found.state === 'live' && found.holders.map((h) => h.provider)).toEqual(['a', 'b']);
    for (const r of routers) await r.close();
  });
});
