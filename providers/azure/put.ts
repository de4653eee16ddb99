/** AzureStore's single-shot put (Put Blob with a transactional MD5) and what every put shares: digests against `expect`, conditions, errors, the written meta. */
import type { BlobRequestConditions, BlockBlobUploadOptions } from '@azure/storage-blob';
import {
  AlreadyExistsError, CloudmuxError, IntegrityError, MultiHasher, NotFoundError, PreconditionFailedError, SHA256_KEY,
  handedOverMd5, checksumMismatches, isCloudmuxError,
} from '../../src/core/index.js';
import type { Checksums, ObjectMeta, PutOptions } from '../../src/core/index.js';
import { DEFAULT_CONTENT_TYPE, PROVIDER } from './config.js';
import { type AzureStore, quote, unquote } from './store.js';

/** `known`: the body's SHA-256 and MD5 when already computed (a streamed body hashed as it was read). */
export async function putSingle(s: AzureStore, key: string, buf: Buffer, opts: PutOptions, known?: Checksums): Promise<ObjectMeta> {
  const checksums = known?.md5 !== undefined ? known : digestAndCheck(s, buf, key, opts);
  if (known) checkExpect(s, checksums, key, opts);
  const md5 = Buffer.from(checksums.md5!, 'hex');
  const contentType = opts.contentType ?? DEFAULT_CONTENT_TYPE;
  const metadata = { ...opts.metadata, [SHA256_KEY]: checksums.sha256! };
  const conditions = writeConditions(s, opts);
  if (s.data) {
    const b64 = md5.toString('base64');
    const res = await s.data.putBlob(s.blobName(key), buf, {
      blobContentType: contentType, blobContentMD5: b64, transactionalMD5: b64, metadata, ifMatch: conditions?.ifMatch, ifNoneMatch: conditions?.ifNoneMatch,
    }, opts.signal);
    return writtenMeta(s, key, buf.byteLength, contentType, metadata, checksums, res);
  }
  // transactionalContentMD5 is read by the SDK at run time though its type omits it for Put Blob.
  const uploadOptions: BlockBlobUploadOptions & { transactionalContentMD5?: Uint8Array } = {
    blobHTTPHeaders: { blobContentType: contentType, blobContentMD5: md5 },
    transactionalContentMD5: md5,
    metadata,
    conditions,
    abortSignal: opts.signal,
  };
  const res = await s.container.getBlockBlobClient(s.blobName(key)).upload(buf, buf.byteLength, uploadOptions);
  return writtenMeta(s, key, buf.byteLength, contentType, metadata, checksums, res);
}

/**
 * SHA-256 and MD5 of a single-shot body, checked against `expect`. An MD5 handed over in `expect`
 * is not computed again: it goes to Azure as the transactional Content-MD5, and Azure refuses the
 * bytes unless they hash to it, which is the same check done where the bytes land, without a
 * software MD5 pass here (the slowest digest we compute; SHA-256 is hardware-assisted).
 */
export function digestAndCheck(s: AzureStore, buf: Buffer, key: string, opts: PutOptions): Checksums {
  const given = handedOverMd5(opts.expect);
  const hasher = new MultiHasher(given ? [] : ['md5']);
  hasher.update(buf);
  const checksums = hasher.digest();
  if (given) checksums.md5 = given;
  checkExpect(s, checksums, key, opts);
  return checksums;
}

/** */
export function checkExpect(s: AzureStore, actual: Checksums, key: string, opts: PutOptions): void {
  if (opts.expect && checksumMismatches(opts.expect, actual).length > 0) {
    throw new IntegrityError('body does not match the expected checksums; nothing was written', { provider: PROVIDER, key });
  }
}

/** Fails a staged put before uploading when its condition already cannot hold (the commit re-checks atomically). */
export async function precheckConditions(s: AzureStore, key: string, opts: PutOptions): Promise<void> {
  if (opts.ifNoneMatch === undefined && opts.ifMatch === undefined) return;
  let current: ObjectMeta | undefined;
  try {
    current = await s.head(key, { signal: opts.signal });
  } catch (e) {
    if (!isCloudmuxError(e, 'NotFound')) throw e;
  }
  if (opts.ifNoneMatch === '*' && current) throw new AlreadyExistsError(`${key} already exists`, { provider: PROVIDER, key });
  if (opts.ifMatch !== undefined) {
    if (!current) throw new NotFoundError(`no object at ${key} to compare with ifMatch`, { provider: PROVIDER, key });
    if (current.etag !== unquote(opts.ifMatch)) throw new PreconditionFailedError(`etag is ${current.etag}, not ${opts.ifMatch}`, { provider: PROVIDER, key });
  }
}

/** */
export function writeConditions(s: AzureStore, opts: PutOptions): BlobRequestConditions | undefined {
  if (opts.ifNoneMatch === '*') return { ifNoneMatch: '*' };
  if (opts.ifMatch !== undefined) return { ifMatch: quote(opts.ifMatch) };
  return undefined;
}

/** Maps a put failure, telling "ifMatch on a missing key" (NotFound) from a changed etag. */
export async function writeError(s: AzureStore, e: unknown, key: string, opts: PutOptions): Promise<CloudmuxError> {
  const err = s.mapError(e, key, opts.signal);
  if (opts.ifNoneMatch === '*' && err.code === 'PreconditionFailed') return new AlreadyExistsError(`${key} already exists`, { provider: PROVIDER, key, cause: err });
  if (opts.ifMatch !== undefined && err.code === 'PreconditionFailed') {
    try {
      await s.head(key);
    } catch (h) {
      if (isCloudmuxError(h, 'NotFound')) return new NotFoundError(`no object at ${key} to compare with ifMatch`, { provider: PROVIDER, key, cause: err });
    }
  }
  return err;
}

/** */
export function writtenMeta(s: AzureStore, key: string, size: number, contentType: string, metadata: Record<string, string>, checksums: Checksums, res: { etag?: string; lastModified?: Date; versionId?: string }): ObjectMeta {
  return {
    key,
    size,
    etag: unquote(res.etag),
    version: res.versionId ?? unquote(res.etag),
    lastModified: res.lastModified ?? new Date(),
    contentType,
    metadata,
    checksums: { sha256: checksums.sha256, md5: checksums.md5 },
  };
}
