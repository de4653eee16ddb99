import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/store.js';
import type { Prices } from '../../src/config/schema.js';
import { getBuffer } from '../../src/core/helpers.js';
import { cachedCopyKey } from '../../src/router/copy-on-read.js';
import { Router } from '../../src/router/router.js';
import { SqliteStateStore } from '../../src/state/sqlite.js';
import { FaultyStore } from '../faults/faulty-store.js';

const US: Prices = { storageGbMonth: 0.02, egressInternetGb: 0.09, egressToGb: {}, classAPer1k: 0.005, classBPer1k: 0.0004 };
const EU: Prices = { storageGbMonth: 0.023, egressInternetGb: 0.09, egressToGb: {}, classAPer1k: 0.005, classBPer1k: 0.0004 };

function router(ttl: number | 'adaptive', clock: { now: number }) {
  const us = new MemoryStore({ name: 'us' });
  const eu = new FaultyStore(new MemoryStore({ name: 'eu' }));
  const r = new Router({
    providers: [
      { name: 'us', store: us, prices: US, location: 'aws:us-east-1' },
      { name: 'eu', store: eu, prices: EU, location: 'gcp:europe-west1' },
    ],
    state: new SqliteStateStore({ path: ':memory:' }),
    location: 'gcp:europe-west1',
    policies: [{ replicas: 1, writeQuorum: 1 }],
    health: { probeIntervalMs: 0 },
    copyOnRead: { ttl, now: () => clock.now },
  });
  return { r, us, eu };
}

describe('router copy on read (SQLite state)', () => {
  it('copies on a remote read, serves later reads locally, evicts after the TTL; a range read still copies the whole object', async () => {
    const clock = { now: 1_000_000 };
    const { r, eu } = router(60, clock);
    await r.put('k', 'hello world');
    const got = await r.get('k', { range: { offset: 6, length: 5 } });
    expect(got.provider).toBe('eu');
    expect((await getBuffer(r, 'k')).toString()).toBe('hello world');
    const version = (await r.state.cachedCopies!.cachedCopies())[0]!.version;
    expect((await getBuffer(eu, cachedCopyKey('cloudmux-cache/', version, 'k'))).toString()).toBe('hello world');
    expect(r.copyOnRead!.counters).toMatchObject({ created: 1, hits: 1 });
    expect(await r.state.cachedCopies!.accessStats('k')).toEqual([{ key: 'k', location: 'gcp:europe-west1', version, reads: 2, lastRead: clock.now }]);
    clock.now += 59_000;
    expect(await r.copyOnRead!.evictExpired()).toBe(0);
    clock.now += 2_000;
    expect(await r.copyOnRead!.evictExpired()).toBe(1);
    await expect(eu.head(cachedCopyKey('cloudmux-cache/', version, 'k'))).rejects.toMatchObject({ code: 'NotFound' });
    await r.close();
  });

  it('TTL 0 leaves no copy; a cache provider that fails never fails the read', async () => {
    const clock = { now: 0 };
    const none = router(0, clock);
    await none.r.put('k', 'v');
    expect((await getBuffer(none.r, 'k')).toString()).toBe('v');
    expect(await none.r.state.cachedCopies!.cachedCopies()).toEqual([]);
    await none.r.close();

    const failing = router(60, clock);
    await failing.r.put('k', 'v');
    failing.eu.setPlan({ errorRates: { Transient: 1 } });
    const got = await failing.r.get('k');
    expect(got.provider).toBe('us');
    expect(failing.r.copyOnRead!.counters.failed).toBe(1);
    await failing.r.close();
  });

  it('ttl adaptive: the learner starts every pair at T_even', async () => {
    const clock = { now: 5_000_000 };
    const { r } = router('adaptive', clock);
    await r.put('k', 'v');
    expect((await getBuffer(r, 'k')).toString()).toBe('v');
    const [copy] = await r.state.cachedCopies!.cachedCopies();
    expect(copy!.expiresAt).toBe(clock.now + Math.round(r.copyOnRead!.tEven('us', 'eu') * 1000));
    await r.close();
  });

  it('needs a location', () => {
    expect(() => new Router({ providers: [{ name: 'm', store: new MemoryStore() }], state: new SqliteStateStore({ path: ':memory:' }), copyOnRead: true }))
      .toThrow(/location/);
  });
});
