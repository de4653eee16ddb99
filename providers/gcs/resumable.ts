/** GcsStore's resumable uploads (src/core/resumable.ts): a resumable session whose URI is the handle. */
import {
  IntegrityError, InvalidArgumentError, NotFoundError, SHA256_KEY, TransientError, checkPart, checkPartsTile, completionSha256, decodeHandle,
  encodeHandle, partCount, partRange, throwIfAborted, validateKey, validateMetadata,
} from '../../src/core/index.js';
import type { CompleteUploadOptions, ObjectMeta, SignalOptions, StartUploadOptions, UploadHandle, UploadPartOptions, UploadedPart } from '../../src/core/index.js';
import { googHashHeader, type GcsObjectResource } from './checksums.js';
import { GCS_LIMITS, PROVIDER } from './config.js';
import { mapGcsError } from './errors.js';
import type { GcsStore } from './store.js';
import { cancelSession, querySession, sendChunk, attachSha256 } from './upload-session.js';

/**
 * What a GCS upload handle holds. The session URI authorizes uploads to this one object for a week
 * without other credentials: a journal that stores it should be kept like the data it describes.
 */
export interface GcsUploadHandle {
  key: string;
  uri: string;
  size: number;
  partSize: number;
  /** Set when the SHA-256 went into the metadata at session start. */
  sha256?: string;
  bucket: string;
  prefix: string;
}

export async function startUpload(s: GcsStore, key: string, opts: StartUploadOptions): Promise<UploadHandle> {
  validateKey(key, PROVIDER);
  validateMetadata(opts.metadata, PROVIDER, key);
  if (!Number.isSafeInteger(opts.size) || opts.size < 0) throw new InvalidArgumentError(`size must be a byte count, got ${opts.size}`, { provider: PROVIDER, key });
  if (!Number.isSafeInteger(opts.partSize) || opts.partSize < 1 || (opts.partSize % GCS_LIMITS.chunkMultiple !== 0 && opts.size > opts.partSize)) {
    throw new InvalidArgumentError(`partSize must be a multiple of 256 KiB, got ${opts.partSize}`, { provider: PROVIDER, key });
  }
  throwIfAborted(opts.signal, { provider: PROVIDER, key });
  const sha256 = opts.sha256?.toLowerCase();
  const ctx = s.ctx('startUpload', key, opts.signal);
  try {
    const [uri] = await s.file(key).createResumableUpload({
      metadata: { contentType: opts.contentType ?? 'application/octet-stream', metadata: { ...opts.metadata, ...(sha256 ? { [SHA256_KEY]: sha256 } : {}) } },
    });
    const handle: GcsUploadHandle = { key, uri, size: opts.size, partSize: opts.partSize, ...(sha256 ? { sha256 } : {}), bucket: s.options.bucket, prefix: s.options.prefix };
    return encodeHandle(PROVIDER, { ...handle });
  } catch (e) {
    throw mapGcsError(e, ctx);
  }
}

/**
 * Sends part `n` after asking the session how much it holds: parts go in order, and bytes the
 * session already has (a part that was in flight when its sender died) are not sent again.
 */
export async function uploadPart(s: GcsStore, handle: UploadHandle, partNumber: number, bytes: Uint8Array, opts: UploadPartOptions = {}): Promise<UploadedPart> {
  const h = uploadHandle(s, handle);
  checkPart(h, partNumber, bytes.byteLength, PROVIDER, h.key);
  if (partNumber === partCount(h.size, h.partSize)) {
    throw new InvalidArgumentError('the last part of a GCS upload goes to completeUpload (deferLastPart)', { provider: PROVIDER, key: h.key });
  }
  const ctx = s.ctx('uploadPart', h.key, opts.signal);
  const { offset: start } = partRange(h.size, h.partSize, partNumber);
  const end = start + bytes.byteLength;
  try {
    const status = await querySession(s, h.uri, ctx);
    if (status.resource) throw new NotFoundError('the upload session is already complete', { provider: PROVIDER, key: h.key });
    if (status.persisted < start) {
      throw new InvalidArgumentError(`GCS parts go in order: the session holds ${status.persisted} bytes, part ${partNumber} starts at ${start}`, { provider: PROVIDER, key: h.key });
    }
    if (status.persisted < end) {
      const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      await sendChunk(s, h.uri, [buf.subarray(status.persisted - start)], status.persisted, undefined, undefined, ctx);
    }
    return { partNumber, size: bytes.byteLength };
  } catch (e) {
    throw mapGcsError(e, ctx);
  }
}

