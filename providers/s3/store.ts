import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import type * as S3 from '@aws-sdk/client-s3';
import type { CompletedPart, GetObjectCommandOutput, HeadObjectCommandOutput } from '@aws-sdk/client-s3';
import type * as Presigner from '@aws-sdk/s3-request-presigner';
import {
  CloudmuxError, IntegrityError, InvalidArgumentError, MultiHasher, PreconditionFailedError, NotModifiedError,
  SHA256_KEY, base64ToHex, bodyBytes, checkPart, checkPartsTile, decodeHandle, encodeHandle, bodyChunks, checkCopy, checkGet, checkPut, checksumMismatches, compareKeys, digestBuffer, handedOverMd5, hexToBase64,
  isReplayableBody, joinKey, rangeHeader, resolveRange, throwIfAborted, validateKey, validateMetadata, validatePrefix,
  verifyingTransform,
} from '../../src/core/index.js';
import type {
  BlobStore, Body, ByteRange, Capabilities, Checksums, CompleteUploadOptions, CopyOptions, DeleteManyResult, GetOptions, GetResult,
  ListItem, ListOptions, ObjectMeta, PresignOptions, PutOptions, ResumableUploads, SignalOptions, StartUploadOptions,
  UpdateMetadataOptions, UploadHandle, UploadPartOptions, UploadedPart,
} from '../../src/core/index.js';
import { bodyChecksumHeaders, checksumsFromResponse, quoteEtag, unquoteEtag, type EtagMd5Policy } from './checksums.js';
import { S3_LIMITS, resolveOptions, type ResolvedS3Options, type S3StoreOptions } from './config.js';
import { mapS3Error, type S3ErrorContext } from './errors.js';
import { FastObjectReader, type ObjectResponse } from './fast-get.js';
import { ResponseBody } from '../../src/core/response-body.js';
import { S3_CONNECTION_TIMEOUT_MS, resendOnStaleConnection, s3Agents, s3RequestHandlerOptions } from './transport.js';

// The SDK is loaded as CommonJS: its ESM entry makes Node load hundreds of dist-es files, its CJS
// one a single bundle (~60 ms less CPU to load on Node 20). Every SDK value in this provider comes
// from here, so a client a caller built with the ESM copy still works: the SDK is duck-typed
// between client and command.
const loadCjs = createRequire(import.meta.url);
const {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CopyObjectCommand, CreateMultipartUploadCommand,
  DeleteObjectCommand, DeleteObjectsCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, ListPartsCommand,
  PutObjectCommand, S3Client, UploadPartCommand, UploadPartCopyCommand,
} = loadCjs('@aws-sdk/client-s3') as typeof S3;
type S3Client = S3.S3Client;
const { getSignedUrl } = loadCjs('@aws-sdk/s3-request-presigner') as typeof Presigner;

const PROVIDER = 's3';
const DEFAULT_CONTENT_TYPE = 'application/octet-stream';
const MiB = 1024 * 1024;
/** Copies that lose a race with a concurrent writer (the source changed after we read its etag) are redone this often. */
const COPY_RACE_ATTEMPTS = 3;

/** What a copy needs to know about its source, read once by HEAD. */
interface CopyPlan {
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

/** What an S3 upload handle holds: the multipart upload and what completion needs to stamp on the object. */
interface S3UploadHandle {
  key: string;
  uploadId: string;
  size: number;
  partSize: number;
  contentType: string;
  metadata: Record<string, string>;
  /** Set when the SHA-256 went into the metadata at CreateMultipartUpload. */
  sha256?: string;
}

/**
 * A BlobStore over AWS S3 and S3-compatible servers (MinIO, R2, Wasabi, Ceph, s3rver).
 *
 * - put: one PutObject up to `partSize`, multipart above, parts uploaded `queueSize` at a time
 *   in bounded memory (≈ (queueSize + 1) × partSize); a failed or aborted multipart upload is
 *   aborted so no parts stay billed.
 * - Every write stores `cloudmux_sha256`; each request body also carries a checksum the server
 *   verifies (x-amz-checksum-sha256 on AWS, Content-MD5 on custom endpoints).
 * - SDK retries are off (maxAttempts 1): the retry layer owns retries. Below it, a safe request
 *   that meets a pooled connection the server had closed is sent once more (transport.ts).
 * - Conditional writes are a declared capability (on for AWS, off for custom endpoints unless set).
 * - get and head skip the SDK's middleware stack (fast-get.ts): the driver signs the request with
 *   the client's own SigV4 signer, addresses it by the client's own endpoint rules (path-style or
 *   virtual-hosted, endpoint path, region), sends it over the same pooled agents, and reads the
 *   answer into the same ObjectMeta / GetResult and the same errors (mapS3Error) as the SDK path.
 *   The SDK path serves them instead when: `fastReads` is false; the client was passed in
 *   (`client`: its middleware and handler are the caller's); `flexibleChecksums` is on (the SDK
 *   validates x-amz-checksum-* of whole-object GETs and asks HEAD for checksums); the endpoint
 *   rules call for anything but SigV4 on this bucket (S3 Express, SigV4a) or fail (no region);
 *   and, from the first one on, when AWS answers that the bucket is in another region (the SDK
 *   follows region redirects). The store sends neither SSE-C keys nor requester-pays headers, on
 *   either path.
 */
export class S3Store implements BlobStore, ResumableUploads {
  readonly provider = PROVIDER;
  readonly capabilities: Capabilities;
  /** The resolved configuration (bucket, prefix, region, endpoint, part sizes). Holds no secrets. */
  readonly options: Readonly<Omit<ResolvedS3Options, 'credentials' | 'client'>>;
  private readonly resolved: ResolvedS3Options;
  private readonly client: S3Client;
  private presignClient: S3Client | undefined;
  private readonly ownsClient: boolean;
  /** Signs and sends get/head itself; undefined when the SDK path serves them (see the class comment). */
  private readonly fast: FastObjectReader | undefined;

