import { Readable } from 'node:stream';
import type { GetObjectCommandOutput, HeadObjectCommandOutput } from '@aws-sdk/client-s3';
import {
  PartSource, copySourceOf, requireCopySource, CloudmuxError, MultiHasher, PreconditionFailedError, NotModifiedError, SHA256_KEY,
  bodyBytes, bodyChunks, checkCopy, checkDelete, checkGet, checkPut, compareKeys, digestBuffer, handedOverMd5, hexToBase64,
  InvalidArgumentError, isReplayableBody, joinKey, rangeHeader, resolveRange, throwIfAborted, validateKey, validatePrefix,
  verifyingTransform,
} from '../../src/core/index.js';
import type {
  BlobStore, Body, ByteRange, Capabilities, ChecksumAlgorithm, Checksums, CompleteUploadOptions, CopyOptions, DeleteManyResult, GetOptions, GetResult,
  ListItem, ListOptions, ObjectMeta, PresignOptions, PutOptions, ResumableUploads, SignalOptions, DeleteOptions,
  StartUploadOptions, UpdateMetadataOptions, UploadHandle, UploadPartOptions, UploadedPart,
} from '../../src/core/index.js';
import { bodyChecksumHeaders, checksumsFromResponse, quoteEtag, unquoteEtag, type EtagMd5Policy } from './checksums.js';
import { DEFAULT_CONTENT_TYPE, MiB, PROVIDER, S3_LIMITS, resolveOptions, type ResolvedS3Options, type S3StoreOptions } from './config.js';
import * as copying from './copy.js';
import { mapS3Error, type S3ErrorContext } from './errors.js';
import { FastObjectReader, type ObjectResponse } from './fast-get.js';
import { deleteMany } from './delete-many.js';
import { putMultipart, rejectMismatch } from './multipart-put.js';
import * as resumable from './resumable.js';
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, getSignedUrl } from './sdk.js';
import { ResponseBody } from '../../src/core/response-body.js';
import { S3_CONNECTION_TIMEOUT_MS, resendOnStaleConnection, s3Agents, s3RequestHandlerOptions } from './transport.js';
import { redactInspection } from '../../src/core/redact.js';

