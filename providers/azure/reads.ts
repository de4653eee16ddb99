/** AzureStore's downloads: Get Blob on the data client or the SDK, and the result a caller reads. */
import { Readable } from 'node:stream';
import type { BlobDownloadResponseParsed, BlobRequestConditions } from '@azure/storage-blob';
import { IntegrityError, InvalidRangeError, MultiHasher, checksumMismatches } from '../../src/core/index.js';
import type { GetOptions, GetResult, ObjectMeta } from '../../src/core/index.js';
import { PROVIDER } from './config.js';
import type { DownloadResponse } from './data-client.js';
import { ResponseBody, type BodyCheck } from '../../src/core/response-body.js';
import type { AzureStore } from './store.js';

/** Get Blob through the data client, or through the SDK (its response's getters copied into a plain object). */
export async function download(s: AzureStore, key: string, offset: number, count: number | undefined, conditions: BlobRequestConditions, signal: AbortSignal | undefined): Promise<DownloadResponse> {
  if (s.data) return s.data.getBlob(s.blobName(key), { offset, count, ifMatch: conditions.ifMatch, ifNoneMatch: conditions.ifNoneMatch }, signal);
  const res: BlobDownloadResponseParsed = await s.container.getBlobClient(s.blobName(key)).download(offset, count, { conditions, abortSignal: signal, maxRetryRequests: 0 });
  return {
    contentLength: res.contentLength,
    contentRange: res.contentRange,
    etag: res.etag,
    versionId: res.versionId,
    lastModified: res.lastModified,
    contentType: res.contentType,
    metadata: res.metadata,
    contentMD5: res.contentMD5,
    blobContentMD5: res.blobContentMD5,
    body: res.readableStreamBody as Readable | undefined,
  };
}

export function getResult(s: AzureStore, key: string, res: DownloadResponse, opts: GetOptions, ranged: boolean): GetResult {
  const length = res.contentLength ?? 0;
  let size = length;
  const total = /\/(\d+)\s*$/.exec(res.contentRange ?? '');
  if (total) size = Number(total[1]);
  const src = res.body;
  const offset = ranged ? Number(/bytes\s+(\d+)-/.exec(res.contentRange ?? '')?.[1] ?? 0) : 0;
  const requested = opts.range && 'offset' in opts.range ? opts.range.offset : 0;
  if (ranged && requested >= size && size > 0) {
    // Azurite answers a range starting at the end with an empty 206 where Azure says 416.
    src?.destroy();
    throw new InvalidRangeError(`offset ${requested} is at or past the end of a ${size}-byte object`, { provider: PROVIDER, key });
  }
  const meta = s.metaFrom(key, {
    contentLength: size,
    etag: res.etag,
    versionId: res.versionId,
    lastModified: res.lastModified,
    contentType: res.contentType,
    metadata: res.metadata,
    // A ranged download reports the blob's MD5 as blobContentMD5 and the range's (if asked) as contentMD5.
    contentMD5: res.blobContentMD5 ?? (res.contentRange ? undefined : res.contentMD5),
  });
  const verify = opts.verify === true && !ranged;
  const body = src ? new ResponseBody(src, (e) => s.mapError(e, key, opts.signal), verify ? verifier(s, key, meta) : undefined) : Readable.from([]);
  const result: GetResult = { meta, body };
  if (ranged) result.range = { offset, length };
  return result;
}

/** Checks a whole download against the stored digest (SHA-256, else MD5) and its length. */
export function verifier(s: AzureStore, key: string, meta: ObjectMeta): BodyCheck {
  const expected = meta.checksums;
  const hasher = new MultiHasher(expected.sha256 ? [] : expected.md5 ? ['md5'] : []);
  return {
    update: (chunk) => hasher.update(chunk),
    end: () => {
      if (hasher.bytes !== meta.size) return new IntegrityError(`read ${hasher.bytes} bytes, expected ${meta.size}`, { provider: PROVIDER, key });
      const bad = checksumMismatches(expected, hasher.digest());
      if (bad.length > 0) return new IntegrityError(`${bad.join(', ')} mismatch: the stored bytes are not the bytes that were written`, { provider: PROVIDER, key });
      return undefined;
    },
  };
}
