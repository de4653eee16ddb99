import { validateKey } from './keys.js';
import type { BlobStore, DeleteManyResult } from './types.js';

/**
 * Deletes every object under `prefix` in batches of `batchSize` (the provider's batch API
 * through deleteMany). Returns how many were deleted and how many failed.
 */
export async function removeAllUnder(
  store: BlobStore,
  prefix: string,
  opts: { dryRun?: boolean; batchSize?: number; signal?: AbortSignal; onResult?: (key: string, error?: Error) => void } = {},
): Promise<{ deleted: number; failed: number }> {
  const size = opts.batchSize ?? 1000;
  let deleted = 0;
  let failed = 0;
  let batch: string[] = [];
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const keys = batch;
    batch = [];
    if (opts.dryRun) {
      for (const k of keys) opts.onResult?.(k);
      return;
    }
    const res = await store.deleteMany(keys, { signal: opts.signal });
    deleted += res.deleted.length;
    failed += res.errors.length;
    for (const k of res.deleted) opts.onResult?.(k);
    for (const e of res.errors) opts.onResult?.(e.key, e.error);
  };
  for await (const item of store.list({ prefix, signal: opts.signal })) {
    if (item.type !== 'object') continue;
    batch.push(item.key);
    if (batch.length >= size) await flush();
  }
  await flush();
  return { deleted, failed };
}

/**
 * deleteMany for stores without a batch API: invalid keys are reported per key, the others are
 * deleted one by one with `concurrency` in flight.
 */
export async function deleteEach(
  keys: Iterable<string>,
  concurrency: number,
  deleteOne: (key: string) => Promise<void>,
  provider?: string,
): Promise<DeleteManyResult> {
  const result: DeleteManyResult = { deleted: [], errors: [] };
  const valid = validKeysOf(keys, result, provider);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < valid.length) {
      const key = valid[next++]!;
      try {
        await deleteOne(key);
        result.deleted.push(key);
      } catch (error) {
        result.errors.push({ key, error: error as Error });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, valid.length) }, worker));
  return result;
}

/** The keys that pass the portable rules; the others go to `result.errors` as InvalidKey. */
export function validKeysOf(keys: Iterable<string>, result: DeleteManyResult, provider?: string): string[] {
  const valid: string[] = [];
  for (const key of keys) {
    try {
      validateKey(key, provider);
      valid.push(key);
    } catch (error) {
      result.errors.push({ key, error: error as Error });
    }
  }
  return valid;
}