  constructor(options: S3StoreOptions) {
    this.resolved = resolveOptions(options);
    const { credentials: _c, client: _cl, ...rest } = this.resolved;
    this.options = rest;
    this.capabilities = {
      conditionalPut: this.resolved.conditionalPut,
      versioning: false,
      nativeChecksums: this.resolved.flexibleChecksums ? ['sha256'] : ['md5'],
      presign: true,
      streaming: true,
      resumableUpload: true,
    };
    this.ownsClient = !this.resolved.client;
    if (this.resolved.client) {
      this.client = this.resolved.client;
      this.fast = undefined;
    } else {
      // One pool for both paths: a get and a put reuse each other's connections.
      const agents = s3Agents();
      this.client = this.makeClient(this.resolved.flexibleChecksums, agents);
      this.fast = this.resolved.fastReads && !this.resolved.flexibleChecksums
        ? new FastObjectReader(this.client, { bucket: this.resolved.bucket, endpoint: this.resolved.endpoint, agents, connectionTimeoutMs: S3_CONNECTION_TIMEOUT_MS })
        : undefined;
    }
  }

  private makeClient(flexible: boolean, agents = s3Agents()): S3Client {
    const o = this.resolved;
    const client = new S3Client({
      region: o.region,
      endpoint: o.endpoint,
      forcePathStyle: o.forcePathStyle,
      credentials: o.credentials,
      // cloudmux owns retries (CONVENTIONS 3): one attempt, so the breaker sees every failure.
      maxAttempts: 1,
      // Third-party servers reject or ignore the SDK's default CRC32 trailers; they get Content-MD5.
      requestChecksumCalculation: flexible ? 'WHEN_SUPPORTED' : 'WHEN_REQUIRED',
      responseChecksumValidation: flexible ? 'WHEN_SUPPORTED' : 'WHEN_REQUIRED',
      followRegionRedirects: o.isAws,
      requestHandler: s3RequestHandlerOptions(agents),
      // Resolve the middleware stack once per command class, not on every send (~0.2 ms CPU a request).
      cacheMiddleware: true,
    });
    resendOnStaleConnection(client);
    return client;
  }

  /** The bucket key for a store key. */
  private full(key: string): string {
    return joinKey(this.resolved.prefix, key);
  }

  private ctx(op: string, key?: string, extra: Partial<S3ErrorContext> = {}): S3ErrorContext {
    return { op, bucket: this.resolved.bucket, key, ...extra };
  }

  // -------------------------------------------------------------------------------------------
  // put

  async put(key: string, body: Body, opts: PutOptions = {}): Promise<ObjectMeta> {
    checkPut(PROVIDER, this.capabilities, key, opts);
    const ctx = this.ctx('put', key, { createOnly: opts.ifNoneMatch === '*', signal: opts.signal });
    try {
      if (isReplayableBody(body)) {
        const buf = bodyBytes(body);
        if (buf.byteLength <= this.resolved.partSize) return await this.putSingle(key, buf, digestBuffer(buf), opts);
      }
      const hasher = new MultiHasher();
      const reader = new PartReader(bodyChunks(body)[Symbol.asyncIterator](), this.partSizeFor(opts.size), hasher, opts.signal);
      const first = (await reader.next()) ?? Buffer.alloc(0);
      if (await reader.atEnd()) return await this.putSingle(key, first, hasher.digest(), opts);
      return await this.putMultipart(key, first, reader, hasher, opts);
    } catch (e) {
      throw mapS3Error(e, ctx);
    }
  }

  /** Parts stay within S3's 10,000-part limit when the size is known; R2 wants them equal, so they never vary within one upload. */
  private partSizeFor(size: number | undefined): number {
    const configured = this.resolved.partSize;
    if (size === undefined || size <= configured * S3_LIMITS.maxParts) return configured;
    return Math.ceil(size / S3_LIMITS.maxParts / MiB) * MiB;
  }

