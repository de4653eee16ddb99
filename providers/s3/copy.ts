/**
 * S3 server-side copy: CopyObject up to 5 GiB, UploadPartCopy above, pinned to the source etag;
 * copy, copyFromStore and updateMetadata of S3Store go through here.
 */
import type { CompletedPart } from '@aws-sdk/client-s3';
import { CloudmuxError, PreconditionFailedError, SHA256_KEY, throwIfAborted, validateKey, validateMetadata } from '../../src/core/index.js';
import type { CopyOptions, ObjectMeta, UpdateMetadataOptions } from '../../src/core/index.js';
import { checksumsFromResponse, quoteEtag, unquoteEtag } from './checksums.js';
import { DEFAULT_CONTENT_TYPE, MiB, PROVIDER, S3_LIMITS, type S3StoreOptions } from './config.js';
import { mapS3Error, type S3ErrorContext } from './errors.js';
import { CompleteMultipartUploadCommand, CopyObjectCommand, CreateMultipartUploadCommand, HeadObjectCommand, UploadPartCopyCommand } from './sdk.js';
import { abortMultipart } from './multipart-put.js';
import type { S3Store } from './store.js';

/** Copies that lose a race with a concurrent writer (the source changed after we read its etag) are redone this often. */
const COPY_RACE_ATTEMPTS = 3;

/** What a copy needs to know about its source, read once by HEAD. */
export interface CopyPlan {
  /** The source's bucket when it is not this store's (a server-side copy from another store). */
  srcBucket?: string;
  srcFull: string;
  dstFull: string;
  dstKey: string;
  size: number;
  /** The source etag the copy is pinned to (CopySourceIfMatch), so bytes and recorded digest agree. */
  etag: string;
  /** Absent: carry the source's metadata and content type over (COPY directive). */
  replace?: { metadata: Record<string, string>; contentType: string };
  sourceMetadata: Record<string, string>;
  sourceContentType: string | undefined;
  ifNoneMatch?: '*';
  signal?: AbortSignal;
}

export function copyFrom(s: S3Store, from: S3Store, src: string, dst: string, opts: CopyOptions): Promise<ObjectMeta> {
  return withCopyRace(opts.sourceIfMatch === undefined, async () => {
    const head = await from.head(src, opts);
    if (opts.sourceIfMatch !== undefined && head.etag !== unquoteEtag(opts.sourceIfMatch)) {
      throw new PreconditionFailedError(`source etag is ${head.etag}, not ${opts.sourceIfMatch}`, { provider: PROVIDER, key: src });
    }
    const replaceMetadata = opts.metadata !== undefined;
    const replace = replaceMetadata || opts.contentType !== undefined
      ? {
        metadata: replaceMetadata ? withDigest(opts.metadata!, head.metadata) : head.metadata,
        contentType: opts.contentType ?? (replaceMetadata ? DEFAULT_CONTENT_TYPE : head.contentType ?? DEFAULT_CONTENT_TYPE),
      }
      : undefined;
    return copyObject(s, {
      ...(from === s ? {} : { srcBucket: from.resolved.bucket }),
      srcFull: from.full(src), dstFull: s.full(dst), dstKey: dst, size: head.size, etag: head.etag, replace,
      sourceMetadata: head.metadata, sourceContentType: head.contentType, ifNoneMatch: opts.ifNoneMatch, signal: opts.signal,
    });
  }, s.ctx('copy', dst, { createOnly: opts.ifNoneMatch === '*', signal: opts.signal }));
}

export async function updateMetadata(s: S3Store, key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
  validateKey(key, PROVIDER);
  validateMetadata(opts.metadata, PROVIDER, key);
  throwIfAborted(opts.signal, { provider: PROVIDER, key });
  return withCopyRace(opts.ifMatch === undefined, async () => {
    const head = await s.head(key, opts);
    if (opts.ifMatch !== undefined && head.etag !== unquoteEtag(opts.ifMatch)) {
      throw new PreconditionFailedError(`etag is ${head.etag}, not ${opts.ifMatch}`, { provider: PROVIDER, key });
    }
    const fullKey = s.full(key);
    return copyObject(s, {
      srcFull: fullKey, dstFull: fullKey, dstKey: key, size: head.size, etag: head.etag,
      replace: { metadata: withDigest(opts.metadata, head.metadata), contentType: opts.contentType ?? head.contentType ?? DEFAULT_CONTENT_TYPE },
      sourceMetadata: head.metadata, sourceContentType: head.contentType, signal: opts.signal,
    });
  }, s.ctx('updateMetadata', key, { signal: opts.signal }));
}

/**
 * Copies pin the source etag read by HEAD, so a concurrent overwrite between HEAD and copy
 * fails with 412 instead of pairing new bytes with old metadata. When the caller did not pin an
 * etag themselves, that race is ours, and the copy is redone.
 */
export async function withCopyRace(redo: boolean, attempt: () => Promise<ObjectMeta>, ctx: S3ErrorContext): Promise<ObjectMeta> {
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (e) {
      const m = mapS3Error(e, ctx);
      if (m.code === 'PreconditionFailed' && redo && i < COPY_RACE_ATTEMPTS) continue;
      throw m;
    }
  }
}

