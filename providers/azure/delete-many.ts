/** AzureStore's deleteMany: blob batches with a shared key or Azure AD, bounded parallel deletes with a SAS. */
import { TransientError } from '../../src/core/index.js';
import type { DeleteManyResult } from '../../src/core/index.js';
import { PROVIDER } from './config.js';
import { mapAzureError } from './errors.js';
import type { AzureStore } from './store.js';

/** Sub-requests per blob batch (Azure's limit). */
export const BATCH_LIMIT = 256;

export async function deleteBatch(s: AzureStore, keys: string[], result: DeleteManyResult, signal: AbortSignal | undefined): Promise<void> {
  const clients = keys.map((k) => s.container.getBlobClient(s.blobName(k)));
  const byUrl = new Map(clients.map((c, i) => [c.url, keys[i]!]));
  let res;
  try {
    res = await s.container.getBlobBatchClient().deleteBlobs(clients, { deleteSnapshots: 'include', abortSignal: signal });
  } catch (e) {
    const err = s.mapError(e, undefined, signal);
    for (const key of keys) result.errors.push({ key, error: err });
    return;
  }
  const seen = new Set<string>();
  res.subResponses.forEach((sub, i) => {
    const key = byUrl.get(sub._request.url) ?? keys[i]!;
    seen.add(key);
    if (sub.status < 300 || sub.status === 404) {
      result.deleted.push(key);
      return;
    }
    const err = mapAzureError({ name: 'RestError', statusCode: sub.status, code: sub.errorCode, message: sub.statusMessage }, s.errorContext(key, signal));
    result.errors.push({ key, error: err });
  });
  for (const key of keys) {
    if (!seen.has(key)) result.errors.push({ key, error: new TransientError('the blob batch response had no answer for this key', { provider: PROVIDER, key }) });
  }
}

export async function deleteParallel(s: AzureStore, keys: string[], result: DeleteManyResult, signal: AbortSignal | undefined): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < keys.length) {
      const key = keys[next++]!;
      try {
        await s.delete(key, { signal });
        result.deleted.push(key);
      } catch (error) {
        result.errors.push({ key, error: error as Error });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(s.config.deleteConcurrency, keys.length) }, worker));
}
