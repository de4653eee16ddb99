import { expect } from './vitest.js';
import type { BlobStore } from '../core/types.js';
import { generatedStream, sha256OfStream } from './data.js';

/** One part-data request a store sent, as a fault proxy in front of its provider saw it. */
export interface PartRequest {
  /** What names the part in the request (S3 `partNumber`, Azure `blockid`, GCS Content-Range bytes). */
  part: string;
  /** The proxy dropped this request's connection while its body was arriving. */
  reset: boolean;
}

/**
 * How the suite reaches a store's parts on the wire, for stores that declare
 * `capabilities.multipartPut`: a store of the same kind whose requests go through a proxy that
 * can drop the connection of one part-data request mid-body and logs every part request.
 */
export interface PartFaultHarness {
  /** The proxied store (same provider, small parts so `bodySize` makes several). */
  create(): Promise<BlobStore> | BlobStore;
  /** Bytes of a streamed body that the proxied store sends as at least three parts. */
  bodySize: number;
  /** The next `n`-th part-data request (1-based, counted from now) is reset mid-body; counts restart. */
  resetPart(n: number): void;
  /** Part-data requests since the last `resetPart`, in arrival order. */
  partRequests(): PartRequest[];
  /** Closes the proxy (and the store). */
  close(): Promise<void>;
}

/**
 * A streamed multi-part put with one part reset mid-send succeeds without re-sending the other
 * parts: the part engine retries the part in place (its bytes are in memory) while the others go
 * on. A one-shot stream is never replayed, so without that the whole put would fail. Applies to
 * stores that declare `multipartPut`; others write a stream whole and the case checks nothing more.
 */
export async function partResetMidSend(store: BlobStore, prefix: string, harness: PartFaultHarness | undefined): Promise<void> {
  if (store.capabilities.multipartPut !== true) {
    expect(harness, `${store.toString()} does not declare multipartPut, yet a part-fault harness was given`).toBeUndefined();
    return;
  }
  if (!harness) {
    throw new Error(`${store.toString()} declares capabilities.multipartPut: give testStore a partFaults harness (a proxy that can reset one part request), or list partResetMidSend as a deviation with the reason`);
  }
  const proxied = await harness.create();
  try {
    const gen = generatedStream(harness.bodySize, { seed: 'part-reset', chunkSize: 64 * 1024 });
    harness.resetPart(2);
    const key = `${prefix}parts`;
    const meta = await proxied.put(key, gen.stream);
    const log = harness.partRequests();
    expect(meta.size).toBe(harness.bodySize);
    expect(meta.checksums.sha256).toBe(gen.sha256());
    const resets = log.filter((r) => r.reset);
    expect(resets, `one part request reset (log: ${JSON.stringify(log)})`).toHaveLength(1);
    const counts = new Map<string, number>();
    for (const r of log) counts.set(r.part, (counts.get(r.part) ?? 0) + 1);
    expect(counts.size, `at least three parts (log: ${JSON.stringify(log)})`).toBeGreaterThanOrEqual(3);
    for (const [part, n] of counts) {
      expect(n, `part ${part} sent ${n} times (log: ${JSON.stringify(log)})`).toBe(part === resets[0]!.part ? 2 : 1);
    }
    const got = await store.get(key, { verify: true });
    const read = await sha256OfStream(got.body);
    expect(read.sha256).toBe(gen.sha256());
  } finally {
    await proxied.close();
    await harness.close();
  }
}
