import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Store } from '../../providers/s3/index.js';
import { collect, isCloudmuxError, listAll, type BlobStore } from '../../src/core/index.js';
import { reopenable, resilient, RetryStore, type ResilientStack } from '../../src/layers/index.js';
import { FaultProxy } from '../faults/proxy.js';

/**
 * The resilience stack over the real S3 SDK and the S3 emulator, with a fault-injecting proxy
 * between them. Runs when the harness started (or was pointed at) an S3 endpoint.
 */
const endpoint = process.env.S3_ENDPOINT;
const NO_S3 = 'no S3 endpoint: the harness started no S3 emulator (CLOUDMUX_EMULATORS excludes s3)';
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function s3Through(proxy: FaultProxy, prefix: string): S3Store {
  return new S3Store({
    bucket: process.env.S3_BUCKET ?? 'cloudmux-test',
    endpoint: proxy.url,
    region: process.env.AWS_REGION ?? 'us-east-1',
    forcePathStyle: true,
    prefix,
  });
}

describe('resilience layers over S3 through a fault proxy', () => {
  let proxy: FaultProxy | undefined;
  let stack: ResilientStack | undefined;
  const prefix = `chaos-${randomBytes(3).toString('hex')}/`;

  beforeAll(async () => {
    if (!endpoint) return;
    proxy = await FaultProxy.start({
      upstream: endpoint,
      seed: Number(process.env.CLOUDMUX_FAULT_SEED ?? 6),
      rate: 0.2,
      // Waits that only cost wall time get less weight; resets and flips are what this is about.
      weights: { resetRequest: 2, resetResponse: 3, slowDown: 2, tooManyRequests: 1, stall: 1, flipByte: 2 },
      // Listings carry no checksum S3 could verify; a flipped key would be silently wrong anywhere.
      canFlip: (r) => r.method === 'GET' && !/[?&]list-type=/.test(r.path),
      retryAfterSeconds: 1,
      stallMs: 3000,
      lifetimeMs: 240_000,
    });
    stack = resilient(s3Through(proxy, prefix), {
      retry: { baseDelayMs: 10, maxDelayMs: 200, retries: 12, maxRetryAfterMs: 2000 },
      attemptTimeout: { timeoutMs: 1500, stallMs: 1000 },
      // 20% injected faults are expected here; the breaker must not mistake them for an outage.
      breaker: { volumeThreshold: 50, errorThresholdPercentage: 70 },
    });
  });

  afterAll(async () => {
    if (proxy) proxy.setRate(0);
    if (stack) {
      for (const item of await listAll(stack.store)) if (item.type === 'object') await stack.store.delete(item.key);
      await stack.store.close();
    }
    await proxy?.close();
  });

  it('a put/get/list workload at 20% faults completes with every byte verified', async (ctx) => {
    if (!endpoint || !stack || !proxy) return ctx.skip(NO_S3);
    const store = stack.store;
    const objects = new Map<string, Buffer>();
    for (let i = 0; i < 24; i++) objects.set(`obj-${String(i).padStart(2, '0')}`, randomBytes(i % 6 === 0 ? 1_500_000 : 2000 + i * 3000));
    const multipart = randomBytes(9 * 1024 * 1024);

    // Puts: buffers, and one multipart upload of a re-openable stream.
    const queue = [...objects];
    await Promise.all(Array.from({ length: 4 }, async () => {
      for (let next = queue.shift(); next; next = queue.shift()) await store.put(next[0], next[1]);
    }));
    await store.put('multipart', reopenable(() => Readable.from(chunks(multipart, 256 * 1024))), { size: multipart.byteLength });
    objects.set('multipart', multipart);

    // Listing: no duplicates, nothing missing (small pages, so it takes many requests).
    const listed = (await listAll(store, { pageSize: 5 })).map((x) => (x.type === 'object' ? x.key : x.prefix));
    expect(listed).toEqual([...objects.keys()].sort());

    // Reads, verified. A flipped byte may only ever surface as IntegrityError; re-reading then
    // yields the right bytes. Nothing that fails verification is accepted.
    let integrityErrors = 0;
    for (const [key, data] of [...objects, ...objects, ...objects]) {
      for (let attempt = 1; ; attempt++) {
        try {
          const got = await collect((await store.get(key, { verify: true })).body);
          expect(sha(got)).toBe(sha(data));
          break;
        } catch (e) {
          if (!isCloudmuxError(e, 'IntegrityError') || attempt >= 10) throw e;
          integrityErrors++;
        }
      }
    }

    const faults = proxy.faultCounts();
    const requests = proxy.log.length;
    const injected = Object.values(faults).reduce((a, b) => a + b, 0);
    console.log(`s3 chaos: ${requests} requests, ${injected} faults injected ${JSON.stringify(faults)}, ${integrityErrors} IntegrityErrors caught and re-read, instrumented: ${JSON.stringify(stack.instrumented!.snapshot().ops.get?.outcomes)}`);
    expect(injected / requests).toBeGreaterThan(0.1);
    expect(faults.resetResponse ?? 0).toBeGreaterThan(0);
    // Every flipped response was an object GET read with verify: each one, and only those, failed.
    expect(integrityErrors).toBe(faults.flipByte ?? 0);
  });

  it('a flipped byte is never delivered as good data', async (ctx) => {
    if (!endpoint || !proxy) return ctx.skip(NO_S3);
    const clean = await FaultProxy.start({ upstream: endpoint, lifetimeMs: 60_000 });
    try {
      const s3 = s3Through(clean, prefix);
      const store = new RetryStore(s3, { baseDelayMs: 1 });
      const data = randomBytes(300_000);
      await store.put('flip', data);
      (clean as unknown as { options: { script: Record<number, string> } }).options.script = { [clean.log.length + 1]: 'flipByte' };
      await expect(collect((await store.get('flip', { verify: true })).body)).rejects.toMatchObject({ code: 'IntegrityError' });
      expect(clean.log.at(-1)).toMatchObject({ method: 'GET', fault: 'flipByte', status: 200 });
      expect(sha(await collect((await store.get('flip', { verify: true })).body))).toBe(sha(data));
      await s3.close();
    } finally {
      await clean.close();
    }
  });

  it('a reset in the middle of a large get resumes with one ranged request', async (ctx) => {
    if (!endpoint || !proxy) return ctx.skip(NO_S3);
    const clean = await FaultProxy.start({ upstream: endpoint, lifetimeMs: 60_000 });
    try {
      const s3 = s3Through(clean, prefix);
      const data = randomBytes(4 * 1024 * 1024);
      await s3.put('large', data);
      const store: BlobStore = new RetryStore(s3, { baseDelayMs: 1 });
      const first = clean.log.length + 1;
      // The next request (the get) is cut mid-body; everything after flows.
      (clean as unknown as { options: { script: Record<number, string> } }).options.script = { [first]: 'resetResponse' };
      const { body, meta } = await store.get('large', { verify: true });
      expect(sha(await collect(body))).toBe(sha(data));
      const gets = clean.log.slice(first - 1).filter((e) => e.method === 'GET');
      expect(gets).toHaveLength(2);
      expect(gets[0]).toMatchObject({ fault: 'resetResponse' });
      const at = gets[0]!.at!;
      expect(at).toBeGreaterThan(0);
      // Resumed where the reset struck (the SDK may have received a little less than was sent).
      const resumedFrom = Number(/^bytes=(\d+)-(\d+)$/.exec(gets[1]!.range ?? '')?.[1]);
      expect(resumedFrom).toBeGreaterThan(0);
      expect(resumedFrom).toBeLessThanOrEqual(at);
      expect(gets[1]!.range).toBe(`bytes=${resumedFrom}-${data.byteLength - 1}`);
      expect(gets[1]!.ifMatch?.replaceAll('"', '')).toBe(meta.etag);
      await s3.close();
    } finally {
      await clean.close();
    }
  });
});

function* chunks(buf: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < buf.byteLength; i += size) yield buf.subarray(i, i + size);
}