  private async putSingle(key: string, buf: Buffer, digest: Checksums, opts: PutOptions): Promise<ObjectMeta> {
    rejectMismatch(opts.expect, digest, key);
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    const sha256 = digest.sha256!;
    const metadata = { ...opts.metadata, [SHA256_KEY]: sha256 };
    const contentType = opts.contentType ?? DEFAULT_CONTENT_TYPE;
    // An MD5 handed over in `expect` is sent as Content-MD5 rather than computed again: S3 refuses
    // bytes that do not hash to it (BadDigest), the same check where the bytes land.
    const givenMd5 = handedOverMd5(opts.expect);
    const integrity = this.resolved.flexibleChecksums ? { ChecksumSHA256: hexToBase64(sha256) }
      : givenMd5 ? { ContentMD5: hexToBase64(givenMd5) } : bodyChecksumHeaders(buf, false);
    const r = await this.client.send(new PutObjectCommand({
      Bucket: this.resolved.bucket,
      Key: this.full(key),
      Body: buf,
      ContentLength: buf.byteLength,
      ContentType: contentType,
      Metadata: metadata,
      IfNoneMatch: opts.ifNoneMatch,
      IfMatch: opts.ifMatch === undefined ? undefined : quoteEtag(opts.ifMatch),
      ...integrity,
    }), { abortSignal: opts.signal });
    return {
      key, size: buf.byteLength, etag: unquoteEtag(r.ETag), version: r.VersionId, lastModified: new Date(),
      contentType, metadata, checksums: { sha256 },
    };
  }

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
  private async putMultipart(key: string, first: Buffer, reader: PartReader, hasher: MultiHasher, opts: PutOptions): Promise<ObjectMeta> {
    const fullKey = this.full(key);
    const flexible = this.resolved.flexibleChecksums;
    const knownSha = opts.expect?.sha256?.toLowerCase();
    const userMetadata = { ...opts.metadata };
    const contentType = opts.contentType ?? DEFAULT_CONTENT_TYPE;
    const created = await this.client.send(new CreateMultipartUploadCommand({
      Bucket: this.resolved.bucket,
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
      const parts = await this.uploadParts(key, fullKey, uploadId, first, reader, opts.signal);
      digest = hasher.digest();
      size = hasher.bytes;
      rejectMismatch(opts.expect, digest, key);
      throwIfAborted(opts.signal, { provider: PROVIDER, key });
      const done = await this.client.send(new CompleteMultipartUploadCommand({
        Bucket: this.resolved.bucket,
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
      await this.abortMultipart(fullKey, uploadId);
      throw e;
    }
    const sha256 = digest.sha256!;
    const metadata = { ...userMetadata, [SHA256_KEY]: sha256 };
    if (knownSha) {
      return { key, size, etag: completedEtag, version, lastModified: new Date(), contentType, metadata, checksums: { sha256 } };
    }
    // No signal: the bytes are committed; finishing the bookkeeping is better than leaving it half-done.
    try {
      return await this.copyObject({
        srcFull: fullKey, dstFull: fullKey, dstKey: key, size, etag: completedEtag,
        replace: { metadata, contentType }, sourceMetadata: metadata, sourceContentType: contentType,
      });
    } catch (e) {
      const m = mapS3Error(e, this.ctx('put', key));
      // Someone overwrote the key after our upload completed: last writer wins, as for any put.
      if (m.code === 'PreconditionFailed') {
        return { key, size, etag: completedEtag, version, lastModified: new Date(), contentType, metadata, checksums: { sha256 } };
      }
      throw m;
    }
  }

  /** Uploads parts `queueSize` at a time; stops reading at the first failure. Returns them in order. */
  private async uploadParts(key: string, fullKey: string, uploadId: string, first: Buffer, reader: PartReader, signal: AbortSignal | undefined): Promise<CompletedPart[]> {
    const flexible = this.resolved.flexibleChecksums;
    const parts: CompletedPart[] = [];
    const inflight = new Set<Promise<void>>();
    let failure: { error: unknown } | undefined;
    let part: Buffer | undefined = first;
    let partNumber = 0;
    while (part && !failure) {
      throwIfAborted(signal, { provider: PROVIDER, key });
      const n = ++partNumber;
      if (n > S3_LIMITS.maxParts) {
        throw new InvalidArgumentError(`body exceeds ${S3_LIMITS.maxParts} parts of ${reader.partSize} bytes; pass opts.size or a larger partSize`, { provider: PROVIDER, key });
      }
      const bodyPart = part;
      const task: Promise<void> = this.client.send(new UploadPartCommand({
        Bucket: this.resolved.bucket, Key: fullKey, UploadId: uploadId, PartNumber: n,
        Body: bodyPart, ContentLength: bodyPart.byteLength, ...bodyChecksumHeaders(bodyPart, flexible),
      }), { abortSignal: signal }).then((r) => {
        if (!r.ETag) throw new CloudmuxError('Transient', `UploadPart ${n} answered without an ETag`, { provider: PROVIDER, key });
        parts[n - 1] = { PartNumber: n, ETag: r.ETag, ...(flexible ? { ChecksumSHA256: r.ChecksumSHA256 } : {}) };
      }, (error: unknown) => {
        failure ??= { error };
      }).finally(() => {
        inflight.delete(task);
        reader.recycle(bodyPart);
      });
      inflight.add(task);
      part = undefined;
      if (inflight.size >= this.resolved.queueSize) await Promise.race(inflight);
      if (!failure) part = await reader.next();
    }
    await Promise.all(inflight);
    if (failure) throw failure.error;
    return parts;
  }

  /** Best effort: a failed abort (the endpoint lacks it, or is down) must not hide the error that caused it. */
  private async abortMultipart(fullKey: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.resolved.bucket, Key: fullKey, UploadId: uploadId }));
    } catch {
      // A bucket lifecycle rule (AbortIncompleteMultipartUpload) is the backstop; see docs/emulators.md.
    }
  }

  // -------------------------------------------------------------------------------------------
  // resumable uploads (src/core/resumable.ts): the multipart upload API, with the upload id in the handle

  get multipartThreshold(): number {
    return this.resolved.partSize;
  }

  uploadPartSize(size: number): number {
    return this.partSizeFor(size);
  }

  async startUpload(key: string, opts: StartUploadOptions): Promise<UploadHandle> {
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
      const created = await this.client.send(new CreateMultipartUploadCommand({
        Bucket: this.resolved.bucket,
        Key: this.full(key),
        ContentType: contentType,
        Metadata: sha256 ? { ...metadata, [SHA256_KEY]: sha256 } : metadata,
        ChecksumAlgorithm: this.resolved.flexibleChecksums ? 'SHA256' : undefined,
      }), { abortSignal: opts.signal });
      if (!created.UploadId) throw new CloudmuxError('Transient', 'CreateMultipartUpload answered without an UploadId', { provider: PROVIDER, key });
      const handle: S3UploadHandle = { key, uploadId: created.UploadId, size: opts.size, partSize: opts.partSize, contentType, metadata, ...(sha256 ? { sha256 } : {}) };
      return encodeHandle(PROVIDER, { ...handle, bucket: this.resolved.bucket, prefix: this.resolved.prefix });
    } catch (e) {
      throw mapS3Error(e, this.ctx('startUpload', key, { signal: opts.signal }));
    }
  }