/** CopyObject up to the threshold (5 GiB), UploadPartCopy above. */
export async function copyObject(s: S3Store, plan: CopyPlan): Promise<ObjectMeta> {
  if (plan.size > s.resolved.multipartCopyThreshold) return multipartCopy(s, plan);
  let r;
  try {
    r = await s.client.send(new CopyObjectCommand({
      Bucket: s.resolved.bucket,
      Key: plan.dstFull,
      CopySource: copySource(s, plan.srcFull, plan.srcBucket),
      CopySourceIfMatch: quoteEtag(plan.etag),
      MetadataDirective: plan.replace ? 'REPLACE' : 'COPY',
      Metadata: plan.replace?.metadata,
      ContentType: plan.replace?.contentType,
      IfNoneMatch: plan.ifNoneMatch,
    }), { abortSignal: plan.signal });
  } catch (e) {
    throw await copyError(s, e, plan);
  }
  // A 200 whose body is an <Error> becomes an SDK error; a result without an ETag is treated the same.
  if (!r.CopyObjectResult?.ETag) throw new CloudmuxError('Transient', 'CopyObject answered without a result', { provider: PROVIDER, key: plan.dstKey });
  return copiedMeta(plan, unquoteEtag(r.CopyObjectResult.ETag), r.VersionId, r.CopyObjectResult.LastModified);
}

/** With both CopySourceIfMatch and If-None-Match a 412 is ambiguous: an existing destination means AlreadyExists. */
export async function copyError(s: S3Store, e: unknown, plan: CopyPlan): Promise<CloudmuxError> {
  const m = mapS3Error(e, s.ctx('copy', plan.dstKey, { signal: plan.signal }));
  if (m.code === 'PreconditionFailed' && plan.ifNoneMatch === '*') {
    const exists = await s.client.send(new HeadObjectCommand({ Bucket: s.resolved.bucket, Key: plan.dstFull })).then(() => true, () => false);
    if (exists) return mapS3Error(e, s.ctx('copy', plan.dstKey, { createOnly: true }));
  }
  return m;
}

export function copiedMeta(plan: CopyPlan, etag: string, version: string | undefined, lastModified: Date | undefined): ObjectMeta {
  const metadata = plan.replace?.metadata ?? plan.sourceMetadata;
  return {
    key: plan.dstKey, size: plan.size, etag, version, lastModified: lastModified ?? new Date(),
    contentType: plan.replace?.contentType ?? plan.sourceContentType, metadata: { ...metadata },
    checksums: checksumsFromResponse(metadata, {}),
  };
}

/**
 * Server-side copy of objects above 5 GiB (CopyObject's limit): parts of at least 512 MiB (and
 * few enough for 10,000), each an UploadPartCopy of a byte range pinned to the source etag.
 */
export async function multipartCopy(s: S3Store, plan: CopyPlan): Promise<ObjectMeta> {
  const o = s.resolved;
  const partSize = Math.max(o.partSize, Math.ceil(plan.size / S3_LIMITS.maxParts), plan.size > S3_LIMITS.maxSingleShot ? 512 * MiB : 0);
  const created = await s.client.send(new CreateMultipartUploadCommand({
    Bucket: o.bucket,
    Key: plan.dstFull,
    Metadata: plan.replace?.metadata ?? plan.sourceMetadata,
    ContentType: plan.replace?.contentType ?? plan.sourceContentType,
  }), { abortSignal: plan.signal });
  const uploadId = created.UploadId!;
  try {
    const count = Math.max(1, Math.ceil(plan.size / partSize));
    const parts: CompletedPart[] = new Array<CompletedPart>(count);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < count) {
        const i = next++;
        const start = i * partSize;
        const end = Math.min(plan.size, start + partSize) - 1;
        const r = await s.client.send(new UploadPartCopyCommand({
          Bucket: o.bucket, Key: plan.dstFull, UploadId: uploadId, PartNumber: i + 1,
          CopySource: copySource(s, plan.srcFull, plan.srcBucket),
          CopySourceRange: plan.size === 0 ? undefined : `bytes=${start}-${end}`,
          CopySourceIfMatch: quoteEtag(plan.etag),
        }), { abortSignal: plan.signal });
        if (!r.CopyPartResult?.ETag) throw new CloudmuxError('Transient', `UploadPartCopy ${i + 1} answered without a result`, { provider: PROVIDER, key: plan.dstKey });
        parts[i] = { PartNumber: i + 1, ETag: r.CopyPartResult.ETag };
      }
    };
    await Promise.all(Array.from({ length: Math.min(o.queueSize, count) }, worker));
    const done = await s.client.send(new CompleteMultipartUploadCommand({
      Bucket: o.bucket, Key: plan.dstFull, UploadId: uploadId, MultipartUpload: { Parts: parts }, IfNoneMatch: plan.ifNoneMatch,
    }), { abortSignal: plan.signal });
    if (!done.ETag) throw new CloudmuxError('Transient', 'CompleteMultipartUpload answered without an ETag', { provider: PROVIDER, key: plan.dstKey });
    return copiedMeta(plan, unquoteEtag(done.ETag), done.VersionId, undefined);
  } catch (e) {
    await abortMultipart(s, plan.dstFull, uploadId);
    throw await copyError(s, e, plan);
  }
}

/** `bucket/key`, URL-encoded per segment as S3 expects (a raw `?` would start a query). */
export function copySource(s: S3Store, fullKey: string, bucket = s.resolved.bucket): string {
  return `${bucket}/${fullKey.split('/').map(encodeURIComponent).join('/')}`;
}

/** User metadata with cloudmux's digest carried over from the object being rewritten (unless given). */
export function withDigest(metadata: Record<string, string>, current: Record<string, string>): Record<string, string> {
  const sha = current[SHA256_KEY];
  return sha ? { [SHA256_KEY]: sha, ...metadata } : { ...metadata };
}

/**
 * Whether two stores' credentials are the same principal, as far as can be told without I/O: both
 * the ambient chain (none given), the same provider object, or static keys with the same id.
 */
export function sameCredentials(a: S3StoreOptions['credentials'], b: S3StoreOptions['credentials']): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined || typeof a === 'function' || typeof b === 'function') return false;
  return a.accessKeyId === b.accessKeyId;
}
