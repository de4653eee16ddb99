/** S3Store's resumable uploads (src/core/resumable.ts): the multipart upload API, with the upload id in the handle. */
import {
  CloudmuxError, InvalidArgumentError, SHA256_KEY, base64ToHex, checkPart, checkPartsTile, completionSha256, decodeHandle,
  encodeHandle, hexToBase64, throwIfAborted, validateKey, validateMetadata,
} from '../../src/core/index.js';
import type { CompleteUploadOptions, ObjectMeta, SignalOptions, StartUploadOptions, UploadHandle, UploadPartOptions, UploadedPart } from '../../src/core/index.js';
import { bodyChecksumHeaders, unquoteEtag } from './checksums.js';
import { DEFAULT_CONTENT_TYPE, PROVIDER, S3_LIMITS } from './config.js';
import { mapS3Error } from './errors.js';
import { AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, ListPartsCommand, UploadPartCommand } from './sdk.js';
import type { S3Store } from './store.js';
import { copyObject } from './copy.js';

/** What an S3 upload handle holds: the multipart upload and what completion needs to stamp on the object. */
export interface S3UploadHandle {
  key: string;
  uploadId: string;
  size: number;
  partSize: number;
  contentType: string;
  metadata: Record<string, string>;
  /** Set when the SHA-256 went into the metadata at CreateMultipartUpload. */
  sha256?: string;
}

export async function startUpload(s: S3Store, key: string, opts: StartUploadOptions): Promise<UploadHandle> {
  validateKey(key, PROVIDER);
  validateMetadata(opts.metadata, PROVIDER, key);
  if (!Number.isSafeInteger(opts.size) || opts.size < 0) throw new InvalidArgumentError(`size must be a byte count, got ${opts.size}`, { provider: PROVIDER, key });
  const lastPartAllowed = opts.size <= opts.partSize; // a single part may be small
  if (!Number.isSafeInteger(opts.partSize) || (opts.partSize < S3_LIMITS.minPartSize && !lastPartAllowed) || opts.partSize > S3_LIMITS.maxPartSize) {
    throw new InvalidArgumentError(`partSize must be 5 MiB..5 GiB, got ${opts.partSize}`, { provider: PROVIDER, key });
  }
  if (Math.ceil(opts.size / opts.partSize) > S3_LIMITS.maxParts) {
    throw new InvalidArgumentError(`${opts.size} bytes need more than ${S3_LIMITS.maxParts} parts of ${opts.partSize}`, { provider: PROVIDER, key });
  }
  throwIfAborted(opts.signal, { provider: PROVIDER, key });
  const sha256 = opts.sha256?.toLowerCase();
  const metadata = { ...opts.metadata };
  const contentType = opts.contentType ?? DEFAULT_CONTENT_TYPE;
  try {
    const created = await s.client.send(new CreateMultipartUploadCommand({
      Bucket: s.resolved.bucket,
      Key: s.full(key),
      ContentType: contentType,
      Metadata: sha256 ? { ...metadata, [SHA256_KEY]: sha256 } : metadata,
      ChecksumAlgorithm: s.resolved.flexibleChecksums ? 'SHA256' : undefined,
    }), { abortSignal: opts.signal });
    if (!created.UploadId) throw new CloudmuxError('Transient', 'CreateMultipartUpload answered without an UploadId', { provider: PROVIDER, key });
    const handle: S3UploadHandle = { key, uploadId: created.UploadId, size: opts.size, partSize: opts.partSize, contentType, metadata, ...(sha256 ? { sha256 } : {}) };
    return encodeHandle(PROVIDER, { ...handle, bucket: s.resolved.bucket, prefix: s.resolved.prefix });
  } catch (e) {
    throw mapS3Error(e, s.ctx('startUpload', key, { signal: opts.signal }));
  }
}

export async function uploadPart(s: S3Store, handle: UploadHandle, partNumber: number, bytes: Uint8Array, opts: UploadPartOptions = {}): Promise<UploadedPart> {
  const h = uploadHandle(s, handle);
  checkPart(h, partNumber, bytes.byteLength, PROVIDER, h.key);
  throwIfAborted(opts.signal, { provider: PROVIDER, key: h.key });
  const flexible = s.resolved.flexibleChecksums;
  const given = opts.checksums;
  const integrity = flexible && given?.sha256 ? { ChecksumSHA256: hexToBase64(given.sha256) }
    : !flexible && given?.md5 ? { ContentMD5: hexToBase64(given.md5) }
      : bodyChecksumHeaders(bytes, flexible, s.resolved.partMd5);
  try {
    const r = await s.client.send(new UploadPartCommand({
      Bucket: s.resolved.bucket, Key: s.full(h.key), UploadId: h.uploadId, PartNumber: partNumber,
      Body: bytes, ContentLength: bytes.byteLength, ...integrity,
    }), { abortSignal: opts.signal });
    if (!r.ETag) throw new CloudmuxError('Transient', `UploadPart ${partNumber} answered without an ETag`, { provider: PROVIDER, key: h.key });
    const sha = r.ChecksumSHA256 ?? integrity.ChecksumSHA256;
    return { partNumber, size: bytes.byteLength, etag: r.ETag, ...(flexible && sha ? { checksums: { sha256: base64ToHex(sha) } } : {}) };
  } catch (e) {
    throw mapS3Error(e, s.ctx('uploadPart', h.key, { signal: opts.signal }));
  }
}