  async uploadPart(handle: UploadHandle, partNumber: number, bytes: Uint8Array, opts: UploadPartOptions = {}): Promise<UploadedPart> {
    const h = this.handle(handle);
    checkPart(h, partNumber, bytes.byteLength, PROVIDER, h.key);
    throwIfAborted(opts.signal, { provider: PROVIDER, key: h.key });
    const flexible = this.resolved.flexibleChecksums;
    const given = opts.checksums;
    const integrity = flexible && given?.sha256 ? { ChecksumSHA256: hexToBase64(given.sha256) }
      : !flexible && given?.md5 ? { ContentMD5: hexToBase64(given.md5) }
        : bodyChecksumHeaders(bytes, flexible);
    try {
      const r = await this.client.send(new UploadPartCommand({
        Bucket: this.resolved.bucket, Key: this.full(h.key), UploadId: h.uploadId, PartNumber: partNumber,
        Body: bytes, ContentLength: bytes.byteLength, ...integrity,
      }), { abortSignal: opts.signal });
      if (!r.ETag) throw new CloudmuxError('Transient', `UploadPart ${partNumber} answered without an ETag`, { provider: PROVIDER, key: h.key });
      const sha = r.ChecksumSHA256 ?? integrity.ChecksumSHA256;
      return { partNumber, size: bytes.byteLength, etag: r.ETag, ...(flexible && sha ? { checksums: { sha256: base64ToHex(sha) } } : {}) };
    } catch (e) {
      throw mapS3Error(e, this.ctx('uploadPart', h.key, { signal: opts.signal }));
    }
  }