/**
 * A BlobStore over AWS S3 and S3-compatible servers (MinIO, R2, Wasabi, Ceph, s3rver).
 *
 * - put: one PutObject up to `partSize`, multipart above, parts uploaded `queueSize` at a time
 *   in bounded memory (≈ (queueSize + 1) × partSize); a failed or aborted multipart upload is
 *   aborted so no parts stay billed.
 * - Every write stores `cloudmux_sha256`; each request body also carries a checksum the server
 *   verifies (x-amz-checksum-sha256 on AWS, Content-MD5 on custom endpoints; over TLS a custom
 *   endpoint's multipart parts go without it, see `partMd5`).
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
  /** @internal */
  readonly resolved: ResolvedS3Options;
  /** @internal */
  readonly client: S3Client;
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
      conditionalDelete: this.resolved.conditionalDelete,
      versioning: false,
      nativeChecksums: this.resolved.flexibleChecksums ? ['sha256'] : ['md5'],
      presign: true,
      streaming: true,
      resumableUpload: true,
      multipartPut: true,
      copyFromStore: true,
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

  /** @internal The bucket key for a store key. */
  full(key: string): string {
    return joinKey(this.resolved.prefix, key);
  }

  /** @internal */
  ctx(op: string, key?: string, extra: Partial<S3ErrorContext> = {}): S3ErrorContext {
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
      const reader = new PartSource(bodyChunks(body), { partSize: this.partSizeFor(opts.size), hasher, signal: opts.signal, provider: PROVIDER, key });
      try {
        const first = (await reader.next()) ?? Buffer.alloc(0);
        if (await reader.atEnd()) return await this.putSingle(key, first, hasher.digest(), opts);
        reader.pushBack(first);
        return await putMultipart(this, key, reader, hasher, opts);
      } finally {
        await reader.close();
      }
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

  // -------------------------------------------------------------------------------------------
  // resumable uploads (src/core/resumable.ts): the multipart upload API, with the upload id in the handle

  get multipartThreshold(): number {
    return this.resolved.partSize;
  }

  uploadPartSize(size: number): number {
    return this.partSizeFor(size);
  }

  get partDigests(): readonly ChecksumAlgorithm[] {
    return this.resolved.flexibleChecksums ? ['sha256'] : this.resolved.partMd5 ? ['md5'] : [];
  }

  async startUpload(key: string, opts: StartUploadOptions): Promise<UploadHandle> {
    return resumable.startUpload(this, key, opts);
  }

  async uploadPart(handle: UploadHandle, partNumber: number, bytes: Uint8Array, opts: UploadPartOptions = {}): Promise<UploadedPart> {
    return resumable.uploadPart(this, handle, partNumber, bytes, opts);
  }

  /** ListParts, every page. NotFound (NoSuchUpload) once the upload is completed, aborted or expired. */
  async listParts(handle: UploadHandle, opts: SignalOptions = {}): Promise<UploadedPart[]> {
    return resumable.listParts(this, handle, opts);
  }

  /** CompleteMultipartUpload; without the SHA-256 known at start, then the digest copy-in-place (see putMultipart). */
  async completeUpload(handle: UploadHandle, parts: readonly UploadedPart[], opts: CompleteUploadOptions): Promise<ObjectMeta> {
    return resumable.completeUpload(this, handle, parts, opts);
  }

  async abortUpload(handle: UploadHandle, opts: SignalOptions = {}): Promise<void> {
    return resumable.abortUpload(this, handle, opts);
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

  async delete(key: string, opts: DeleteOptions = {}): Promise<void> {
    checkDelete(PROVIDER, this.capabilities, key, opts);
    try {
      await this.client.send(new DeleteObjectCommand({
        Bucket: this.resolved.bucket, Key: this.full(key), IfMatch: opts.ifMatch === undefined ? undefined : quoteEtag(opts.ifMatch),
      }), { abortSignal: opts.signal });
    } catch (e) {
      const m = mapS3Error(e, this.ctx('delete', key, { signal: opts.signal }));
      if (m.code === 'NotFound') return;
      // A condition on an object that is gone: deleted either way.
      if (m.code === 'PreconditionFailed') {
        const gone = await this.client.send(new HeadObjectCommand({ Bucket: this.resolved.bucket, Key: this.full(key) }))
          .then(() => false, (h: unknown) => mapS3Error(h, this.ctx('head', key, {})).code === 'NotFound');
        if (gone) return;
      }
      throw m;
    }
  }

  /**
   * DeleteObjects in batches of 1,000. Per-key failures, and whole-batch failures (for every key
   * of the batch), are reported in `errors`; an abort throws.
   */
  async deleteMany(keys: Iterable<string>, opts: SignalOptions = {}): Promise<DeleteManyResult> {
    return deleteMany(this, keys, opts);
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
    return copying.copyFrom(this, this, src, dst, opts);
  }

  canCopyFrom(source: BlobStore): boolean {
    return copySourceOf(source, S3Store, (s) => this.reaches(s)) !== undefined;
  }

  /** CopyObject (UploadPartCopy above 5 GiB) from another S3 store's bucket: no bytes through this process. */
  async copyFromStore(source: BlobStore, srcKey: string, dstKey: string, opts: CopyOptions = {}): Promise<ObjectMeta> {
    const from = requireCopySource(this, source, S3Store, (s) => this.reaches(s), dstKey);
    checkCopy(PROVIDER, this.capabilities, srcKey, dstKey, opts);
    return copying.copyFrom(this, from, srcKey, dstKey, opts);
  }

  /** True when `s` is on the same endpoint and region with the same credentials: CopyObject sent here can read its bucket. */
  private reaches(s: S3Store): boolean {
    const a = this.resolved;
    const b = s.resolved;
    return a.endpoint === b.endpoint && a.region === b.region && copying.sameCredentials(a.credentials, b.credentials);
  }

  async updateMetadata(key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
    return copying.updateMetadata(this, key, opts);
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
redactInspection(S3Store);

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
