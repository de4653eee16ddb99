import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import type * as GcsSdk from '@google-cloud/storage';
import type { Bucket, File } from '@google-cloud/storage';
import {
  Backoff, copySourceOf, requireCopySource, sleep, InvalidArgumentError, NotFoundError, NotModifiedError, NotSupportedError,
  PreconditionFailedError, SHA256_KEY, bodyBytes, bodyChunks, checkCopy, checkDelete, checkGet, handedOverMd5, checkPut,
  digestBuffer, isReplayableBody, resolveRange, throwIfAborted, validateKey, validatePrefix,
  verifyingTransform, deleteEach, unlessNotFound,
} from '../../src/core/index.js';
import type {
  BlobStore, Body, Capabilities, CloudmuxError, CompleteUploadOptions, CopyOptions, DeleteManyResult, GetOptions, GetResult,
  ListItem, ListOptions, ObjectMeta, PresignOptions, PutOptions, ResumableUploads, SignalOptions, DeleteOptions,
  StartUploadOptions, UpdateMetadataOptions, UploadHandle, UploadPartOptions, UploadedPart,
} from '../../src/core/index.js';
import { checksumsOf, resourceDigests, type GcsObjectResource } from './checksums.js';
import { GCS_LIMITS, PROVIDER, resolveOptions, type GcsStoreOptions, type ResolvedGcsOptions } from './config.js';
import { mapGcsError, type GcsErrorContext } from './errors.js';
import { SessionClient } from './session.js';
import { redactInspection } from '../../src/core/redact.js';
import { etagOf, parseEtag, stringMap } from './resource.js';
import { checkExpected, putResumable } from './upload-session.js';
import * as resumable from './resumable.js';
import * as copying from './copy.js';
import { mediaBody, openMedia } from './media.js';
import { listObjects } from './listing.js';

// The SDK is loaded as CommonJS: its ESM entry makes Node load many more files than its CJS one
// (~50 ms less CPU to load on Node 20). A Storage a caller built with the ESM copy is only called
// through its own methods, so the two copies never meet.
const { IdempotencyStrategy, Storage } = createRequire(import.meta.url)('@google-cloud/storage') as typeof GcsSdk;
type Storage = GcsSdk.Storage;

/** The SDK's request options, as its request decoration takes and returns them. */
export type SdkRequestOptions = Parameters<Storage['makeAuthenticatedRequest']>[0];

/** Generation preconditions of a write, as GCS query parameters. */
export interface WriteConditions {
  ifGenerationMatch?: number | string;
  ifMetagenerationMatch?: number | string;
}

/**
 * A BlobStore over Google Cloud Storage (@google-cloud/storage 7, its retries off).
 *
 * - `version` is the object's generation; `etag` is `<generation>.<metageneration>`, so it changes
 *   on every rewrite of bytes or metadata, and `ifMatch` maps onto the generation preconditions
 *   GCS checks atomically (ifGenerationMatch + ifMetagenerationMatch). `ifNoneMatch: '*'` is
 *   ifGenerationMatch=0.
 * - Bodies up to `singleRequestThreshold` go in one multipart request carrying their crc32c and md5,
 *   so GCS refuses corrupted bytes. Larger bodies stream through a resumable upload in
 *   `chunkSize` chunks; the last chunk is held back until the whole body has been hashed, so an
 *   `expect` mismatch or an abort cancels the session and nothing is written, and the final request
 *   carries `X-Goog-Hash` so GCS checks the whole object.
 * - Resumable uploads fix metadata when the session starts, before the SHA-256 is known, so
 *   `cloudmux_sha256` is added by a patch right after completion, conditional on the new generation
 *   and metageneration 1 (it never lands on someone else's write). Between completion and patch the
 *   object is readable without it, and a process that dies in between leaves it without;
 *   crc32c still covers those bytes.
 */
export class GcsStore implements BlobStore, ResumableUploads {
  readonly provider = PROVIDER;
  readonly capabilities: Capabilities;
  readonly options: ResolvedGcsOptions;
  /** @internal */
  readonly storage: Storage;
  private readonly bucket: Bucket;
  /** @internal */
  readonly sessions = new SessionClient();
  /** @internal Re-sends of a streamed put's resumable chunk, by the part engine (the one backoff; `chunkRetries` re-sends). */
  readonly chunkBackoff: Backoff;

