import { buffer } from 'node:stream/consumers';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Prices } from '../../src/config/schema.js';
import { getBuffer } from '../../src/core/helpers.js';
import type { BlobStore } from '../../src/core/types.js';
import { RetryStore } from '../../src/layers/retry.js';
import { openStore } from '../../src/registry.js';
import { ReplicationWorker } from '../../src/replication/worker.js';
import { cachedCopyKey } from '../../src/router/copy-on-read.js';
import { Router } from '../../src/router/router.js';
import { feedSeed, prng } from '../harness/replay-seed.js';
import { PgSchemas, requirePostgres } from './postgres-fixture.js';

/**
 * The proof on emulators: routers at two locations — one by s3rver (aws:us-east-1), one by
 * Azurite (azure:westeurope) — over one PostgreSQL schema. Base copies land on S3 (cheaper
 * storage); a read at the Azure location leaves a copy on Azurite under a versioned cache key.
 * s3rver rewrites an object in place, so a read racing an overwrite of a base copy there can get
 * torn bytes behind intact headers (S3RVER_DEVIATIONS.overwriteWhileReading): the racing reads use
 * `verify`, which fails such a read instead (S3 and MinIO serve the version current at GET time).
 */
const emulators = Boolean(process.env.S3_ENDPOINT && process.env.AZURE_STORAGE_CONNECTION_STRING);
const schemas = new PgSchemas();
const opened: BlobStore[] = [];
beforeAll(async () => {
  if (emulators) await requirePostgres();
});
afterEach(async () => {
  await Promise.allSettled(opened.splice(0).map((s) => s.close()));
  await schemas.dropAll();
});

const DAY = 86_400_000;
const AZ: Prices = { storageGbMonth: 0.023, egressInternetGb: 0.087, egressToGb: {}, classAPer1k: 0.005, classBPer1k: 0.0004 };
const S3: Prices = { storageGbMonth: 0.018, egressInternetGb: 0.09, egressToGb: {}, classAPer1k: 0.005, classBPer1k: 0.0004 };

async function twoLocations(ttl: number | 't-even' = 't-even') {
  const schema = schemas.name();
  const run = `cor-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  const urls = {
    azure: `az://devstoreaccount1/${process.env.AZURE_CONTAINER}/${run}`,
    s3: `s3://${process.env.S3_BUCKET}/${run}?endpoint=${encodeURIComponent(process.env.S3_ENDPOINT!)}&forcePathStyle=true&region=${process.env.AWS_REGION ?? 'us-east-1'}`,
  };
  const clock = { now: Date.UTC(2026, 0, 1) };
  const stores = async () => {
    const s = { azure: await openStore(urls.azure), s3: await openStore(urls.s3) };
    opened.push(s.azure, s.s3);
    return s;
  };
  const open = async (location: string) => {
    const s = await stores();
    // Behind the retry layer, as the config opens stores: s3rver answers a GET racing a rewrite of its object with a 500 now and then.
    const retried = (store: BlobStore): BlobStore => new RetryStore(store, { retries: 6, baseDelayMs: 10, maxDelayMs: 200 });
    const router = new Router({
      providers: [
        { name: 's3', store: retried(s.s3), prices: S3, location: 'aws:us-east-1' },
        { name: 'azure', store: retried(s.azure), prices: AZ, location: 'azure:westeurope' },
      ],
      state: await schemas.open({ schema }),
      location,
      policies: [{ replicas: 1, writeQuorum: 1 }],
      health: { probeIntervalMs: 0 },
      closeResources: false,
      copyOnRead: { ttl, now: () => clock.now },
    });
    const worker = ReplicationWorker.forRouter(router, { owner: `worker-${location}`, pollIntervalMs: 10 });
    return { router, worker };
  };
  const aws = await open('aws:us-east-1');
  const az = await open('azure:westeurope');
  return { aws, az, clock, raw: await stores() };
}

