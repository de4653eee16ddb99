/** S3Store's multipart put: CreateMultipartUpload, parts through the part engine, completion, and the digest copy-in-place. */
import type * as S3 from '@aws-sdk/client-s3';
import type { CompletedPart } from '@aws-sdk/client-s3';
import { Backoff, PartSource, uploadParts, CloudmuxError, IntegrityError, InvalidArgumentError, MultiHasher, SHA256_KEY, checksumMismatches, throwIfAborted } from '../../src/core/index.js';
import type { Checksums, ObjectMeta, PutOptions } from '../../src/core/index.js';
import { bodyChecksumHeaders, quoteEtag, unquoteEtag } from './checksums.js';
import { DEFAULT_CONTENT_TYPE, PROVIDER, S3_LIMITS } from './config.js';
import { mapS3Error } from './errors.js';
import { AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, UploadPartCommand } from './sdk.js';
import type { S3Store } from './store.js';
import { copyObject } from './copy.js';

/** Retries of one part of a multipart upload, in place (its bytes are in memory). */
const PART_BACKOFF = new Backoff({ baseMs: 200, capMs: 5_000, attempts: 4 });

/**
 * Multipart upload. The SHA-256 of a stream is only known after its last byte, but S3 fixes an
 * object's metadata at CreateMultipartUpload. Two ways out, both correct:
 * - the caller passed `expect.sha256` (the replication copier does): it goes into the metadata
 *   up front and the upload is aborted, writing nothing, if the bytes disagree;
 * - otherwise, after CompleteMultipartUpload, the object is copied onto itself with
 *   MetadataDirective REPLACE (UploadPartCopy above 5 GiB), pinned to the etag just written
 *   (CopySourceIfMatch) so a concurrent writer's object is never stamped with our digest. This
 *   is server-side (no bytes move through us) and costs one extra request. Between the two
 *   requests readers see the new bytes without `cloudmux_sha256`; should the copy fail, the put
 *   fails and a retry rewrites the object.
 * Temporary keys plus a final copy would avoid that window but double the server-side copy for
 * every object and leave garbage on a crash, so we do not do that.
 */
export async function putMultipart(s: S3Store, key: string, reader: PartSource, hasher: MultiHasher, opts: PutOptions): Promise<ObjectMeta> {
  const fullKey = s.full(key);
  const flexible = s.resolved.flexibleChecksums;
  const knownSha = opts.expect?.sha256?.toLowerCase();
  const userMetadata = { ...opts.metadata };
  const contentType = opts.contentType ?? DEFAULT_CONTENT_TYPE;
  const created = await s.client.send(new CreateMultipartUploadCommand({
    Bucket: s.resolved.bucket,
    Key: fullKey,
    ContentType: contentType,
    Metadata: knownSha ? { ...userMetadata, [SHA256_KEY]: knownSha } : userMetadata,
    ChecksumAlgorithm: flexible ? 'SHA256' : undefined,
  }), { abortSignal: opts.signal });
  const uploadId = created.UploadId!;
  let completedEtag: string;
  let version: string | undefined;
  let digest: Checksums;
  let size: number;
  try {
    const parts = await sendParts(s, key, fullKey, uploadId, reader, opts.signal);
    digest = hasher.digest();
    size = hasher.bytes;
    rejectMismatch(opts.expect, digest, key);
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    const done = await s.client.send(new CompleteMultipartUploadCommand({
      Bucket: s.resolved.bucket,
      Key: fullKey,
      UploadId: uploadId,
      MultipartUpload: { Parts: parts },
      IfNoneMatch: opts.ifNoneMatch,
      IfMatch: opts.ifMatch === undefined ? undefined : quoteEtag(opts.ifMatch),
    }), { abortSignal: opts.signal });
    // The SDK turns a 200 with an <Error> body into an error; an answer without an ETag is the same failure in disguise.
    if (!done.ETag) throw new CloudmuxError('Transient', 'CompleteMultipartUpload answered without an ETag', { provider: PROVIDER, key });
    completedEtag = unquoteEtag(done.ETag);
    version = done.VersionId;
  } catch (e) {
    await abortMultipart(s, fullKey, uploadId);
    throw e;
  }
  const sha256 = digest.sha256!;
  const metadata = { ...userMetadata, [SHA256_KEY]: sha256 };
  if (knownSha) {
    return { key, size, etag: completedEtag, version, lastModified: new Date(), contentType, metadata, checksums: { sha256 } };
  }
  // No signal: the bytes are committed; finishing the bookkeeping is better than leaving it half-done.
  try {
    return await copyObject(s, {
      srcFull: fullKey, dstFull: fullKey, dstKey: key, size, etag: completedEtag,
      replace: { metadata, contentType }, sourceMetadata: metadata, sourceContentType: contentType,
    });
  } catch (e) {
    const m = mapS3Error(e, s.ctx('put', key));
    // Someone overwrote the key after our upload completed: last writer wins, as for any put.
    if (m.code === 'PreconditionFailed') {
      return { key, size, etag: completedEtag, version, lastModified: new Date(), contentType, metadata, checksums: { sha256 } };
    }
    throw m;
  }
}

