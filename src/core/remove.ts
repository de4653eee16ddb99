import type { BlobStore } from './types.js';

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