  /** ListParts, every page. NotFound (NoSuchUpload) once the upload is completed, aborted or expired. */
  async listParts(handle: UploadHandle, opts: SignalOptions = {}): Promise<UploadedPart[]> {
    const h = this.handle(handle);
    const parts: UploadedPart[] = [];
    let marker: string | undefined;
    try {
      for (;;) {
        throwIfAborted(opts.signal, { provider: PROVIDER, key: h.key });
        const page = await this.client.send(new ListPartsCommand({
          Bucket: this.resolved.bucket, Key: this.full(h.key), UploadId: h.uploadId, PartNumberMarker: marker,
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
      throw mapS3Error(e, this.ctx('listParts', h.key, { signal: opts.signal }));
    }
    return parts.sort((a, b) => a.partNumber - b.partNumber);
  }

  /**
   * CompleteMultipartUpload. When the SHA-256 was not known at start, the object is then copied
   * onto itself with the digest in its metadata, pinned to the etag just written (see putMultipart).
   */
  async completeUpload(handle: UploadHandle, parts: readonly UploadedPart[], opts: CompleteUploadOptions): Promise<ObjectMeta> {
    const h = this.handle(handle);
    const key = h.key;
    checkPartsTile(h, parts, PROVIDER, key);
    const sha256 = opts.checksums.sha256.toLowerCase();
    if (h.sha256 !== undefined && h.sha256 !== sha256) {
      throw new IntegrityError(`the upload was started for SHA-256 ${h.sha256}, the bytes have ${sha256}; not completed`, { provider: PROVIDER, key });
    }
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    const fullKey = this.full(key);
    const flexible = this.resolved.flexibleChecksums;
    let etag: string;
    let version: string | undefined;
    try {
      const done = await this.client.send(new CompleteMultipartUploadCommand({
        Bucket: this.resolved.bucket, Key: fullKey, UploadId: h.uploadId,
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
      throw mapS3Error(e, this.ctx('completeUpload', key, { signal: opts.signal }));
    }
    const metadata = { ...h.metadata, [SHA256_KEY]: sha256 };
    const written = (): ObjectMeta => ({ key, size: h.size, etag, version, lastModified: new Date(), contentType: h.contentType, metadata, checksums: { sha256 } });
    if (h.sha256 !== undefined) return written();
    try {
      return await this.copyObject({
        srcFull: fullKey, dstFull: fullKey, dstKey: key, size: h.size, etag,
        replace: { metadata, contentType: h.contentType }, sourceMetadata: metadata, sourceContentType: h.contentType,
      });
    } catch (e) {
      const m = mapS3Error(e, this.ctx('completeUpload', key));
      if (m.code === 'PreconditionFailed') return written(); // overwritten since: last writer wins
      throw m;
    }
  }

  async abortUpload(handle: UploadHandle, opts: SignalOptions = {}): Promise<void> {
    const h = this.handle(handle);
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.resolved.bucket, Key: this.full(h.key), UploadId: h.uploadId }), { abortSignal: opts.signal });
    } catch (e) {
      const m = mapS3Error(e, this.ctx('abortUpload', h.key, { signal: opts.signal }));
      if (m.code !== 'NotFound') throw m;
    }
  }

  /** A handle of this bucket and prefix (one from another store would address another object). */
  private handle(handle: UploadHandle): S3UploadHandle {
    const h = decodeHandle<S3UploadHandle & { bucket?: string; prefix?: string }>(handle, PROVIDER);
    if (h.bucket !== this.resolved.bucket || h.prefix !== this.resolved.prefix || typeof h.uploadId !== 'string') {
      throw new InvalidArgumentError(`the upload handle belongs to s3://${String(h.bucket)}/${String(h.prefix)}, not ${this.toString()}`, { provider: PROVIDER, key: h.key });
    }
    validateKey(h.key, PROVIDER);
    return h;
  }

  // -------------------------------------------------------------------------------------------
  // get / head

  async get(key: string, opts: GetOptions = {}): Promise<GetResult> {
    checkGet(PROVIDER, key, opts);
    const ctx = this.ctx('get', key, { signal: opts.signal });
    let r: ObjectResponse;
    try {
      r = await this.getObject(key, opts);
    } catch (e) {
      const m = mapS3Error(e, ctx);
      // S3 answers 416 to any range over an empty object; the contract reads it as empty.
      if (m.code === 'InvalidRange' && opts.range && ('suffix' in opts.range || opts.range.offset === 0)) {
        const meta = await this.head(key, opts);
        if (meta.size === 0) return { meta, body: Readable.from([]), range: { offset: 0, length: 0 } };
      }
      throw m;
    }
    const src = r.Body as Readable | undefined ?? Readable.from([]);
    try {
      const total = totalSize(r);
      const meta = this.metaFrom(key, r, total);
      // Some compatibles ignore If-Match on GET; checking the etag we got costs nothing.
      if (opts.ifMatch !== undefined && meta.etag !== unquoteEtag(opts.ifMatch)) {
        throw new PreconditionFailedError(`etag is ${meta.etag}, not ${opts.ifMatch}`, { provider: PROVIDER, key });
      }
      if (opts.ifNoneMatch !== undefined && (opts.ifNoneMatch === '*' || meta.etag === unquoteEtag(opts.ifNoneMatch))) {
        throw new NotModifiedError('etag matches ifNoneMatch', { provider: PROVIDER, key });
      }
      if (opts.range && total === 0) {
        src.destroy();
        return { meta, body: Readable.from([]), range: { offset: 0, length: 0 } };
      }
      if (opts.range) {
        const range = servedRange(r, opts.range, total, key);
        return { meta, body: this.wrapBody(src, ctx), range };
      }
      const verify = opts.verify ? verifyingTransform(meta.checksums, { expectedSize: meta.size, provider: PROVIDER, key }) : undefined;
      return { meta, body: this.wrapBody(src, ctx, verify) };
    } catch (e) {
      src.destroy();
      throw mapS3Error(e, ctx);
    }
  }

  /** GetObject, on the fast path when it serves this store (see the class comment), else through the SDK. */
  private async getObject(key: string, opts: GetOptions): Promise<ObjectResponse> {
    const range = opts.range ? rangeHeader(opts.range) : undefined;
    const ifMatch = opts.ifMatch === undefined ? undefined : quoteEtag(opts.ifMatch);
    const ifNoneMatch = opts.ifNoneMatch === undefined ? undefined : quoteEtag(opts.ifNoneMatch);
    if (this.fast) {
      const headers: Record<string, string> = {};
      if (range !== undefined) headers.range = range;
      if (ifMatch !== undefined) headers['if-match'] = ifMatch;
      if (ifNoneMatch !== undefined) headers['if-none-match'] = ifNoneMatch;
      const r = await this.fast.read('GET', this.full(key), headers, opts.signal);
      if (r) return r;
    }
    const r: GetObjectCommandOutput = await this.client.send(new GetObjectCommand({
      Bucket: this.resolved.bucket, Key: this.full(key), Range: range, IfMatch: ifMatch, IfNoneMatch: ifNoneMatch,
    }), { abortSignal: opts.signal });
    return { ...r, Body: r.Body as Readable | undefined };
  }

  /**
   * The response body with its errors mapped into the taxonomy; destroying the returned stream (a
   * reader that stops early) releases the socket.
   */
  private wrapBody(src: Readable, ctx: S3ErrorContext, through?: ReturnType<typeof verifyingTransform>): Readable {
    if (!through) return new ResponseBody(src, (e) => mapS3Error(e, ctx));
    const out = through;
    src.once('error', (e) => out.destroy(mapS3Error(e, ctx)));
    out.once('close', () => {
      if (!src.destroyed) src.destroy();
    });
    src.pipe(out);
    return out;
  }

  async head(key: string, opts: SignalOptions = {}): Promise<ObjectMeta> {
    validateKey(key, PROVIDER);
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    try {
      const r = (this.fast && await this.fast.read('HEAD', this.full(key), {}, opts.signal)) || await this.client.send(new HeadObjectCommand({
        Bucket: this.resolved.bucket,
        Key: this.full(key),
        ChecksumMode: this.resolved.flexibleChecksums ? 'ENABLED' : undefined,
      }), { abortSignal: opts.signal });
      return this.metaFrom(key, r, r.ContentLength ?? 0);
    } catch (e) {
      throw mapS3Error(e, this.ctx('head', key, { signal: opts.signal }));
    }
  }

  private metaFrom(key: string, r: ObjectResponse | HeadObjectCommandOutput, size: number): ObjectMeta {
    const metadata = { ...r.Metadata };
    return {
      key,
      size,
      etag: unquoteEtag(r.ETag),
      version: r.VersionId,
      lastModified: r.LastModified ?? new Date(0),
      contentType: r.ContentType,
      metadata,
      checksums: checksumsFromResponse(metadata, r, this.etagPolicy),
    };
  }

  /** When a get/head answer's ETag counts as the MD5 (see S3StoreOptions.etagMd5). */
  private get etagPolicy(): EtagMd5Policy {
    return !this.resolved.etagMd5 ? 'never' : this.resolved.isAws ? 'aws' : 'plain';
  }

  // -------------------------------------------------------------------------------------------
  // delete

  async delete(key: string, opts: SignalOptions = {}): Promise<void> {
    validateKey(key, PROVIDER);
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.resolved.bucket, Key: this.full(key) }), { abortSignal: opts.signal });
    } catch (e) {
      const m = mapS3Error(e, this.ctx('delete', key, { signal: opts.signal }));
      if (m.code !== 'NotFound') throw m;
    }
  }