/**
 * Uploads parts `queueSize` at a time through the part engine (src/core/part-upload.ts): a part
 * that fails retryably (a reset, a 503) is sent again in place, the others keep going; the first
 * part that fails for good stops the rest. Returns them in order.
 */
export async function sendParts(s: S3Store, key: string, fullKey: string, uploadId: string, reader: PartSource, signal: AbortSignal | undefined): Promise<CompletedPart[]> {
  const flexible = s.resolved.flexibleChecksums;
  const partSize = reader.sizeAt(0);
  const { sent } = await uploadParts<ReturnType<typeof bodyChecksumHeaders>, CompletedPart>(reader, async (part) => {
    const ctx = s.ctx('put', key, { signal: part.signal });
    let r: S3.UploadPartCommandOutput;
    try {
      r = await s.client.send(new UploadPartCommand({
        Bucket: s.resolved.bucket, Key: fullKey, UploadId: uploadId, PartNumber: part.number,
        Body: part.bytes, ContentLength: part.bytes.byteLength, ...part.prepared,
      }), { abortSignal: part.signal });
    } catch (e) {
      throw mapS3Error(e, ctx);
    }
    if (!r.ETag) throw new CloudmuxError('Transient', `UploadPart ${part.number} answered without an ETag`, { provider: PROVIDER, key });
    return { PartNumber: part.number, ETag: r.ETag, ...(flexible ? { ChecksumSHA256: r.ChecksumSHA256 } : {}) } satisfies CompletedPart;
  }, {
    concurrency: s.resolved.queueSize,
    backoff: PART_BACKOFF,
    signal,
    maxParts: S3_LIMITS.maxParts,
    tooManyParts: () => new InvalidArgumentError(`body exceeds ${S3_LIMITS.maxParts} parts of ${partSize} bytes; pass opts.size or a larger partSize`, { provider: PROVIDER, key }),
    // Content-MD5 (or the flexible SHA-256) of each part, once: S3 refuses a part whose bytes do
    // not hash to it. Over TLS a custom endpoint gets no MD5 (partMd5: auto).
    prepare: ({ bytes }) => bodyChecksumHeaders(bytes, flexible, s.resolved.partMd5),
  });
  return [...sent.keys()].sort((a, b) => a - b).map((n) => sent.get(n)!);
}

/** Best effort: a failed abort (the endpoint lacks it, or is down) must not hide the error that caused it. */
export async function abortMultipart(s: S3Store, fullKey: string, uploadId: string): Promise<void> {
  try {
    await s.client.send(new AbortMultipartUploadCommand({ Bucket: s.resolved.bucket, Key: fullKey, UploadId: uploadId }));
  } catch {
    // A bucket lifecycle rule (AbortIncompleteMultipartUpload) is the backstop; see docs/emulators.md.
  }
}

export function rejectMismatch(expect: Checksums | undefined, actual: Checksums, key: string): void {
  if (expect && checksumMismatches(expect, actual).length > 0) {
    throw new IntegrityError('body does not match the expected checksums; nothing was written', { provider: PROVIDER, key });
  }
}