  constructor(options: GcsStoreOptions) {
    this.options = resolveOptions(options);
    this.chunkBackoff = new Backoff({ baseMs: 250, capMs: 10_000, attempts: this.options.chunkRetries + 1 });
    const o = this.options;
    this.storage = o.storage ?? new Storage({
      ...(o.projectId ? { projectId: o.projectId } : {}),
      ...(o.apiEndpoint ? { apiEndpoint: o.apiEndpoint, useAuthWithCustomEndpoint: o.useAuthWithCustomEndpoint } : {}),
      ...(o.keyFilename ? { keyFilename: o.keyFilename } : {}),
      ...(o.credentials ? { credentials: o.credentials } : {}),
      // cloudmux owns retries (CONVENTIONS 3): the SDK makes one attempt per call.
      retryOptions: { autoRetry: false, maxRetries: 0, idempotencyStrategy: IdempotencyStrategy.RetryNever },
    });
    this.bucket = this.storage.bucket(o.bucket);
    this.capabilities = {
      conditionalPut: true,
      versioning: false,
      nativeChecksums: ['crc32c', 'md5'],
      presign: o.presign,
      streaming: true,
      resumableUpload: true,
      multipartPut: true,
      copyFromStore: true,
      conditionalDelete: true,
    };
  }

  // ------------------------------------------------------------------------------------------
  // put

  async put(key: string, body: Body, opts: PutOptions = {}): Promise<ObjectMeta> {
    checkPut(PROVIDER, this.capabilities, key, opts);
    const ctx = this.ctx('put', key, opts.signal, opts.ifNoneMatch === '*');
    const conditions = this.writeConditions(opts.ifNoneMatch, opts.ifMatch);
    if (conditions === undefined) throw await this.ifMatchFailure(key, ctx);
    try {
      const threshold = this.options.singleRequestThreshold;
      if (isReplayableBody(body)) {
        const bytes = bodyBytes(body);
        if (bytes.byteLength <= threshold) return await this.putSingle(key, bytes, opts, conditions);
        return await putResumable(this, key, [], blocksOf(bytes), opts, conditions, ctx);
      }
      // Read up to the threshold: a body that ends by then goes in one request.
      const source = bodyChunks(body)[Symbol.asyncIterator]();
      const head: Buffer[] = [];
      let headBytes = 0;
      for (;;) {
        throwIfAborted(opts.signal, { provider: PROVIDER, key });
        const next = await source.next();
        if (next.done) return await this.putSingle(key, Buffer.concat(head, headBytes), opts, conditions);
        head.push(next.value);
        headBytes += next.value.byteLength;
        if (headBytes > threshold) return await putResumable(this, key, head, source, opts, conditions, ctx);
      }
    } catch (e) {
      const mapped = mapGcsError(e, ctx);
      if (mapped.code === 'PreconditionFailed' && opts.ifMatch !== undefined) throw await this.ifMatchFailure(key, ctx, mapped);
      throw mapped;
    }
  }

  private async putSingle(key: string, data: Buffer, opts: PutOptions, conditions: WriteConditions): Promise<ObjectMeta> {
    // An MD5 handed over in `expect` is not computed again: it goes in the request as md5Hash, and
    // GCS refuses bytes that do not hash to it (as it does for the CRC32C computed here).
    const givenMd5 = handedOverMd5(opts.expect);
    const digests = digestBuffer(data, givenMd5 ? ['crc32c'] : ['md5', 'crc32c']);
    if (givenMd5) digests.md5 = givenMd5;
    checkExpected(opts.expect, digests, key);
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    const file = this.file(key);
    await file.save(data, {
      resumable: false,
      validation: false,
      gzip: false,
      metadata: {
        contentType: opts.contentType ?? 'application/octet-stream',
        metadata: { ...opts.metadata, [SHA256_KEY]: digests.sha256! },
        ...resourceDigests(digests),
      },
      preconditionOpts: conditions,
    });
    return this.toMeta(key, file.metadata as GcsObjectResource);
  }

