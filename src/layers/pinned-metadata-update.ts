import { PreconditionFailedError, isCloudmuxError } from '../core/errors.js';
import { carriedReservedMetadata } from '../core/metadata.js';
import { systemMetadata } from '../core/system-metadata.js';
import type { BlobStore, ObjectMeta, UpdateMetadataOptions } from '../core/types.js';

/**
 * A layer's metadata update that keeps the layer's own reserved metadata (an encryption header, a
 * manifest's digest): reads the object's metadata, writes the caller's replacement plus the
 * reserved entries pinned to the etag just read, so a concurrent overwrite never gets the old
 * entries. Without a caller `ifMatch`, a lost race re-reads and tries again (up to `attempts`);
 * with one, a mismatch is PreconditionFailed. Returns the inner store's answer.
 */
export async function pinnedMetadataUpdate(inner: BlobStore, key: string, opts: UpdateMetadataOptions, provider: string, attempts = 3): Promise<ObjectMeta> {
  for (let attempt = 1; ; attempt++) {
    const current = await inner.head(key, { signal: opts.signal });
    if (opts.ifMatch !== undefined && opts.ifMatch !== current.etag) {
      throw new PreconditionFailedError(`etag is ${current.etag}, not ${opts.ifMatch}`, { provider, key });
    }
    try {
      return await inner.updateMetadata(key, {
        metadata: systemMetadata({ ...opts.metadata, ...carriedReservedMetadata(current.metadata) }),
        contentType: opts.contentType,
        ifMatch: current.etag,
        signal: opts.signal,
      });
    } catch (e) {
      if (attempt < attempts && opts.ifMatch === undefined && isCloudmuxError(e, 'PreconditionFailed')) continue;
      throw e;
    }
  }
}
