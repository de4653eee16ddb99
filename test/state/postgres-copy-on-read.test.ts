import { buffer } from 'node:stream/consumers';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FsStore } from '../../providers/fs/store.js';
import type { Prices } from '../../src/config/schema.js';
import { getBuffer } from '../../src/core/helpers.js';
import { ReplicationWorker } from '../../src/replication/worker.js';
import { cachedCopyKey } from '../../src/router/copy-on-read.js';
import { Router } from '../../src/router/router.js';
import type { StateStore } from '../../src/state/types.js';
import { tempDir } from '../harness/emulator.js';
import { feedSeed, prng } from '../harness/replay-seed.js';
import { PgSchemas, requirePostgres } from './postgres-fixture.js';

const schemas = new PgSchemas();
const dirs: { remove(): Promise<void> }[] = [];
beforeAll(requirePostgres);
afterEach(async () => {
  await schemas.dropAll();
  for (const d of dirs.splice(0)) await d.remove();
});

const DAY = 86_400_000;
// us: cheaper storage, so every base copy lands there; eu reads across clouds ($0.09/GB).
const US: Prices = { storageGbMonth: 0.02, egressInternetGb: 0.09, egressToGb: {}, classAPer1k: 0.005, classBPer1k: 0.0004 };
const EU: Prices = { storageGbMonth: 0.023, egressInternetGb: 0.09, egressToGb: {}, classAPer1k: 0.005, classBPer1k: 0.0004 };

/**
 * Two "processes", one at aws:us-east-1 and one at gcp:europe-west1: each its own router, store
 * handles and PostgreSQL pool over the same schema and the same two fs stores (one per location),
 * on one injected clock.
 */
async function twoLocations(ttl: number | 't-even' = 't-even') {
  const schema = schemas.name();
  const roots = { us: await tempDir('cor-us'), eu: await tempDir('cor-eu') };
  dirs.push(roots.us, roots.eu);
  const clock = { now: Date.UTC(2026, 0, 1) };
  const open = async (location: string) => {
    const stores = { us: new FsStore({ root: roots.us.path, fsync: false }), eu: new FsStore({ root: roots.eu.path, fsync: false }) };
    const state: StateStore = await schemas.open({ schema });
    const router = new Router({
      providers: [
        { name: 'us', store: stores.us, prices: US, location: 'aws:us-east-1' },
        { name: 'eu', store: stores.eu, prices: EU, location: 'gcp:europe-west1' },
      ],
      state,
      location,
      policies: [{ replicas: 1, writeQuorum: 1 }],
      health: { probeIntervalMs: 0 },
      closeResources: false,
      copyOnRead: { ttl, now: () => clock.now },
    });
    const worker = ReplicationWorker.forRouter(router, { owner: `worker-${location}`, pollIntervalMs: 10 });
    return { router, worker, stores };
  };
  const us = await open('aws:us-east-1');
  const eu = await open('gcp:europe-west1');
  return { us, eu, clock, raw: eu.stores };
}

