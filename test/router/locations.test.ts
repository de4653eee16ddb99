import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/store.js';
import { parseConfigText } from '../../src/config/load.js';
import type { Prices } from '../../src/config/schema.js';
import { getBuffer } from '../../src/core/helpers.js';
import type { BlobStore } from '../../src/core/types.js';
import { Router } from '../../src/router/router.js';
import { SqliteStateStore } from '../../src/state/sqlite.js';
import { tempDir } from '../harness/emulator.js';

const S3: Prices = { storageGbMonth: 0.023, egressInternetGb: 0.09, egressToGb: {}, classAPer1k: 0.005, classBPer1k: 0.0004, egressInterRegionGb: 0.02 };
const GCS: Prices = { storageGbMonth: 0.02, egressInternetGb: 0.12, egressToGb: {}, classAPer1k: 0.005, classBPer1k: 0.0004, egressInterRegionGb: 0.02 };

/** A memory store that counts the gets it serves. */
function counted(name: string): { store: BlobStore; gets: () => number } {
  const inner = new MemoryStore({ name });
  let gets = 0;
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'get') return (...args: Parameters<BlobStore['get']>) => (gets++, target.get(...args));
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { store, gets: () => gets };
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function twoRouters(locA: string, locB: string) {
  const dir = await tempDir('locations');
  const state = new SqliteStateStore({ path: `${dir.path}/state.db`, durability: 'normal' });
  const stores = { use: counted('use'), euw: counted('euw'), usw: counted('usw') };
  const providers = [
    { name: 'use', store: stores.use.store, prices: S3, location: 'aws:us-east-1' },
    { name: 'euw', store: stores.euw.store, prices: GCS, location: 'gcp:europe-west1' },
    { name: 'usw', store: stores.usw.store, prices: S3, location: 'aws:us-west-2' },
  ];
  const make = (location: string): Router => new Router({
    providers, state, location, closeResources: false,
    policies: [{ prefix: '', replicas: 3, writeQuorum: 3 }],
    health: { probeIntervalMs: 0 },
  });
  const a = make(locA);
  const b = make(locB);
  cleanups.push(async () => {
    await a.close();
    await b.close();
    await state.close();
    await dir.remove();
  });
  return { a, b, stores };
}

describe('router locations', () => {
  it('each router reads the replica cheapest to move to its own location, over one catalog', async () => {
    const { a, b, stores } = await twoRouters('gcp:europe-west1', 'aws:us-west-2');
    await a.put('k', 'hello');
    const before = { use: stores.use.gets(), euw: stores.euw.gets(), usw: stores.usw.gets() };
    expect((await getBuffer(a, 'k')).toString()).toBe('hello');
    expect(stores.euw.gets() - before.euw).toBe(1); // a runs in gcp:europe-west1: its local copy
    expect((await getBuffer(b, 'k')).toString()).toBe('hello');
    expect(stores.usw.gets() - before.usw).toBe(1); // b runs in aws:us-west-2: its local copy
    expect(stores.use.gets()).toBe(before.use);
    // Without a local copy, the same cloud's other region (inter-region $0.02/GB) beats another cloud ($0.12/GB).
    const policy = a.policies.for('k');
    expect(b.readOrder(policy, ['euw', 'use'], 1 << 20)[0]).toBe('use');
    expect(a.readOrder(policy, ['use', 'usw'], 1 << 20)).toHaveLength(2);
  });

  it('keeps the old behaviour when the location is a provider name', async () => {
    const { a } = await twoRouters('euw', 'use');
    // Provider locations are ignored: use and usw both cost S3's internet egress to euw, so the tie goes to config order.
    expect(a.readOrder(a.policies.for('k'), ['usw', 'use'], 1 << 20)[0]).toBe('use');
    expect(a.readOrder(a.policies.for('k'), ['use', 'euw'], 1 << 20)[0]).toBe('euw');
  });

  it('accepts a cloud:region router location in the config and names a bad one', () => {
    const ok = parseConfigText('providers:\n  - { name: m, url: "memory://m", location: "aws:us-east-1" }\nrouter: { location: "aws:us-east-1" }\n');
    expect(ok.router.location).toBe('aws:us-east-1');
    expect(() => parseConfigText('providers:\n  - { name: m, url: "memory://m" }\nrouter: { location: "nowhere" }\n'))
      .toThrow(/router\.location: unknown provider "nowhere"; expected one of: m, or a location cloud:region/);
    expect(() => parseConfigText('providers:\n  - { name: m, url: "memory://m", location: "us-east-1" }\n'))
      .toThrow(/providers\[0\]\.location/);
  });
  it('writeLocal: a new object lands near the router that writes it (upload egress counts), else on the cheapest storage', async () => {
    const make = (location: string, writeLocal: boolean): Router => {
      const r = new Router({
        providers: [
          { name: 'use', store: new MemoryStore({ name: 'use' }), prices: S3, location: 'aws:us-east-1' },
          { name: 'euw', store: new MemoryStore({ name: 'euw' }), prices: GCS, location: 'gcp:europe-west1' },
        ],
        state: new SqliteStateStore({ path: ':memory:' }),
        location,
        policies: [{ prefix: '', replicas: 1, writeQuorum: 1, writeLocal }],
        health: { probeIntervalMs: 0 },
      });
      cleanups.push(() => r.close());
      return r;
    };
    const holders = async (r: Router, key: string): Promise<string[]> => {
      const found = await r.state.lookup(key);
      return found.state === 'live' ? found.holders.map((h) => h.provider) : [];
    };
    // GCS storage is cheaper ($0.020 against $0.023): without writeLocal every object goes there.
    const plain = make('aws:us-east-1', false);
    await plain.put('k', 'x'.repeat(1 << 20));
    expect(await holders(plain, 'k')).toEqual(['euw']);
    // With it, a writer in us-east-1 saves $0.09/GB of upload egress by writing to S3 there.
    const local = make('aws:us-east-1', true);
    await local.put('k', 'x'.repeat(1 << 20));
    expect(await holders(local, 'k')).toEqual(['use']);
    const eu = make('gcp:europe-west1', true);
    await eu.put('k', 'x'.repeat(1 << 20));
    expect(await holders(eu, 'k')).toEqual(['euw']);
  });
});
