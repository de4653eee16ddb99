import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import { isCloudmuxError } from '../../src/core/errors.js';
import { getBuffer } from '../../src/core/helpers.js';
import type { BlobStore } from '../../src/core/types.js';
import { pseudoRandomBytes } from '../../src/testing/data.js';
import type { Router } from '../../src/router/router.js';
import type { ReplicationWorker } from '../../src/replication/worker.js';

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

export interface OutageWorkload {
  router: Router;
  worker: ReplicationWorker;
  /** Direct stores by provider name, to compare what each one holds. */
  direct: Record<string, BlobStore>;
  /** Takes the provider out (kill the emulator / inject failures). */
  down(): Promise<void>;
  /** Brings it back. */
  up(): Promise<void>;
  ops?: number;
  prefix: string;
  bodySize?: number;
  /** Concurrent operations (default 8). */
  parallel?: number;
  /**
   * Read every key once through the router before draining. A provider that lost acknowledged
   * writes (an emulator killed before it saved them) is then found out by the read path and
   * repaired from the other replica, as in production.
   */
  readRepair?: boolean;
}

/**
 * 1,000 operations (half puts of new keys, half reads of earlier keys, verified byte for byte),
 * with the provider taken down after 30% and brought back after 70%. Every operation must
 * succeed. Afterwards the outbox must drain to zero and every provider must hold identical
 * bytes (SHA-256 compared on each provider directly).
 */
export async function runOutageWorkload(w: OutageWorkload): Promise<{ puts: number; reads: number; owedAtPeak: number; drainedMs: number }> {
  const ops = w.ops ?? 1000;
  const size = w.bodySize ?? 1024;
  const written = new Map<string, string>();
  const keys: string[] = [];
  let puts = 0;
  let reads = 0;
  let next = 0;
  const failures: string[] = [];
  let waitedForHolder = 0;
  /**
   * With W=1 a key written once the provider is back may, for a moment, live on that provider
   * only; if it flaps again (an emulator still starting on a loaded machine trips its breaker) the
   * router answers ProviderUnavailable, typed and retryable, until the holder recovers or the
   * outbox has copied the key. A client's retry layer waits; so does this read, a few seconds at
   * most, counted and printed. Any other failure, or a wrong byte, still fails the workload.
   */
  const readWaitingForHolder = async (key: string): Promise<Buffer> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await getBuffer(w.router, key, { verify: true });
      } catch (e) {
        if (!isCloudmuxError(e, 'ProviderUnavailable') || attempt >= 20) throw e;
        waitedForHolder++;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  };
  const one = async (i: number): Promise<void> => {
    if (i % 2 === 0 || keys.length === 0) {
      const key = `${w.prefix}k${String(i).padStart(5, '0')}`;
      const body = pseudoRandomBytes(size, key);
      await w.router.put(key, body);
      written.set(key, sha256(body));
      keys.push(key);
      puts++;
    } else {
      const key = keys[(i * 7919) % keys.length]!;
      const got = await readWaitingForHolder(key);
      if (sha256(got) !== written.get(key)) throw new Error(`read of ${key} returned other bytes`);
      reads++;
    }
  };
  const phase = async (until: number): Promise<void> => {
    await Promise.all(Array.from({ length: w.parallel ?? 8 }, async () => {
      while (next < until) {
        const i = next++;
        try {
          await one(i);
        } catch (e) {
          const cause = (e as { cause?: { code?: string; message?: string } }).cause;
          failures.push(`op ${i}: ${(e as Error).message}${cause ? ` (cause: ${cause.code ?? ''} ${cause.message ?? String(cause)})` : ''}`);
        }
      }
    }));
  };
  w.worker.start();
  await phase(Math.floor(ops * 0.3));
  // Steady state before the outage: what was owed so far is replicated.
  await w.worker.stop();
  await w.worker.drain({ timeoutMs: 60_000 });
  await w.down();
  await phase(Math.floor(ops * 0.7));
  const owedAtPeak = (await w.router.state.backlog()).count;
  await w.up();
  w.worker.start();
  await phase(ops);
  if (waitedForHolder > 0) console.log(`outage workload: ${waitedForHolder} read retries waited for a key's only holder to come back`);
  expect(failures, failures.slice(0, 5).join('\n')).toEqual([]);
  if (w.readRepair) {
    for (const key of written.keys()) await getBuffer(w.router, key, { verify: true });
  }
  const t0 = performance.now();
  await w.worker.stop();
  const stats = await w.worker.drain({ timeoutMs: 120_000 });
  const drainedMs = performance.now() - t0;
  expect(stats.count).toBe(0);
  expect(stats.dead).toBe(0);
  for (const [name, store] of Object.entries(w.direct)) {
    const mismatched: string[] = [];
    for (const [key, digest] of written) {
      const got = await getBuffer(store, key).catch((e: Error) => Buffer.from(`error ${e.message}`));
      if (sha256(got) !== digest) mismatched.push(`${key}: ${got.subarray(0, 80).toString('latin1')}`);
    }
    expect(mismatched, `${name} differs on ${mismatched.length} keys`).toEqual([]);
  }
  return { puts, reads, owedAtPeak, drainedMs };
}
