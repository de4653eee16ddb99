/** S3Store's deleteMany: DeleteObjects in batches, per-key results. */
import { throwIfAborted, validateKey } from '../../src/core/index.js';
import type { DeleteManyResult, SignalOptions } from '../../src/core/index.js';
import { PROVIDER, S3_LIMITS } from './config.js';
import { mapS3Error } from './errors.js';
import { DeleteObjectsCommand } from './sdk.js';
import type { S3Store } from './store.js';

/**
 * DeleteObjects in batches of 1,000. Per-key failures, and whole-batch failures (for every key
 * of the batch), are reported in `errors`; an abort throws.
 */
export async function deleteMany(s: S3Store, keys: Iterable<string>, opts: SignalOptions = {}): Promise<DeleteManyResult> {
  const result: DeleteManyResult = { deleted: [], errors: [] };
  let batch: string[] = [];
  const flush = async (): Promise<void> => {
    const keysOfBatch = batch;
    batch = [];
    if (keysOfBatch.length === 0) return;
    throwIfAborted(opts.signal, { provider: PROVIDER });
    try {
      const r = await s.client.send(new DeleteObjectsCommand({
        Bucket: s.resolved.bucket,
        Delete: { Objects: keysOfBatch.map((k) => ({ Key: s.full(k) })), Quiet: true },
      }), { abortSignal: opts.signal });
      const failed = new Map<string, Error>();
      for (const err of r.Errors ?? []) {
        const k = err.Key?.startsWith(s.resolved.prefix) ? err.Key.slice(s.resolved.prefix.length) : err.Key ?? '';
        if (err.Code === 'NoSuchKey') continue;
        failed.set(k, mapS3Error({ name: err.Code, Code: err.Code, message: err.Message, $metadata: {} }, s.ctx('deleteMany', k)));
      }
      for (const k of keysOfBatch) {
        const error = failed.get(k);
        if (error) result.errors.push({ key: k, error });
        else result.deleted.push(k);
      }
    } catch (e) {
      const m = mapS3Error(e, s.ctx('deleteMany', undefined, { signal: opts.signal }));
      if (m.code === 'Aborted') throw m;
      for (const k of keysOfBatch) result.errors.push({ key: k, error: m });
    }
  };
  for (const key of keys) {
    try {
      validateKey(key, PROVIDER);
    } catch (error) {
      result.errors.push({ key, error: error as Error });
      continue;
    }
    batch.push(key);
    if (batch.length >= S3_LIMITS.maxDeleteBatch) await flush();
  }
  await flush();
  return result;
}