describe.skipIf(!emulators)('copy on read on emulators (Azurite + s3rver) with two routers over one PostgreSQL (needs CLOUDMUX_EMULATORS with s3 and azure)', () => {
  it('a read at the other location leaves a copy there, further reads are served from it, eviction removes it after its TTL', async () => {
    const { az, aws, clock, raw } = await twoLocations();
    await aws.router.put('photos/cat.jpg', 'meow v1');
    const found = await aws.router.state.lookup('photos/cat.jpg');
    expect(found.state === 'live' && found.holders.map((h) => h.provider)).toEqual(['s3']);
    const version = found.state === 'live' ? found.object.version : -1;
    const tEven = az.router.copyOnRead!.tEven('s3', 'azure');
    const copyKey = cachedCopyKey('cloudmux-cache/', version, 'photos/cat.jpg');

    const served: string[] = [];
    az.router.events.on('read', (r) => served.push(r.provider));
    expect((await getBuffer(az.router, 'photos/cat.jpg')).toString()).toBe('meow v1');
    expect((await getBuffer(raw.azure, copyKey)).toString()).toBe('meow v1');
    const [copy] = await az.router.state.cachedCopies!.cachedCopies({ key: 'photos/cat.jpg' });
    expect(copy).toMatchObject({ provider: 'azure', version, expiresAt: clock.now + Math.round(tEven * 1000) });

    clock.now += DAY;
    expect((await getBuffer(az.router, 'photos/cat.jpg')).toString()).toBe('meow v1');
    expect(served).toEqual(['azure', 'azure']);
    expect(az.router.copyOnRead!.counters).toMatchObject({ created: 1, hits: 1 });

    // Not yet expired: the worker leaves it. Past its TTL: the worker evicts it, never the base copy.
    await aws.worker.runOnce();
    await raw.azure.head(copyKey);
    clock.now += tEven * 1000 + 1;
    await aws.worker.runOnce();
    expect(await az.router.state.cachedCopies!.cachedCopies()).toEqual([]);
    await expect(raw.azure.head(copyKey)).rejects.toMatchObject({ code: 'NotFound' });
    expect((await getBuffer(raw.s3, 'photos/cat.jpg')).toString()).toBe('meow v1');
    await expect(raw.azure.head('photos/cat.jpg')).rejects.toMatchObject({ code: 'NotFound' });
    for (const r of [az, aws]) await r.router.close();
  });

  it('an overwrite at the base location is never hidden by a cached copy; the superseded copy is evicted', async () => {
    const { az, aws, raw } = await twoLocations();
    await aws.router.put('doc', 'v1');
    expect((await getBuffer(az.router, 'doc')).toString()).toBe('v1');
    const v1 = (await az.router.state.cachedCopies!.cachedCopies({ key: 'doc' }))[0]!.version;
    await aws.router.put('doc', 'v2 longer');
    expect((await getBuffer(az.router, 'doc')).toString()).toBe('v2 longer');
    await az.worker.runOnce();
    expect((await az.router.state.cachedCopies!.cachedCopies({ key: 'doc' })).map((c) => c.version)).not.toContain(v1);
    await expect(raw.azure.head(cachedCopyKey('cloudmux-cache/', v1, 'doc'))).rejects.toMatchObject({ code: 'NotFound' });
    await aws.router.delete('doc');
    await expect(az.router.get('doc')).rejects.toMatchObject({ code: 'NotFound' });
    await az.worker.runOnce();
    expect(await az.router.state.cachedCopies!.cachedCopies({ key: 'doc' })).toEqual([]);
    for (const r of [az, aws]) await r.router.close();
  });

  it('reads at the Azure location race overwrites at the S3 one, with copies expiring and evicted: every get succeeds with the bytes of its version, never older than the last acknowledged write (COR_SEED replays)', async () => {
    const rng = prng(feedSeed('emulators: reads race overwrites', 'test/state/postgres-copy-on-read-emulators.test.ts', 'COR_SEED'));
    const { az, aws, clock, raw } = await twoLocations(3600);
    const bodies = new Map<string, string>();
    bodies.set((await aws.router.put('hot', 'v0')).version!, 'v0');
    let acked = 0;
    let torn = 0;
    let writing = true;
    const writer = (async () => {
      try {
        for (let i = 1; i <= 15; i++) {
          const body = `v${i}:${'y'.repeat(rng.int(64))}`;
          const meta = await aws.router.put('hot', body);
          bodies.set(meta.version!, body);
          acked = Number(meta.version);
          if (rng.chance(0.3)) clock.now += rng.int(2 * 3600_000);
          if (rng.chance(0.3)) await az.worker.runOnce();
        }
      } finally {
        writing = false;
      }
    })();
    const reader = async (): Promise<{ version: number; floor: number; body: string; provider: string }[]> => {
      const seen: { version: number; floor: number; body: string; provider: string }[] = [];
      while (writing || seen.length < 3) {
        const floor = acked;
        const res = await az.router.get('hot', { verify: true });
        // A base copy read from s3rver while it is rewritten in place: torn bytes, which `verify`
        // fails mid-body (IntegrityError); a client reads again. Copies are never rewritten.
        const body = await buffer(res.body).catch((e: unknown) => {
          if ((e as { code?: string }).code !== 'IntegrityError' || res.provider !== 's3') throw e;
          torn++;
          return undefined;
        });
        if (body) seen.push({ version: Number(res.meta.version), floor, body: body.toString(), provider: res.provider });
      }
      return seen;
    };
    const [, ...seen] = await Promise.all([writer, reader(), reader()]);
    let fromCopies = 0;
    for (const [r, reads] of seen.entries()) {
      reads.forEach((read, j) => {
        const at = `reader ${r}, read ${j} (replay with the COR_SEED printed above)`;
        expect(read.body, at).toBe(bodies.get(String(read.version)));
        expect(read.version, at).toBeGreaterThanOrEqual(read.floor);
        if (j > 0) expect(read.version, at).toBeGreaterThanOrEqual(reads[j - 1]!.version);
        if (read.provider === 'azure') fromCopies++;
      });
    }
    console.log(`reads: ${seen.map((s) => s.length).join(' + ')}, served from copies: ${fromCopies}, torn base reads on s3rver: ${torn}; copy path: ${JSON.stringify(az.router.copyOnRead!.counters)} ${az.router.copyOnRead!.lastError ?? ''}`);
    expect(fromCopies).toBeGreaterThan(0);
    // Everything expires: eviction leaves no copy behind, recorded or on s3rver.
    clock.now += 10 * DAY;
    await az.worker.runOnce();
    expect(await az.router.state.cachedCopies!.cachedCopies()).toEqual([]);
    const leftovers: string[] = [];
    for await (const o of raw.azure.list({ prefix: 'cloudmux-cache/' })) if ('key' in o) leftovers.push(o.key);
    expect(leftovers).toEqual([]);
    for (const r of [az, aws]) await r.router.close();
  });
});