/** The whole parts the session holds (its persisted offset, rounded down to a part). NotFound once complete or cancelled. */
export async function listParts(s: GcsStore, handle: UploadHandle, opts: SignalOptions = {}): Promise<UploadedPart[]> {
  const h = uploadHandle(s, handle);
  const ctx = s.ctx('listParts', h.key, opts.signal);
  let status: { persisted: number; resource?: GcsObjectResource };
  try {
    status = await querySession(s, h.uri, ctx);
  } catch (e) {
    throw mapGcsError(e, ctx);
  }
  if (status.resource) throw new NotFoundError('the upload session is already complete', { provider: PROVIDER, key: h.key });
  const whole = Math.min(Math.floor(status.persisted / h.partSize), partCount(h.size, h.partSize) - 1);
  return Array.from({ length: whole }, (_, i) => ({ partNumber: i + 1, size: h.partSize }));
}

/**
 * Sends the last part with the total size and `X-Goog-Hash` (GCS checks the whole object's
 * CRC32C/MD5 before it commits), then records `cloudmux_sha256` if it was not known at start.
 */
export async function completeUpload(s: GcsStore, handle: UploadHandle, parts: readonly UploadedPart[], opts: CompleteUploadOptions): Promise<ObjectMeta> {
  const h = uploadHandle(s, handle);
  const key = h.key;
  checkPartsTile(h, parts, PROVIDER, key);
  const last = partRange(h.size, h.partSize, parts.length);
  const lastPart = opts.lastPart;
  if (!lastPart || lastPart.byteLength !== last.length) {
    throw new InvalidArgumentError(`completeUpload needs the last part's ${last.length} bytes as lastPart (deferLastPart)`, { provider: PROVIDER, key });
  }
  const sha256 = completionSha256(h.sha256, opts.checksums.sha256, PROVIDER, key);
  throwIfAborted(opts.signal, { provider: PROVIDER, key });
  const ctx = s.ctx('completeUpload', key, opts.signal);
  let resource: GcsObjectResource;
  try {
    const status = await querySession(s, h.uri, ctx);
    if (status.resource) {
      resource = status.resource; // an earlier completion got through; its answer was lost
    } else {
      if (status.persisted < last.offset) {
        // Retryable: a resume lists the parts again and re-sends what is missing.
        throw new TransientError(`the upload session holds ${status.persisted} bytes, the last part starts at ${last.offset}`, { provider: PROVIDER, key });
      }
      const buf = Buffer.from(lastPart.buffer, lastPart.byteOffset, lastPart.byteLength);
      const hash = googHashHeader({ crc32c: opts.checksums.crc32c, md5: opts.checksums.md5 });
      resource = (await sendChunk(s, h.uri, [buf.subarray(status.persisted - last.offset)], status.persisted, h.size, hash, ctx))!;
    }
  } catch (e) {
    throw mapGcsError(e, ctx);
  }
  if (Number(resource.size) !== h.size) throw new IntegrityError(`GCS stored ${String(resource.size)} bytes, expected ${h.size}`, { provider: PROVIDER, key });
  if (h.sha256 !== undefined) return s.toMeta(key, resource);
  return attachSha256(s, key, resource, sha256);
}

export async function abortUpload(s: GcsStore, handle: UploadHandle, opts: SignalOptions = {}): Promise<void> {
  const h = uploadHandle(s, handle);
  throwIfAborted(opts.signal, { provider: PROVIDER, key: h.key });
  await cancelSession(s, h.uri);
}

export function uploadHandle(s: GcsStore, handle: UploadHandle): GcsUploadHandle {
  const h = decodeHandle<GcsUploadHandle>(handle, PROVIDER);
  if (h.bucket !== s.options.bucket || h.prefix !== s.options.prefix || typeof h.uri !== 'string' || !/^https?:\/\//.test(h.uri)) {
    throw new InvalidArgumentError(`the upload handle belongs to gs://${String(h.bucket)}/${String(h.prefix)}, not ${s.toString()}`, { provider: PROVIDER, key: h.key });
  }
  validateKey(h.key, PROVIDER);
  return h;
}