/** ListParts, every page. NotFound (NoSuchUpload) once the upload is completed, aborted or expired. */
export async function listParts(s: S3Store, handle: UploadHandle, opts: SignalOptions = {}): Promise<UploadedPart[]> {
  const h = uploadHandle(s, handle);
  const parts: UploadedPart[] = [];
  let marker: string | undefined;
  try {
    for (;;) {
      throwIfAborted(opts.signal, { provider: PROVIDER, key: h.key });
      const page = await s.client.send(new ListPartsCommand({
        Bucket: s.resolved.bucket, Key: s.full(h.key), UploadId: h.uploadId, PartNumberMarker: marker,
      }), { abortSignal: opts.signal });
      for (const p of page.Parts ?? []) {
        if (p.PartNumber === undefined) continue;
        parts.push({
          partNumber: p.PartNumber, size: p.Size ?? 0, etag: p.ETag,
          ...(p.ChecksumSHA256 ? { checksums: { sha256: base64ToHex(p.ChecksumSHA256) } } : {}),
        });
      }
      if (!page.IsTruncated || page.NextPartNumberMarker === undefined || page.NextPartNumberMarker === marker) break;
      marker = page.NextPartNumberMarker;
    }
  } catch (e) {
    throw mapS3Error(e, s.ctx('listParts', h.key, { signal: opts.signal }));
  }
  return parts.sort((a, b) => a.partNumber - b.partNumber);
}

/**
 * CompleteMultipartUpload. When the SHA-256 was not known at start, the object is then copied
 * onto itself with the digest in its metadata, pinned to the etag just written (see putMultipart).
 */
export async function completeUpload(s: S3Store, handle: UploadHandle, parts: readonly UploadedPart[], opts: CompleteUploadOptions): Promise<ObjectMeta> {
  const h = uploadHandle(s, handle);
  const key = h.key;
  checkPartsTile(h, parts, PROVIDER, key);
  const sha256 = completionSha256(h.sha256, opts.checksums.sha256, PROVIDER, key);
  throwIfAborted(opts.signal, { provider: PROVIDER, key });
  const fullKey = s.full(key);
  const flexible = s.resolved.flexibleChecksums;
  let etag: string;
  let version: string | undefined;
  try {
    const done = await s.client.send(new CompleteMultipartUploadCommand({
      Bucket: s.resolved.bucket, Key: fullKey, UploadId: h.uploadId,
      MultipartUpload: {
        Parts: parts.map((p) => ({
          PartNumber: p.partNumber, ETag: p.etag,
          ...(flexible && p.checksums?.sha256 ? { ChecksumSHA256: hexToBase64(p.checksums.sha256) } : {}),
        })),
      },
    }), { abortSignal: opts.signal });
    if (!done.ETag) throw new CloudmuxError('Transient', 'CompleteMultipartUpload answered without an ETag', { provider: PROVIDER, key });
    etag = unquoteEtag(done.ETag);
    version = done.VersionId;
  } catch (e) {
    throw mapS3Error(e, s.ctx('completeUpload', key, { signal: opts.signal }));
  }
  const metadata = { ...h.metadata, [SHA256_KEY]: sha256 };
  const written = (): ObjectMeta => ({ key, size: h.size, etag, version, lastModified: new Date(), contentType: h.contentType, metadata, checksums: { sha256 } });
  if (h.sha256 !== undefined) return written();
  try {
    return await copyObject(s, {
      srcFull: fullKey, dstFull: fullKey, dstKey: key, size: h.size, etag,
      replace: { metadata, contentType: h.contentType }, sourceMetadata: metadata, sourceContentType: h.contentType,
    });
  } catch (e) {
    const m = mapS3Error(e, s.ctx('completeUpload', key));
    if (m.code === 'PreconditionFailed') return written(); // overwritten since: last writer wins
    throw m;
  }
}

export async function abortUpload(s: S3Store, handle: UploadHandle, opts: SignalOptions = {}): Promise<void> {
  const h = uploadHandle(s, handle);
  try {
    await s.client.send(new AbortMultipartUploadCommand({ Bucket: s.resolved.bucket, Key: s.full(h.key), UploadId: h.uploadId }), { abortSignal: opts.signal });
  } catch (e) {
    const m = mapS3Error(e, s.ctx('abortUpload', h.key, { signal: opts.signal }));
    if (m.code !== 'NotFound') throw m;
  }
}

/** A handle of this bucket and prefix (one from another store would address another object). */
export function uploadHandle(s: S3Store, handle: UploadHandle): S3UploadHandle {
  const h = decodeHandle<S3UploadHandle & { bucket?: string; prefix?: string }>(handle, PROVIDER);
  if (h.bucket !== s.resolved.bucket || h.prefix !== s.resolved.prefix || typeof h.uploadId !== 'string') {
    throw new InvalidArgumentError(`the upload handle belongs to s3://${String(h.bucket)}/${String(h.prefix)}, not ${s.toString()}`, { provider: PROVIDER, key: h.key });
  }
  validateKey(h.key, PROVIDER);
  return h;
}
