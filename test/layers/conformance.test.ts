import { MemoryStore } from '../../providers/memory/index.js';
import type { BlobStore } from '../../src/core/index.js';
import { RetryStore, resilient } from '../../src/layers/index.js';
import { testStore } from '../../src/testing/index.js';
import { FaultyStore } from '../faults/faulty-store.js';

/** Damages one byte inside the memory store at the bottom of a stack. */
function corrupter(memory: MemoryStore) {
  return async (_store: BlobStore, key: string): Promise<void> => {
    const entry = (memory as unknown as { objects: Map<string, { data: Buffer }> }).objects.get(key)!;
    const copy = Buffer.from(entry.data);
    copy[copy.length >> 1]! ^= 0x01;
    entry.data = copy;
  };
}

// The whole recommended stack must be indistinguishable from the store under it.
const stacked = new MemoryStore();
testStore('resilient(memory)', {
  create: () => resilient(stacked, {
    operationTimeoutMs: 60_000,
    attemptTimeout: { timeoutMs: 30_000, stallMs: 10_000 },
    rateLimit: { opsPerSec: 100_000, bytesPerSec: 4e9 },
  }).store,
  corrupt: corrupter(stacked),
});

// Faults on every call that a retry may repeat: retries and resumptions must hide all of them.
// Puts are left alone because the suite puts one-shot streams, which are never retried by design.
const faulted = new MemoryStore();
testStore('Retry(Faulty(memory)) at 20% faults', {
  create: () => new RetryStore(new FaultyStore(faulted, {
    // CLOUDMUX_FAULT_SEED replays another schedule.
    seed: Number(process.env.CLOUDMUX_FAULT_SEED ?? 20),
    ops: ['get', 'head', 'list', 'delete', 'deleteMany', 'copy', 'updateMetadata'],
    errorRates: { Transient: 0.1, Throttled: 0.05 },
    resetBody: 0.05,
    truncateBody: 0.05,
    resetListing: 0.02,
  }), { baseDelayMs: 1, maxDelayMs: 5, retries: 20 }),
  corrupt: corrupter(faulted),
  deviations: {
    conditionalPutCounter: 'same limit as overwriteWhileReading: 5 writers overwrite the counter while others read it, and a body reset injected after the first byte cannot resume once the version is gone (seed 5 hits it)',
    overwriteWhileReading: 'a body fault injected after the overwrite cannot be resumed: the memory store keeps no old versions, so the ranged re-get pinned to the old etag fails (RetryStore then fails the stream instead of mixing versions)',
  },
});