  /**
   * DeleteObjects in batches of 1,000. Per-key failures, and whole-batch failures (for every key
   * of the batch), are reported in `errors`; an abort throws.
   */
  async deleteMany(keys: Iterable<string>, opts: SignalOptions = {}): Promise<DeleteManyResult> {
    const result: DeleteManyResult = { deleted: [], errors: [] };
    let batch: string[] = [];
    const flush = async (): Promise<void> => {
      const keysOfBatch = batch;
      batch = [];
      if (keysOfBatch.length === 0) return;
      throwIfAborted(opts.signal, { provider: PROVIDER });
      try {
        const r = await this.client.send(new DeleteObjectsCommand({
          Bucket: this.resolved.bucket,
          Delete: { Objects: keysOfBatch.map((k) => ({ Key: this.full(k) })), Quiet: true },
        }), { abortSignal: opts.signal });
        const failed = new Map<string, Error>();
        for (const err of r.Errors ?? []) {
          const k = err.Key?.startsWith(this.resolved.prefix) ? err.Key.slice(this.resolved.prefix.length) : err.Key ?? '';
          if (err.Code === 'NoSuchKey') continue;
          failed.set(k, mapS3Error({ name: err.Code, Code: err.Code, message: err.Message, $metadata: {} }, this.ctx('deleteMany', k)));
        }
        for (const k of keysOfBatch) {
          const error = failed.get(k);
          if (error) result.errors.push({ key: k, error });
          else result.deleted.push(k);
        }
      } catch (e) {
        const m = mapS3Error(e, this.ctx('deleteMany', undefined, { signal: opts.signal }));
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

  // -------------------------------------------------------------------------------------------
  // list

  async *list(opts: ListOptions = {}): AsyncGenerator<ListItem> {
    const prefix = opts.prefix ?? '';
    validatePrefix(prefix, PROVIDER);
    throwIfAborted(opts.signal, { provider: PROVIDER });
    const strip = this.resolved.prefix.length;
    const startAfter = opts.startAfter ? this.full(opts.startAfter) : undefined;
    let token: string | undefined;
    do {
      throwIfAborted(opts.signal, { provider: PROVIDER });
      let page;
      try {
        page = await this.client.send(new ListObjectsV2Command({
          Bucket: this.resolved.bucket,
          Prefix: this.resolved.prefix + prefix || undefined,
          Delimiter: opts.delimiter || undefined,
          // S3 ignores StartAfter once a continuation token is given; send it only on the first page.
          StartAfter: token ? undefined : startAfter,
          ContinuationToken: token,
          MaxKeys: opts.pageSize,
        }), { abortSignal: opts.signal });
      } catch (e) {
        throw mapS3Error(e, this.ctx('list', prefix, { signal: opts.signal }));
      }
      const items: ListItem[] = [];
      for (const o of page.Contents ?? []) {
        if (!o.Key) continue;
        items.push({ type: 'object', key: o.Key.slice(strip), size: o.Size ?? 0, etag: unquoteEtag(o.ETag), lastModified: o.LastModified ?? new Date(0) });
      }
      for (const p of page.CommonPrefixes ?? []) if (p.Prefix) items.push({ type: 'prefix', prefix: p.Prefix.slice(strip) });
      // S3 returns objects and common prefixes as two lists; within one page both are in key order.
      items.sort((a, b) => compareKeys(a.type === 'object' ? a.key : a.prefix, b.type === 'object' ? b.key : b.prefix));
      yield* items;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  // -------------------------------------------------------------------------------------------
  // copy / updateMetadata

  async copy(src: string, dst: string, opts: CopyOptions = {}): Promise<ObjectMeta> {
    checkCopy(PROVIDER, this.capabilities, src, dst, opts);
    return this.withCopyRace(opts.sourceIfMatch === undefined, async () => {
      const head = await this.head(src, opts);
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
      return this.copyObject({
        srcFull: this.full(src), dstFull: this.full(dst), dstKey: dst, size: head.size, etag: head.etag, replace,
        sourceMetadata: head.metadata, sourceContentType: head.contentType, ifNoneMatch: opts.ifNoneMatch, signal: opts.signal,
      });
    }, this.ctx('copy', dst, { createOnly: opts.ifNoneMatch === '*', signal: opts.signal }));
  }

  async updateMetadata(key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
    validateKey(key, PROVIDER);
    validateMetadata(opts.metadata, PROVIDER, key);
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    return this.withCopyRace(opts.ifMatch === undefined, async () => {
      const head = await this.head(key, opts);
      if (opts.ifMatch !== undefined && head.etag !== unquoteEtag(opts.ifMatch)) {
        throw new PreconditionFailedError(`etag is ${head.etag}, not ${opts.ifMatch}`, { provider: PROVIDER, key });
      }
      const fullKey = this.full(key);
      return this.copyObject({
        srcFull: fullKey, dstFull: fullKey, dstKey: key, size: head.size, etag: head.etag,
        replace: { metadata: withDigest(opts.metadata, head.metadata), contentType: opts.contentType ?? head.contentType ?? DEFAULT_CONTENT_TYPE },
        sourceMetadata: head.metadata, sourceContentType: head.contentType, signal: opts.signal,
      });
    }, this.ctx('updateMetadata', key, { signal: opts.signal }));
  }

  /**
   * Copies pin the source etag read by HEAD, so a concurrent overwrite between HEAD and copy
   * fails with 412 instead of pairing new bytes with old metadata. When the caller did not pin an
   * etag themselves, that race is ours, and the copy is redone.
   */
  private async withCopyRace(redo: boolean, attempt: () => Promise<ObjectMeta>, ctx: S3ErrorContext): Promise<ObjectMeta> {
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
  private async copyObject(plan: CopyPlan): Promise<ObjectMeta> {
    if (plan.size > this.resolved.multipartCopyThreshold) return this.multipartCopy(plan);
    let r;
    try {
      r = await this.client.send(new CopyObjectCommand({
        Bucket: this.resolved.bucket,
        Key: plan.dstFull,
        CopySource: this.copySource(plan.srcFull),
        CopySourceIfMatch: quoteEtag(plan.etag),
        MetadataDirective: plan.replace ? 'REPLACE' : 'COPY',
        Metadata: plan.replace?.metadata,
        ContentType: plan.replace?.contentType,
        IfNoneMatch: plan.ifNoneMatch,
      }), { abortSignal: plan.signal });
    } catch (e) {
      throw await this.copyError(e, plan);
    }
    // A 200 whose body is an <Error> becomes an SDK error; a result without an ETag is treated the same.
    if (!r.CopyObjectResult?.ETag) throw new CloudmuxError('Transient', 'CopyObject answered without a result', { provider: PROVIDER, key: plan.dstKey });
    return this.copiedMeta(plan, unquoteEtag(r.CopyObjectResult.ETag), r.VersionId, r.CopyObjectResult.LastModified);
  }

  /** With both CopySourceIfMatch and If-None-Match a 412 is ambiguous: an existing destination means AlreadyExists. */
  private async copyError(e: unknown, plan: CopyPlan): Promise<CloudmuxError> {
    const m = mapS3Error(e, this.ctx('copy', plan.dstKey, { signal: plan.signal }));
    if (m.code === 'PreconditionFailed' && plan.ifNoneMatch === '*') {
      const exists = await this.client.send(new HeadObjectCommand({ Bucket: this.resolved.bucket, Key: plan.dstFull })).then(() => true, () => false);
      if (exists) return mapS3Error(e, this.ctx('copy', plan.dstKey, { createOnly: true }));
    }
    return m;
  }

  private copiedMeta(plan: CopyPlan, etag: string, version: string | undefined, lastModified: Date | undefined): ObjectMeta {
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
  private async multipartCopy(plan: CopyPlan): Promise<ObjectMeta> {
    const o = this.resolved;
    const partSize = Math.max(o.partSize, Math.ceil(plan.size / S3_LIMITS.maxParts), plan.size > S3_LIMITS.maxSingleShot ? 512 * MiB : 0);
    const created = await this.client.send(new CreateMultipartUploadCommand({
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
          const r = await this.client.send(new UploadPartCopyCommand({
            Bucket: o.bucket, Key: plan.dstFull, UploadId: uploadId, PartNumber: i + 1,
            CopySource: this.copySource(plan.srcFull),
            CopySourceRange: plan.size === 0 ? undefined : `bytes=${start}-${end}`,
            CopySourceIfMatch: quoteEtag(plan.etag),
          }), { abortSignal: plan.signal });
          if (!r.CopyPartResult?.ETag) throw new CloudmuxError('Transient', `UploadPartCopy ${i + 1} answered without a result`, { provider: PROVIDER, key: plan.dstKey });
          parts[i] = { PartNumber: i + 1, ETag: r.CopyPartResult.ETag };
        }
      };
      await Promise.all(Array.from({ length: Math.min(o.queueSize, count) }, worker));
      const done = await this.client.send(new CompleteMultipartUploadCommand({
        Bucket: o.bucket, Key: plan.dstFull, UploadId: uploadId, MultipartUpload: { Parts: parts }, IfNoneMatch: plan.ifNoneMatch,
      }), { abortSignal: plan.signal });
      if (!done.ETag) throw new CloudmuxError('Transient', 'CompleteMultipartUpload answered without an ETag', { provider: PROVIDER, key: plan.dstKey });
      return this.copiedMeta(plan, unquoteEtag(done.ETag), done.VersionId, undefined);
    } catch (e) {
      await this.abortMultipart(plan.dstFull, uploadId);
      throw await this.copyError(e, plan);
    }
  }

  /** `bucket/key`, URL-encoded per segment as S3 expects (a raw `?` would start a query). */
  private copySource(fullKey: string): string {
    return `${this.resolved.bucket}/${fullKey.split('/').map(encodeURIComponent).join('/')}`;
  }

  // -------------------------------------------------------------------------------------------
  // presign / close

  async presign(key: string, opts: PresignOptions): Promise<string> {
    validateKey(key, PROVIDER);
    if (!Number.isSafeInteger(opts.expiresIn) || opts.expiresIn < 1 || opts.expiresIn > S3_LIMITS.maxPresignSeconds) {
      throw new InvalidArgumentError(`expiresIn must be 1..${S3_LIMITS.maxPresignSeconds} seconds, got ${opts.expiresIn}`, { provider: PROVIDER, key });
    }
    // A presigned PUT must not carry a checksum of an empty body, which the SDK's flexible
    // checksums would add; a WHEN_REQUIRED client signs none.
    const client = this.ownsClient ? (this.presignClient ??= this.makeClient(false)) : this.client;
    const input = { Bucket: this.resolved.bucket, Key: this.full(key) };
    const command = opts.method === 'GET'
      ? new GetObjectCommand(input)
      : new PutObjectCommand({ ...input, ContentType: opts.contentType });
    try {
      return await getSignedUrl(client, command, { expiresIn: opts.expiresIn });
    } catch (e) {
      throw mapS3Error(e, this.ctx('presign', key));
    }
  }

  async close(): Promise<void> {
    if (this.ownsClient) this.client.destroy();
    this.presignClient?.destroy();
    this.presignClient = undefined;
  }

  toString(): string {
    const o = this.resolved;
    return `s3://${o.bucket}/${o.prefix}${o.endpoint ? `?endpoint=${o.endpoint}` : ''}`;
  }
}

/** User metadata with cloudmux's digest carried over from the object being rewritten (unless given). */
function withDigest(metadata: Record<string, string>, current: Record<string, string>): Record<string, string> {
  const sha = current[SHA256_KEY];
  return sha ? { [SHA256_KEY]: sha, ...metadata } : { ...metadata };
}

function rejectMismatch(expect: Checksums | undefined, actual: Checksums, key: string): void {
  if (expect && checksumMismatches(expect, actual).length > 0) {
    throw new IntegrityError('body does not match the expected checksums; nothing was written', { provider: PROVIDER, key });
  }
}

/** Size of the whole object from a (possibly ranged) GET answer. */
function totalSize(r: ObjectResponse): number {
  const m = /\/(\d+)\s*$/.exec(r.ContentRange ?? '');
  return m ? Number(m[1]) : (r.ContentLength ?? 0);
}

/**
 * The range the server actually sent. A server that ignored or misread the Range header (s3rver
 * reads `bytes=-N` as `bytes=0-N`) is caught here instead of handing back the wrong bytes.
 */
function servedRange(r: ObjectResponse, asked: ByteRange, total: number, key: string): { offset: number; length: number } {
  const want = resolveRange(asked, total, PROVIDER, key);
  const m = /^bytes (\d+)-(\d+)\//.exec(r.ContentRange ?? '');
  const got = m ? { offset: Number(m[1]), length: Number(m[2]) - Number(m[1]) + 1 } : { offset: 0, length: r.ContentLength ?? 0 };
  if (got.offset !== want.offset || got.length !== want.length) {
    throw new CloudmuxError('ProviderError', `asked for bytes ${want.offset}+${want.length}, the server sent ${got.offset}+${got.length}`, { provider: PROVIDER, key });
  }
  return want;
}

/**
 * Cuts a byte stream into parts of exactly `partSize` bytes (the last may be shorter), one copy per
 * byte, hashing as bytes arrive. Part buffers are recycled once their upload has settled: the
 * SDK's HTTP layer keeps a reference to the last body sent on each keep-alive socket, so fresh
 * buffers per part would hold up to one extra part per socket; a pool bounds memory at
 * (parts in flight + 1) × partSize whatever the layers below retain.
 */
class PartReader {
  private pending: Buffer | undefined;
  private done = false;
  private readonly free: Buffer[] = [];
  private readonly pooled = new WeakSet<ArrayBufferLike>();

  constructor(private readonly source: AsyncIterator<Buffer>, readonly partSize: number, private readonly hasher: MultiHasher, private readonly signal: AbortSignal | undefined) {}

  private async pull(): Promise<Buffer | undefined> {
    if (this.pending) {
      const p = this.pending;
      this.pending = undefined;
      return p;
    }
    if (this.done) return undefined;
    throwIfAborted(this.signal, { provider: PROVIDER });
    let r: IteratorResult<Buffer>;
    try {
      r = await this.source.next();
    } catch (e) {
      if (e instanceof CloudmuxError) throw e;
      throw new CloudmuxError('ProviderError', `reading the body failed: ${(e as Error)?.message ?? String(e)}`, { provider: PROVIDER, cause: e });
    }
    if (r.done) {
      this.done = true;
      return undefined;
    }
    this.hasher.update(r.value);
    return r.value;
  }

  private allocate(): Buffer {
    const reused = this.free.pop();
    if (reused) return reused;
    const buf = Buffer.allocUnsafeSlow(this.partSize);
    this.pooled.add(buf.buffer);
    return buf;
  }

  /** Hands a part's memory back once nothing will read it again (its request has settled). */
  recycle(part: Buffer): void {
    if (this.pooled.has(part.buffer)) this.free.push(Buffer.from(part.buffer, 0, this.partSize));
  }

  /** The next part, or undefined when the body is exhausted. */
  async next(): Promise<Buffer | undefined> {
    let buf: Buffer | undefined;
    let have = 0;
    while (have < this.partSize) {
      const c = await this.pull();
      if (!c) break;
      buf ??= this.allocate();
      const take = Math.min(this.partSize - have, c.byteLength);
      c.copy(buf, have, 0, take);
      have += take;
      if (take < c.byteLength) this.pending = c.subarray(take);
    }
    if (!buf) return undefined;
    return have === this.partSize ? buf : buf.subarray(0, have);
  }

  /** True when no byte is left (reads ahead one chunk to know). */
  async atEnd(): Promise<boolean> {
    const c = await this.pull();
    if (!c) return true;
    this.pending = c;
    return false;
  }
}