describe('copy on read: two routers at two locations over one PostgreSQL', () => {
  it('a read at the other location leaves a copy there, further reads are served from it and extend it, eviction removes it after its TTL', async () => {
    const { us, eu, clock, raw } = await twoLocations();
    await us.router.put('photos/cat.jpg', 'meow v1');
    const found = await us.router.state.lookup('photos/cat.jpg');
    expect(found.state === 'live' && found.holders.map((h) => h.provider)).toEqual(['us']);
    const version = found.state === 'live' ? found.object.version : -1;
    const tEven = eu.router.copyOnRead!.tEven('us', 'eu');
    expect(tEven / 86_400).toBeGreaterThan(100); // $0.09/GB ÷ $0.023/GB-month ≈ 4 months

    // First read at eu: copied to eu under a versioned cache key, served from there.
    const served: string[] = [];
    eu.router.events.on('read', (r) => served.push(r.provider));
    expect((await getBuffer(eu.router, 'photos/cat.jpg')).toString()).toBe('meow v1');
    expect(served).toEqual(['eu']);
    expect((await getBuffer(raw.eu, cachedCopyKey('cloudmux-cache/', version, 'photos/cat.jpg'))).toString()).toBe('meow v1');
    const [copy] = await eu.router.state.cachedCopies!.cachedCopies({ key: 'photos/cat.jpg' });
    expect(copy).toMatchObject({ provider: 'eu', version });
    expect(copy!.expiresAt).toBe(clock.now + Math.round(tEven * 1000));
    // What the storage bill is made of: the base copy on us, the cached copy on eu, by policy prefix.
    expect(await us.router.state.storedBytes!(['', 'photos/', 'ph'])).toEqual([
      { provider: 'eu', prefix: 'photos/', objects: 1, bytes: 7, cached: true },
      { provider: 'us', prefix: 'photos/', objects: 1, bytes: 7, cached: false },
    ]);

    // A day later, a second read: a hit, and the copy lives T_even from now.
    clock.now += DAY;
    expect((await getBuffer(eu.router, 'photos/cat.jpg')).toString()).toBe('meow v1');
    expect(eu.router.copyOnRead!.counters).toMatchObject({ created: 1, hits: 1 });
    expect((await eu.router.state.cachedCopies!.cachedCopy('photos/cat.jpg', 'eu', version))!.expiresAt).toBe(clock.now + Math.round(tEven * 1000));
    const stats = await us.router.state.cachedCopies!.accessStats('photos/cat.jpg');
    expect(stats).toEqual([{ key: 'photos/cat.jpg', location: 'gcp:europe-west1', version, reads: 2, lastRead: clock.now }]);

    // Reads at us are local (base copy there): no copy, no stats.
    expect((await getBuffer(us.router, 'photos/cat.jpg')).toString()).toBe('meow v1');
    expect(us.router.copyOnRead!.counters.created).toBe(0);

    // Not yet expired: the worker (either location's) leaves it.
    await us.worker.runOnce();
    expect(await eu.router.state.cachedCopies!.cachedCopies()).toHaveLength(1);
    // Past its TTL: the worker evicts the copy, never the base copy.
    clock.now += tEven * 1000 + 1;
    await us.worker.runOnce();
    expect(await eu.router.state.cachedCopies!.cachedCopies()).toHaveLength(0);
    await expect(raw.eu.head(cachedCopyKey('cloudmux-cache/', version, 'photos/cat.jpg'))).rejects.toMatchObject({ code: 'NotFound' });
    expect((await getBuffer(raw.us, 'photos/cat.jpg')).toString()).toBe('meow v1');
    expect((await getBuffer(eu.router, 'photos/cat.jpg')).toString()).toBe('meow v1'); // copied again
    expect(eu.router.copyOnRead!.counters.created).toBe(2);
    for (const r of [us, eu]) await r.router.close();
  });

  it('an overwrite at the other location is never hidden by a cached copy; the superseded copy is evicted at once', async () => {
    const { us, eu, raw } = await twoLocations();
    await us.router.put('doc', 'v1');
    expect((await getBuffer(eu.router, 'doc')).toString()).toBe('v1');
    const v1 = (await eu.router.state.cachedCopies!.cachedCopies({ key: 'doc' }))[0]!.version;
    await us.router.put('doc', 'v2 longer');
    // The eu copy of v1 is still there and unexpired, but the catalog says v2: it is not used.
    expect((await getBuffer(eu.router, 'doc')).toString()).toBe('v2 longer');
    // Superseded copies go on the next eviction, whatever their expiry.
    await eu.worker.runOnce();
    const left = await eu.router.state.cachedCopies!.cachedCopies({ key: 'doc' });
    expect(left.map((c) => c.version)).not.toContain(v1);
    await expect(raw.eu.head(cachedCopyKey('cloudmux-cache/', v1, 'doc'))).rejects.toMatchObject({ code: 'NotFound' });
    // A delete: the next read says NotFound, and the copy goes at the next eviction.
    await us.router.delete('doc');
    await expect(eu.router.get('doc')).rejects.toMatchObject({ code: 'NotFound' });
    await eu.worker.runOnce();
    expect(await eu.router.state.cachedCopies!.cachedCopies({ key: 'doc' })).toHaveLength(0);
    for (const r of [us, eu]) await r.router.close();
  });

  it('history: seeded writes at both locations, reads at both, clock jumps and evictions — every read returns the last write (COR_SEED replays)', async () => {
    const seed = feedSeed('history: seeded writes', 'test/state/postgres-copy-on-read.test.ts', 'COR_SEED');
    const rng = prng(seed);
    const { us, eu, clock, raw } = await twoLocations(2 * 86_400); // a two-day TTL, so evictions happen
    const sides = [us, eu];
    const keys = ['a', 'b', 'c'];
    const last = new Map<string, string | undefined>();
    for (let step = 0; step < 150; step++) {
      const key = rng.pick(keys);
      const side = rng.pick(sides);
      const r = rng.next();
      const at = `step ${step} (COR_SEED=${seed})`;
      if (r < 0.25) {
        const body = `${key}@${step}:${'x'.repeat(rng.int(40))}`;
        await side.router.put(key, body);
        last.set(key, body);
      } else if (r < 0.3) {
        await side.router.delete(key);
        last.set(key, undefined);
      } else if (r < 0.85) {
        const want = last.get(key);
        if (want === undefined) await expect(side.router.get(key), at).rejects.toMatchObject({ code: 'NotFound' });
        else expect((await getBuffer(side.router, key)).toString(), at).toBe(want);
      } else if (r < 0.93) {
        clock.now += rng.int(3 * DAY);
      } else {
        await rng.pick(sides).worker.runOnce();
      }
    }
    // After everything expires and is evicted, no copy is left behind, recorded or not.
    clock.now += 10 * DAY;
    await us.worker.runOnce();
    expect(await us.router.state.cachedCopies!.cachedCopies()).toHaveLength(0);
    const leftovers: string[] = [];
    for await (const o of raw.eu.list({ prefix: 'cloudmux-cache/' })) if ('key' in o) leftovers.push(o.key);
    expect(leftovers).toEqual([]);
    expect(eu.router.copyOnRead!.counters.hits + eu.router.copyOnRead!.counters.created).toBeGreaterThan(0);
    for (const r of sides) await r.router.close();
  });
  it('concurrent: reads at eu race overwrites at us, clock jumps and evictions — every read returns the bytes of the version it reports, versions never go back (COR_SEED replays)', async () => {
    const seed = feedSeed('reads at eu race overwrites', 'test/state/postgres-copy-on-read.test.ts', 'COR_SEED');
    const rng = prng(seed);
    const { us, eu, clock } = await twoLocations(Number(process.env.COR_TTL ?? 3600)); // a one-hour TTL: copies expire under the readers
    const bodies = new Map<string, string>();
    const first = await us.router.put('hot', 'v0');
    bodies.set(first.version!, 'v0');
    let writing = true;
    const writer = (async () => {
      for (let i = 1; i <= 25; i++) {
        const body = `v${i}:${'y'.repeat(rng.int(64))}`;
        const meta = await us.router.put('hot', body);
        bodies.set(meta.version!, body);
        if (rng.chance(0.3)) clock.now += rng.int(2 * 3600_000);
        if (rng.chance(0.3)) await eu.worker.runOnce();
        await new Promise((r) => setTimeout(r, rng.int(15)));
      }
      writing = false;
    })();
    const reader = async (n: number): Promise<[number, string, string][]> => {
      const seen: [number, string, string][] = [];
      while (writing || seen.length < 5) {
        // With one replica a put overwrites the base copy in place: a read that looked up the
        // previous version may find the newer bytes there; it then reads the version now current.
        const res = await eu.router.get('hot');
        const body = (await buffer(res.body)).toString();
        seen.push([Number(res.meta.version), body, res.provider]);
        if (n === 0 && rng.chance(0.2)) await eu.worker.runOnce();
      }
      return seen;
    };
    const [, ...seen] = await Promise.all([writer, reader(0), reader(1), reader(2)]);
    let fromCopies = 0;
    for (const [r, reads] of seen.entries()) {
      for (let j = 0; j < reads.length; j++) {
        const [version, body, provider] = reads[j]!;
        const at = `reader ${r}, read ${j} (COR_SEED=${seed})`;
        expect(body, at).toBe(bodies.get(String(version)));
        if (j > 0) expect(version, at).toBeGreaterThanOrEqual(reads[j - 1]![0]);
        if (provider === 'eu') fromCopies++;
      }
    }
    if (Number(process.env.COR_TTL ?? 3600) > 0) expect(fromCopies).toBeGreaterThan(0);
    console.log(`reads served from copies: ${fromCopies}`);
    for (const r of [us, eu]) await r.router.close();
  });
});