  // ------------------------------------------------------------------------------------------
  // resumable uploads (src/core/resumable.ts): a resumable session whose URI is the handle

  /** The session commits with its last byte, so the last part waits for completeUpload. */
  readonly deferLastPart = true;

  get multipartThreshold(): number {
    return this.options.singleRequestThreshold;
  }

  uploadPartSize(_size: number): number {
    return this.options.chunkSize;
  }

  async startUpload(key: string, opts: StartUploadOptions): Promise<UploadHandle> {
    return resumable.startUpload(this, key, opts);
  }

  /**
   * Sends part `n` after asking the session how much it holds: parts go in order, and bytes the
   * session already has (a part that was in flight when its sender died) are not sent again.
   */
  async uploadPart(handle: UploadHandle, partNumber: number, bytes: Uint8Array, opts: UploadPartOptions = {}): Promise<UploadedPart> {
    return resumable.uploadPart(this, handle, partNumber, bytes, opts);
  }

  /** The whole parts the session holds (its persisted offset, rounded down to a part). NotFound once complete or cancelled. */
  async listParts(handle: UploadHandle, opts: SignalOptions = {}): Promise<UploadedPart[]> {
    return resumable.listParts(this, handle, opts);
  }

  /**
   * Sends the last part with the total size and `X-Goog-Hash` (GCS checks the whole object's
   * CRC32C/MD5 before it commits), then records `cloudmux_sha256` if it was not known at start.
   */
  async completeUpload(handle: UploadHandle, parts: readonly UploadedPart[], opts: CompleteUploadOptions): Promise<ObjectMeta> {
    return resumable.completeUpload(this, handle, parts, opts);
  }

  async abortUpload(handle: UploadHandle, opts: SignalOptions = {}): Promise<void> {
    return resumable.abortUpload(this, handle, opts);
  }

  // ------------------------------------------------------------------------------------------
  // reads

  async get(key: string, opts: GetOptions = {}): Promise<GetResult> {
    checkGet(PROVIDER, key, opts);
    const ctx = this.ctx('get', key, opts.signal);
    for (let attempt = 0; ; attempt++) {
      const resource = await this.resource(key, ctx);
      const meta = this.toMeta(key, resource);
      if (opts.ifMatch !== undefined && opts.ifMatch !== meta.etag) {
        throw new PreconditionFailedError(`gcs get ${key}: etag is ${meta.etag}, not ${opts.ifMatch}`, { provider: PROVIDER, key });
      }
      if (opts.ifNoneMatch !== undefined && (opts.ifNoneMatch === '*' || opts.ifNoneMatch === meta.etag)) {
        throw new NotModifiedError(`gcs get ${key}: etag matches ifNoneMatch`, { provider: PROVIDER, key });
      }
      const range = opts.range ? resolveRange(opts.range, meta.size, PROVIDER, key) : undefined;
      const verify = opts.verify && !opts.range ? verifyingTransform(meta.checksums, { expectedSize: meta.size, provider: PROVIDER, key }) : undefined;
      // An empty object has no bytes to fetch (and GCS answers 416 to any range over one).
      if (meta.size === 0) return { meta, body: verify ? Readable.from([]).pipe(verify) : Readable.from([]), ...(range ? { range } : {}) };
      let res: IncomingMessage;
      try {
        // Pinned to the generation just read, so the bytes belong to the metadata returned.
        res = await openMedia(this, key, String(resource.generation), range, ctx);
      } catch (e) {
        const mapped = mapGcsError(e, ctx);
        // Overwritten between the metadata read and the media read: read the new one. A key
        // rewritten in a tight loop by other writers can win that race several times in a row on a
        // slow link, so keep trying a while, with a little jitter to fall out of step with them.
        if (mapped.code === 'NotFound' && attempt < GET_OVERWRITE_ATTEMPTS) {
          if (attempt > 0) await sleep(OVERWRITE_BACKOFF.delay(attempt), opts.signal);
          continue;
        }
        throw mapped;
      }
      return { meta, body: mediaBody(res, ctx, verify), ...(range ? { range } : {}) };
    }
  }

