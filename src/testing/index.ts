import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, it } from './vitest.js';
import { removeAllUnder } from '../core/remove.js';
import type { BlobStore } from '../core/types.js';
import { conformanceCases, type CaseContext, type CaseName } from './cases.js';
import type { PartFaultHarness } from './part-reset.js';

export * from './cases.js';
export * from './data.js';
export type { PartFaultHarness, PartRequest } from './part-reset.js';

export interface TestStoreOptions {
  /** Builds the store under test (once per describe block). */
  create(): Promise<BlobStore> | BlobStore;
  /** Tears it down after the block (default: store.close()). */
  destroy?(store: BlobStore): Promise<void>;
  /**
   * Cases this backend cannot pass for a reason outside the driver (an emulator's known fault),
   * each with that reason. The case is reported as skipped with the reason. A missing
   * *capability* is not a deviation: the case runs and checks NotSupported.
   */
  deviations?: Partial<Record<CaseName, string>>;
  /** Bytes a 64 MiB streamed put may hold at once (default 48 MiB). */
  memoryBudget?: number;
  /** Flips one stored byte of `key` behind the store's back (enables the corruption case). */
  corrupt?(store: BlobStore, key: string): Promise<void>;
  /**
   * Required for a store that declares `capabilities.multipartPut`: a proxied twin of it whose
   * part requests can be reset (the partResetMidSend case).
   */
  partFaults?: PartFaultHarness;
  /** Only these cases (for focused runs). */
  only?: CaseName[];
  /** Leave objects behind after each case (for debugging). */
  keep?: boolean;
}

/**
 * Registers the whole conformance suite for one store: one vitest case per behaviour, each under
 * its own unique key prefix, cleaned up after. Third-party drivers call it from their own tests:
 *
 *     import { testStore } from 'cloudmux/testing';
 *     testStore('my-driver', { create: () => new MyStore(...) });
 */
export function testStore(name: string, opts: TestStoreOptions): void {
  describe(`conformance: ${name}`, () => {
    let store: BlobStore | undefined;
    const run = `cmx-test/${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
    const prefixes: string[] = [];

    beforeAll(async () => {
      store = await opts.create();
    });

    afterEach(async () => {
      if (opts.keep || !store) return;
      for (const prefix of prefixes.splice(0)) await removeAll(store, prefix);
    });

    afterAll(async () => {
      if (store) await (opts.destroy ? opts.destroy(store) : store.close());
    });

    const names = (opts.only ?? (Object.keys(conformanceCases) as CaseName[]));
    const attempts = new Map<CaseName, number>();
    for (const caseName of names) {
      const fn = conformanceCases[caseName];
      it(caseName, async (vctx) => {
        const reason = opts.deviations?.[caseName];
        if (reason) {
          vctx.skip(`deviation: ${reason}`);
          return;
        }
        // A retried case (vitest `retry`) starts on a fresh prefix: the cases are stateful, and a
        // second attempt on the first one's leftovers would fail for reasons of its own.
        const attempt = (attempts.get(caseName) ?? 0) + 1;
        attempts.set(caseName, attempt);
        const prefix = attempt === 1 ? `${run}/${caseName}/` : `${run}/${caseName}-attempt${attempt}/`;
        prefixes.push(prefix);
        const ctx: CaseContext = {
          store: store!,
          prefix,
          memoryBudget: opts.memoryBudget ?? 48 * 1024 * 1024,
          corrupt: opts.corrupt ? (s, k) => opts.corrupt!(s, k) : undefined,
          skip: (why) => vctx.skip(why),
          ...(opts.partFaults ? { partFaults: opts.partFaults } : {}),
        };
        await fn(ctx);
      }, 180_000);
    }
  });
}

/** Deletes every object under a prefix (batched). */
export async function removeAll(store: BlobStore, prefix: string): Promise<void> {
  await removeAllUnder(store, prefix);
}
