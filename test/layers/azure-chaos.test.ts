import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAzureStore } from '../../providers/azure/index.js';
import { collect } from '../../src/core/index.js';
import { RetryStore, type ResilientStack } from '../../src/layers/index.js';
import { FaultProxy } from '../faults/proxy.js';
import { chaosProxy, chaosStack, cleanUpChaos, runChaosWorkload } from './chaos-workload.js';

/**
 * The chaos workload (see chaos-workload.ts) over the real Azure SDK and Azurite, with the fault
 * proxy between them answering its own 503/429s as Azure does (XML body plus x-ms-error-code).
 * 1 MiB blocks put the 1.5 MB objects and the streamed one on the staged-block path, whose
 * per-block retries run inside the driver; Shared Key signatures survive the proxy because they
 * sign the path, not the host.
 */
const connectionString = process.env.AZURE_STORAGE_CONNECTION_STRING;
const blobEndpoint = /BlobEndpoint=([^;]+)/i.exec(connectionString ?? '')?.[1];
/** A blob download (not a listing, not properties): the only requests whose bodies are verified. */
const isDownload = (r: { method: string; path: string }): boolean => r.method === 'GET' && !/[?&](comp|restype)=/.test(r.path);
const NO_AZURE = 'no Azure endpoint: the harness started no Azurite (CLOUDMUX_EMULATORS excludes azure)';

describe('resilience layers over Azure through a fault proxy', () => {
  let proxy: FaultProxy | undefined;
  let stack: ResilientStack | undefined;

  beforeAll(async () => {
    if (!connectionString || !blobEndpoint) return;
    const upstream = new URL(blobEndpoint);
    // Only blob downloads carry bytes the driver verifies; listings and properties are not flipped.
    proxy = await chaosProxy(upstream.origin, {
      protocol: 'azure',
      canFlip: isDownload,
    });
    stack = chaosStack(createAzureStore({
      connectionString,
      endpoint: `${proxy.url}${upstream.pathname.replace(/\/+$/, '')}`,
      container: process.env.AZURE_CONTAINER ?? 'cloudmux-test',
      prefix: `chaos-${randomBytes(3).toString('hex')}`,
      singleShotThreshold: 1024 * 1024,
      blockSize: 1024 * 1024,
      uploadConcurrency: 2,
    }));
  });

  afterAll(() => cleanUpChaos(proxy, stack));

  it('a put/get/list workload at 20% faults completes with every byte verified', async (ctx) => {
    if (!blobEndpoint || !stack || !proxy) return ctx.skip(NO_AZURE);
    const r = await runChaosWorkload('azure', stack, proxy, { largeSize: 3 * 1024 * 1024 });
    expect(r.integrityErrors).toBe(r.faults.flipByte ?? 0);
    // The staged-block path ran through the proxy (Put Block and Put Block List requests); which of
    // them a fault hit depends on the seed.
    expect(proxy.log.filter((e) => e.method === 'PUT' && /[?&]comp=block(&|$)/.test(e.path)).length).toBeGreaterThanOrEqual(11);
    expect(proxy.log.some((e) => e.method === 'PUT' && /[?&]comp=blocklist(&|$)/.test(e.path))).toBe(true);
  });

  it('a connection cut in the middle of a download is Transient and the retry layer resumes it with a range', async (ctx) => {
    if (!blobEndpoint || !connectionString) return ctx.skip(NO_AZURE);
    const upstream = new URL(blobEndpoint);
    const clean = await FaultProxy.start({ upstream: upstream.origin, lifetimeMs: 60_000 });
    const store = createAzureStore({
      connectionString, endpoint: `${clean.url}${upstream.pathname.replace(/\/+$/, '')}`,
      container: process.env.AZURE_CONTAINER ?? 'cloudmux-test', prefix: `chaos-bug-${randomBytes(3).toString('hex')}`,
    });
    try {
      await store.put('cut', randomBytes(2_000_000));
      (clean as unknown as { options: { script: Record<number, string> } }).options.script = { [clean.log.length + 1]: 'resetResponse' };
      const data = await store.get('cut').then(async (r) => collect(r.body)).catch((e: unknown) => e);
      expect(data).toMatchObject({ code: 'Transient', retryable: true });
      (clean as unknown as { options: { script: Record<number, string> } }).options.script = { [clean.log.length + 1]: 'resetResponse' };
      const body = await new RetryStore(store, { baseDelayMs: 1 }).get('cut').then(async (r) => collect(r.body));
      expect(body.length).toBe(2_000_000);
      const gets = clean.log.filter((e) => e.method === 'GET');
      expect(gets.at(-2)).toMatchObject({ fault: 'resetResponse' });
      expect(gets.at(-1)?.range).toMatch(/^bytes=[1-9]\d*-/);
    } finally {
      await store.delete('cut').catch(() => undefined);
      await store.close();
      await clean.close();
    }
  });
});