  async head(key: string, opts: SignalOptions = {}): Promise<ObjectMeta> {
    validateKey(key, PROVIDER);
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    return this.toMeta(key, await this.resource(key, this.ctx('head', key, opts.signal)));
  }

  // ------------------------------------------------------------------------------------------
  // deletes

  async delete(key: string, opts: DeleteOptions = {}): Promise<void> {
    checkDelete(PROVIDER, this.capabilities, key, opts);
    const ctx = this.ctx('delete', key, opts.signal);
    let conditions: { ifGenerationMatch?: string; ifMetagenerationMatch?: string } = {};
    if (opts.ifMatch !== undefined) {
      const parts = parseEtag(opts.ifMatch);
      if (!parts) {
        // Not one of our etags: it matches no object.
        if (await this.exists(key, ctx)) throw new PreconditionFailedError(`gcs delete ${key}: etag is not ${opts.ifMatch}; not deleted`, { provider: PROVIDER, key });
        return;
      }
      conditions = { ifGenerationMatch: parts.generation, ...(parts.metageneration !== undefined ? { ifMetagenerationMatch: parts.metageneration } : {}) };
    }
    try {
      await this.file(key).delete({ ignoreNotFound: true, ...conditions });
    } catch (e) {
      const mapped = mapGcsError(e, ctx);
      // A condition on an object that is gone: deleted either way.
      if (mapped.code === 'PreconditionFailed' && !(await this.exists(key, ctx))) return;
      throw mapped;
    }
  }

  /**
   * Deletes with `deleteConcurrency` single deletes in flight. The JSON API's batch endpoint would
   * save round trips but is not in the SDK, and each of its parts is still one billed operation.
   */
  async deleteMany(keys: Iterable<string>, opts: SignalOptions = {}): Promise<DeleteManyResult> {
    return deleteEach(keys, this.options.deleteConcurrency, (key) => this.delete(key, opts), PROVIDER);
  }

  // ------------------------------------------------------------------------------------------
  // list

  async *list(opts: ListOptions = {}): AsyncGenerator<ListItem> {
    validatePrefix(opts.prefix ?? '', PROVIDER);
    yield* listObjects(this.bucket, this.options.prefix, opts, this.ctx('list', undefined, opts.signal));
  }

  // ------------------------------------------------------------------------------------------
  // copy and metadata

  async copy(src: string, dst: string, opts: CopyOptions = {}): Promise<ObjectMeta> {
    checkCopy(PROVIDER, this.capabilities, src, dst, opts);
    return copying.copyFrom(this, this, src, dst, opts);
  }

  canCopyFrom(source: BlobStore): boolean {
    return copySourceOf(source, GcsStore, (s) => this.reaches(s)) !== undefined;
  }

  /** objects.rewrite from another GCS store's bucket (token loop for large objects): no bytes through this process. */
  async copyFromStore(source: BlobStore, srcKey: string, dstKey: string, opts: CopyOptions = {}): Promise<ObjectMeta> {
    const from = requireCopySource(this, source, GcsStore, (s) => this.reaches(s), dstKey);
    checkCopy(PROVIDER, this.capabilities, srcKey, dstKey, opts);
    return copying.copyFrom(this, from, srcKey, dstKey, opts);
  }

  /** True when `s` is on the same API endpoint with the same principal: a rewrite sent with this store's credentials can read its bucket. */
  private reaches(s: GcsStore): boolean {
    const a = this.options;
    const b = s.options;
    return a.apiEndpoint === b.apiEndpoint && a.useAuthWithCustomEndpoint === b.useAuthWithCustomEndpoint && copying.sameGcsPrincipal(a, b);
  }

  /**
   * Replaces the user metadata with a patch that nulls removed keys, conditional on the generation
   * and metageneration just read; a concurrent change without `ifMatch` is re-read and re-applied.
   */
  async updateMetadata(key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
    return copying.updateMetadata(this, key, opts);
  }

