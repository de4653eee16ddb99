import { PreconditionFailedError } from './errors.js';
import { headIfExists } from './helpers.js';
import { validateKey } from './keys.js';
import type { BlobStore, DeleteManyResult, SignalOptions } from './types.js';

/** The version of an object a caller proved something about (a verified copy of it exists). */
export interface ExpectedVersion {
  etag: string;
  /** Its SHA-256, where known: also compared, so a store whose etag missed a rewrite is caught. */
  sha256?: string;
}

/**
 * Deletes `key` only while it is still the version `expected` names, as close to the delete as
 * the store allows: a head compared with `expected` (etag, and SHA-256 when both sides know one),
 * then a delete conditional on that etag where the store declares `capabilities.conditionalDelete`
 * (the provider refuses it if the object changed meanwhile). Without the capability the delete is
 * unconditional right after the head, and a write landing in that one round trip is lost with it;
 * say so to users of such stores (s3rver, S3 compatibles without If-Match on DeleteObject).
 * Returns false when the object was already gone. Errors: PreconditionFailed (changed; nothing deleted).
 */
export async function deleteIfUnchanged(store: BlobStore, key: string, expected: ExpectedVersion, opts: SignalOptions = {}): Promise<boolean> {
  const changed = (why: string): never => {
    throw new PreconditionFailedError(`${key} changed since it was verified (${why}); not deleted`, { provider: store.provider, key });
  };
  const now = await headIfExists(store, key, { signal: opts.signal });
  if (!now) return false;
  if (now.etag !== expected.etag) changed(`etag ${now.etag}, verified ${expected.etag}`);
  const sha = now.checksums.sha256;
  if (expected.sha256 !== undefined && sha !== undefined && sha !== expected.sha256) changed('its sha256 differs from the verified one');
  await store.delete(key, { signal: opts.signal, ...(store.capabilities.conditionalDelete ? { ifMatch: expected.etag } : {}) });
  return true;
}

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
