import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Store } from '../../providers/s3/index.js';
import { collect, type BlobStore } from '../../src/core/index.js';
import { RetryStore, type ResilientStack } from '../../src/layers/index.js';
import { FaultProxy } from '../faults/proxy.js';
import { chaosProxy, chaosStack, cleanUpChaos, runChaosWorkload, sha } from './chaos-workload.js';

/**
 * The resilience stack over the real S3 SDK and the S3 emulator, with a fault-injecting proxy
 * between them. Runs when the harness started (or was pointed at) an S3 endpoint.
 */
const endpoint = process.env.S3_ENDPOINT;
const NO_S3 = 'no S3 endpoint: the harness started no S3 emulator (CLOUDMUX_EMULATORS excludes s3)';

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
    // Listings carry no checksum S3 could verify; a flipped key would be silently wrong anywhere.
    proxy = await chaosProxy(endpoint, { canFlip: (r) => r.method === 'GET' && !/[?&]list-type=/.test(r.path) });
    stack = chaosStack(s3Through(proxy, prefix));
  });

  afterAll(() => cleanUpChaos(proxy, stack));

  it('a put/get/list workload at 20% faults completes with every byte verified', async (ctx) => {
    if (!endpoint || !stack || !proxy) return ctx.skip(NO_S3);
    const r = await runChaosWorkload('s3', stack, proxy, { largeSize: 9 * 1024 * 1024 });
    // Every flipped response was an object GET read with verify: each one, and only those, failed.
    expect(r.faults.resetResponse ?? 0).toBeGreaterThan(0);
    expect(r.integrityErrors).toBe(r.faults.flipByte ?? 0);
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