  async presign(key: string, opts: PresignOptions): Promise<string> {
    validateKey(key, PROVIDER);
    if (!this.capabilities.presign) {
      throw new NotSupportedError('gcs presign needs a service-account key (client_email + private_key) or `presign: true` with IAM signBlob', { provider: PROVIDER, key });
    }
    if (!Number.isSafeInteger(opts.expiresIn) || opts.expiresIn < 1 || opts.expiresIn > GCS_LIMITS.maxPresignSeconds) {
      throw new InvalidArgumentError(`gcs presign: expiresIn must be 1..${GCS_LIMITS.maxPresignSeconds} seconds`, { provider: PROVIDER, key });
    }
    try {
      const [url] = await this.file(key).getSignedUrl({
        version: 'v4',
        action: opts.method === 'GET' ? 'read' : 'write',
        expires: Date.now() + opts.expiresIn * 1000,
        ...(opts.contentType ? { contentType: opts.contentType } : {}),
      });
      return url;
    } catch (e) {
      throw mapGcsError(e, this.ctx('presign', key));
    }
  }

  async close(): Promise<void> {
    // The SDK keeps no sockets of its own; the session client does.
    this.sessions.close();
  }

  toString(): string {
    return `gs://${this.options.bucket}/${this.options.prefix}`;
  }

  // ------------------------------------------------------------------------------------------
  // helpers

  /** @internal */
  name(key: string): string {
    return this.options.prefix + key;
  }

  /** @internal */
  file(key: string): File {
    return this.bucket.file(this.name(key));
  }

  /** @internal */
  ctx(op: string, key: string | undefined, signal?: AbortSignal, createOnly = false): GcsErrorContext {
    return { op, bucket: this.options.bucket, key, signal, createOnly };
  }

  /** @internal */
  async resource(key: string, ctx: GcsErrorContext): Promise<GcsObjectResource> {
    try {
      const [r] = await this.file(key).getMetadata();
      throwIfAborted(ctx.signal, { provider: PROVIDER, key });
      return r as GcsObjectResource;
    } catch (e) {
      throw mapGcsError(e, { ...ctx, key });
    }
  }

  /** @internal */
  async exists(key: string, ctx: GcsErrorContext): Promise<boolean> {
    return (await unlessNotFound(this.resource(key, ctx))) !== undefined;
  }

  /** Generation preconditions for a put; undefined when `ifMatch` is not one of our etags (it can match nothing). */
  private writeConditions(ifNoneMatch: '*' | undefined, ifMatch: string | undefined): WriteConditions | undefined {
    if (ifNoneMatch === '*') return { ifGenerationMatch: 0 };
    if (ifMatch === undefined) return {};
    const parts = parseEtag(ifMatch);
    if (!parts) return undefined;
    return { ifGenerationMatch: parts.generation, ...(parts.metageneration !== undefined ? { ifMetagenerationMatch: parts.metageneration } : {}) };
  }

  /** A failed ifMatch put is NotFound when there is no object, PreconditionFailed otherwise. */
  private async ifMatchFailure(key: string, ctx: GcsErrorContext, cause?: CloudmuxError): Promise<CloudmuxError> {
    if (!(await this.exists(key, ctx))) return new NotFoundError(`gcs put ${key}: no object to compare with ifMatch`, { provider: PROVIDER, key, cause });
    return new PreconditionFailedError(`gcs put ${key}: the etag differs from ifMatch`, { provider: PROVIDER, key, cause });
  }

  /** @internal */
  toMeta(key: string, r: GcsObjectResource): ObjectMeta {
    const metadata = stringMap(r.metadata);
    return {
      key,
      size: Number(r.size ?? 0),
      etag: etagOf(r),
      version: String(r.generation),
      lastModified: new Date(r.updated ?? r.timeCreated ?? 0),
      contentType: r.contentType ?? 'application/octet-stream',
      metadata,
      checksums: checksumsOf(r),
    };
  }
}
redactInspection(GcsStore);

function blocksOf(buf: Buffer): AsyncIterator<Buffer> {
  return (async function* () {
    const step = 1024 * 1024;
    for (let i = 0; i < buf.byteLength; i += step) yield buf.subarray(i, i + step);
  })();
}

/** Metadata-then-media reads of one get before an object rewritten each time in between is reported NotFound. */
const GET_OVERWRITE_ATTEMPTS = 16;
/** Waits between those attempts: short, jittered to fall out of step with the writers. */
const OVERWRITE_BACKOFF = new Backoff({ baseMs: 10, capMs: 160 });

