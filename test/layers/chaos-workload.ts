import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { expect } from 'vitest';
import { collect, isCloudmuxError, listAll } from '../../src/core/index.js';
import { reopenable, resilient, type ResilientStack } from '../../src/layers/index.js';
import type { BlobStore } from '../../src/core/types.js';
import { FaultProxy, type FaultProxyOptions } from '../faults/proxy.js';

/**
 * The chaos workload every emulator runs through the fault proxy: puts of buffers and of one
 * large re-openable stream (multipart / resumable / staged blocks, per driver), a paged listing,
 * and three verified reads of everything, all through the resilience stack at 20% faults. Every
 * byte is checked by SHA-256; a flipped byte may only ever surface as IntegrityError.
 */

export const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** The proxy's settings for the 20% run; `protocol` and `canFlip` are the driver's. */
export function chaosProxy(upstream: string, opts: Pick<FaultProxyOptions, 'protocol' | 'canFlip' | 'allow'>): Promise<FaultProxy> {
  return FaultProxy.start({
    upstream,
    seed: Number(process.env.CLOUDMUX_FAULT_SEED ?? 6),
    rate: 0.2,
    // Waits that only cost wall time get less weight; resets and flips are what this is about.
    weights: { resetRequest: 2, resetResponse: 3, slowDown: 2, tooManyRequests: 1, stall: 1, flipByte: 2 },
    retryAfterSeconds: 1,
    stallMs: 3000,
    lifetimeMs: 240_000,
    ...opts,
  });
}

/** The resilience stack the workload runs through. */
export function chaosStack(driver: BlobStore): ResilientStack {
  return resilient(driver, {
    retry: { baseDelayMs: 10, maxDelayMs: 200, retries: 12, maxRetryAfterMs: 2000 },
    attemptTimeout: { timeoutMs: 1500, stallMs: 1000 },
    // 20% injected faults are expected here; the breaker must not mistake them for an outage.
    breaker: { volumeThreshold: 50, errorThresholdPercentage: 70 },
  });
}

export interface ChaosResult {
  requests: number;
  faults: ReturnType<FaultProxy['faultCounts']>;
  integrityErrors: number;
}

/**
 * Runs the workload on `stack` (over a driver pointed at `proxy`) and checks every byte; returns
 * what happened for driver-specific assertions. `largeSize` is the streamed object (big enough to
 * take the driver's chunked upload path).
 */
export async function runChaosWorkload(name: string, stack: ResilientStack, proxy: FaultProxy, opts: { largeSize: number }): Promise<ChaosResult> {
  const store = stack.store;
  const objects = new Map<string, Buffer>();
  for (let i = 0; i < 24; i++) objects.set(`obj-${String(i).padStart(2, '0')}`, randomBytes(i % 6 === 0 ? 1_500_000 : 2000 + i * 3000));
  const large = randomBytes(opts.largeSize);

  // Puts: buffers, and one chunked upload of a re-openable stream.
  const queue = [...objects];
  await Promise.all(Array.from({ length: 4 }, async () => {
    for (let next = queue.shift(); next; next = queue.shift()) await store.put(next[0], next[1]);
  }));
  await store.put('multipart', reopenable(() => Readable.from(chunks(large, 256 * 1024))), { size: large.byteLength });
  objects.set('multipart', large);

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
        expect(sha(got), key).toBe(sha(data));
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
  console.log(`${name} chaos: ${requests} requests, ${injected} faults injected ${JSON.stringify(faults)}, ${integrityErrors} IntegrityErrors caught and re-read, instrumented: ${JSON.stringify(stack.instrumented!.snapshot().ops.get?.outcomes)}`);
  expect(injected / requests).toBeGreaterThan(0.1);
  expect((faults.resetResponse ?? 0) + (faults.resetRequest ?? 0)).toBeGreaterThan(0);
  return { requests, faults, integrityErrors };
}

/** Deletes everything the workload left, with faults off. */
export async function cleanUpChaos(proxy: FaultProxy | undefined, stack: ResilientStack | undefined): Promise<void> {
  if (proxy) proxy.setRate(0);
  if (stack) {
    for (const item of await listAll(stack.store)) if (item.type === 'object') await stack.store.delete(item.key);
    await stack.store.close();
  }
  await proxy?.close();
}

export function* chunks(buf: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < buf.byteLength; i += size) yield buf.subarray(i, i + size);
}
