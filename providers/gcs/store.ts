import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import { PassThrough, Readable, type Transform } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type * as GcsSdk from '@google-cloud/storage';
import type { Bucket, File, FileMetadata } from '@google-cloud/storage';
import {
  AlreadyExistsError, IntegrityError, InvalidArgumentError, MultiHasher, NotFoundError, NotModifiedError, NotSupportedError,
  PreconditionFailedError, ProviderError, SHA256_KEY, TransientError, abortedError, bodyBytes, bodyChunks, checkCopy, checkGet, checkPart, handedOverMd5,
  checkPartsTile, checkPut, decodeHandle, encodeHandle, partCount, partRange,
  checksumMismatches, compareKeys, digestBuffer, isCloudmuxError, isReplayableBody, resolveRange, throwIfAborted,
  validateKey, validateMetadata, validatePrefix, verifyingTransform, deleteEach, holdErrors,
} from '../../src/core/index.js';
import type {
  BlobStore, Body, Capabilities, Checksums, CloudmuxError, CompleteUploadOptions, CopyOptions, DeleteManyResult, GetOptions, GetResult,
  ListItem, ListOptions, ObjectMeta, PresignOptions, PutOptions, ResumableUploads, SignalOptions, StartUploadOptions, UpdateMetadataOptions,
  UploadHandle, UploadPartOptions, UploadedPart,
} from '../../src/core/index.js';
import { checksumsOf, googHashHeader, resourceDigests, type GcsObjectResource } from './checksums.js';
import { GCS_LIMITS, resolveOptions, type GcsStoreOptions, type ResolvedGcsOptions } from './config.js';
import { GcsHttpError, mapGcsError, type GcsErrorContext } from './errors.js';
import { SessionClient, responseText, type SessionResponse } from './session.js';

// The SDK is loaded as CommonJS: its ESM entry makes Node load many more files than its CJS one
// (~50 ms less CPU to load on Node 20). A Storage a caller built with the ESM copy is only called
// through its own methods, so the two copies never meet.
const { IdempotencyStrategy, Storage } = createRequire(import.meta.url)('@google-cloud/storage') as typeof GcsSdk;
type Storage = GcsSdk.Storage;

const PROVIDER = 'gcs';

/** The SDK's request options, as its request decoration takes and returns them. */
type SdkRequestOptions = Parameters<Storage['makeAuthenticatedRequest']>[0];

/** Generation preconditions of a write, as GCS query parameters. */
interface WriteConditions {
  ifGenerationMatch?: number | string;
  ifMetagenerationMatch?: number | string;
}

/**
 * What a GCS upload handle holds. The session URI authorizes uploads to this one object for a week
 * without other credentials: a journal that stores it should be kept like the data it describes.
 */
interface GcsUploadHandle {
  key: string;
  uri: string;
  size: number;
  partSize: number;
  /** Set when the SHA-256 went into the metadata at session start. */
  sha256?: string;
  bucket: string;
  prefix: string;
}

/** The parts of cloudmux's GCS etag: `<generation>.<metageneration>`. */
interface EtagParts {
  generation: string;
  metageneration: string | undefined;
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
  private readonly storage: Storage;
  private readonly bucket: Bucket;
  private readonly sessions = new SessionClient();

  constructor(options: GcsStoreOptions) {
    this.options = resolveOptions(options);
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
        return await this.putResumable(key, [], blocksOf(bytes), opts, conditions, ctx);
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
        if (headBytes > threshold) return await this.putResumable(key, head, source, opts, conditions, ctx);
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

  private async putResumable(
    key: string, head: Buffer[], rest: AsyncIterator<Buffer>, opts: PutOptions, conditions: WriteConditions, ctx: GcsErrorContext,
  ): Promise<ObjectMeta> {
    const signal = opts.signal;
    const file = this.file(key);
    const [uri] = await file.createResumableUpload({
      metadata: { contentType: opts.contentType ?? 'application/octet-stream', metadata: { ...opts.metadata } },
      preconditionOpts: conditions,
    });
    // No MD5 here: crc32c in X-Goog-Hash lets GCS check the whole object, and MD5 would cost as
    // much CPU again as the SHA-256 cloudmux needs anyway (GCS still computes its own md5Hash).
    const hasher = new MultiHasher(['crc32c']);
    async function* hashed(): AsyncGenerator<Buffer> {
      // Shifted out so the already-read head is not pinned for the whole upload.
      for (let chunk = head.shift(); chunk !== undefined; chunk = head.shift()) {
        hasher.update(chunk);
        yield chunk;
      }
      for (;;) {
        throwIfAborted(signal, { provider: PROVIDER, key });
        const next = await rest.next();
        if (next.done) return;
        hasher.update(next.value);
        yield next.value;
      }
    }
    const chunkSize = this.options.chunkSize;
    let offset = 0;
    let parts: Buffer[] = [];
    let size = 0;
    let inflight: Promise<unknown> | undefined;
    try {
      // A full chunk is sent once a byte beyond it has arrived (so it is not the last), while the
      // next one fills: memory stays near two chunks, and no chunk is ever concatenated.
      for await (const chunk of hashed()) {
        for (let c = chunk; c.byteLength > 0;) {
          if (size === chunkSize) {
            await inflight;
            inflight = this.sendChunk(uri, parts, offset, undefined, undefined, ctx);
            inflight.catch(() => undefined);
            offset += size;
            parts = [];
            size = 0;
          }
          const take = Math.min(chunkSize - size, c.byteLength);
          parts.push(c.subarray(0, take));
          size += take;
          c = c.subarray(take);
        }
      }
      await inflight;
      throwIfAborted(signal, { provider: PROVIDER, key });
      const digests = hasher.digest();
      checkExpected(opts.expect, digests, key);
      const resource = (await this.sendChunk(uri, parts, offset, offset + size, googHashHeader(digests), ctx))!;
      return await this.attachSha256(key, resource, digests.sha256!);
    } catch (e) {
      await this.cancelSession(uri);
      throw e;
    }
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
    validateKey(key, PROVIDER);
    validateMetadata(opts.metadata, PROVIDER, key);
    if (!Number.isSafeInteger(opts.size) || opts.size < 0) throw new InvalidArgumentError(`size must be a byte count, got ${opts.size}`, { provider: PROVIDER, key });
    if (!Number.isSafeInteger(opts.partSize) || opts.partSize < 1 || (opts.partSize % GCS_LIMITS.chunkMultiple !== 0 && opts.size > opts.partSize)) {
      throw new InvalidArgumentError(`partSize must be a multiple of 256 KiB, got ${opts.partSize}`, { provider: PROVIDER, key });
    }
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    const sha256 = opts.sha256?.toLowerCase();
    const ctx = this.ctx('startUpload', key, opts.signal);
    try {
      const [uri] = await this.file(key).createResumableUpload({
        metadata: { contentType: opts.contentType ?? 'application/octet-stream', metadata: { ...opts.metadata, ...(sha256 ? { [SHA256_KEY]: sha256 } : {}) } },
      });
      const handle: GcsUploadHandle = { key, uri, size: opts.size, partSize: opts.partSize, ...(sha256 ? { sha256 } : {}), bucket: this.options.bucket, prefix: this.options.prefix };
      return encodeHandle(PROVIDER, { ...handle });
    } catch (e) {
      throw mapGcsError(e, ctx);
    }
  }

  /**
   * Sends part `n` after asking the session how much it holds: parts go in order, and bytes the
   * session already has (a part that was in flight when its sender died) are not sent again.
   */
  async uploadPart(handle: UploadHandle, partNumber: number, bytes: Uint8Array, opts: UploadPartOptions = {}): Promise<UploadedPart> {
    const h = this.uploadHandle(handle);
    checkPart(h, partNumber, bytes.byteLength, PROVIDER, h.key);
    if (partNumber === partCount(h.size, h.partSize)) {
      throw new InvalidArgumentError('the last part of a GCS upload goes to completeUpload (deferLastPart)', { provider: PROVIDER, key: h.key });
    }
    const ctx = this.ctx('uploadPart', h.key, opts.signal);
    const { offset: start } = partRange(h.size, h.partSize, partNumber);
    const end = start + bytes.byteLength;
    try {
      const status = await this.querySession(h.uri, ctx);
      if (status.resource) throw new NotFoundError('the upload session is already complete', { provider: PROVIDER, key: h.key });
      if (status.persisted < start) {
        throw new InvalidArgumentError(`GCS parts go in order: the session holds ${status.persisted} bytes, part ${partNumber} starts at ${start}`, { provider: PROVIDER, key: h.key });
      }
      if (status.persisted < end) {
        const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        await this.sendChunk(h.uri, [buf.subarray(status.persisted - start)], status.persisted, undefined, undefined, ctx);
      }
      return { partNumber, size: bytes.byteLength };
    } catch (e) {
      throw mapGcsError(e, ctx);
    }
  }

  /** The whole parts the session holds (its persisted offset, rounded down to a part). NotFound once complete or cancelled. */
  async listParts(handle: UploadHandle, opts: SignalOptions = {}): Promise<UploadedPart[]> {
    const h = this.uploadHandle(handle);
    const ctx = this.ctx('listParts', h.key, opts.signal);
    let status: { persisted: number; resource?: GcsObjectResource };
    try {
      status = await this.querySession(h.uri, ctx);
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
  async completeUpload(handle: UploadHandle, parts: readonly UploadedPart[], opts: CompleteUploadOptions): Promise<ObjectMeta> {
    const h = this.uploadHandle(handle);
    const key = h.key;
    checkPartsTile(h, parts, PROVIDER, key);
    const last = partRange(h.size, h.partSize, parts.length);
    const lastPart = opts.lastPart;
    if (!lastPart || lastPart.byteLength !== last.length) {
      throw new InvalidArgumentError(`completeUpload needs the last part's ${last.length} bytes as lastPart (deferLastPart)`, { provider: PROVIDER, key });
    }
    const sha256 = opts.checksums.sha256.toLowerCase();
    if (h.sha256 !== undefined && h.sha256 !== sha256) {
      throw new IntegrityError(`the upload was started for SHA-256 ${h.sha256}, the bytes have ${sha256}; not completed`, { provider: PROVIDER, key });
    }
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    const ctx = this.ctx('completeUpload', key, opts.signal);
    let resource: GcsObjectResource;
    try {
      const status = await this.querySession(h.uri, ctx);
      if (status.resource) {
        resource = status.resource; // an earlier completion got through; its answer was lost
      } else {
        if (status.persisted < last.offset) {
          // Retryable: a resume lists the parts again and re-sends what is missing.
          throw new TransientError(`the upload session holds ${status.persisted} bytes, the last part starts at ${last.offset}`, { provider: PROVIDER, key });
        }
        const buf = Buffer.from(lastPart.buffer, lastPart.byteOffset, lastPart.byteLength);
        const hash = googHashHeader({ crc32c: opts.checksums.crc32c, md5: opts.checksums.md5 });
        resource = (await this.sendChunk(h.uri, [buf.subarray(status.persisted - last.offset)], status.persisted, h.size, hash, ctx))!;
      }
    } catch (e) {
      throw mapGcsError(e, ctx);
    }
    if (Number(resource.size) !== h.size) throw new IntegrityError(`GCS stored ${String(resource.size)} bytes, expected ${h.size}`, { provider: PROVIDER, key });
    if (h.sha256 !== undefined) return this.toMeta(key, resource);
    return this.attachSha256(key, resource, sha256);
  }

  async abortUpload(handle: UploadHandle, opts: SignalOptions = {}): Promise<void> {
    const h = this.uploadHandle(handle);
    throwIfAborted(opts.signal, { provider: PROVIDER, key: h.key });
    await this.cancelSession(h.uri);
  }

  private uploadHandle(handle: UploadHandle): GcsUploadHandle {
    const h = decodeHandle<GcsUploadHandle>(handle, PROVIDER);
    if (h.bucket !== this.options.bucket || h.prefix !== this.options.prefix || typeof h.uri !== 'string' || !/^https?:\/\//.test(h.uri)) {
      throw new InvalidArgumentError(`the upload handle belongs to gs://${String(h.bucket)}/${String(h.prefix)}, not ${this.toString()}`, { provider: PROVIDER, key: h.key });
    }
    validateKey(h.key, PROVIDER);
    return h;
  }

  /**
   * Sends `data` as bytes `start…` of a resumable session (`total` set on the final chunk). On a
   * network failure or 5xx/429 it asks the session what it persisted and re-sends only the rest,
   * up to `chunkRetries` times. Returns the object resource once the upload is complete.
   */
  private async sendChunk(uri: string, data: Buffer[], start: number, total: number | undefined, hash: string | undefined, ctx: GcsErrorContext): Promise<GcsObjectResource | undefined> {
    const length = data.reduce((n, b) => n + b.byteLength, 0);
    let from = start;
    let failures = 0;
    for (let rounds = 0; rounds < 1000; rounds++) {
      const rest = skipBytes(data, from - start);
      const restLength = start + length - from;
      try {
        const headers: Record<string, string> = {
          'Content-Range': restLength === 0 ? `bytes */${total ?? '*'}` : `bytes ${from}-${from + restLength - 1}/${total ?? '*'}`,
        };
        if (hash && total !== undefined) headers['X-Goog-Hash'] = hash;
        const res = await this.sessions.send(uri, 'PUT', headers, rest, ctx.signal);
        if (res.status === 308) {
          const persisted = persistedBytes(res.header('range'));
          if (total === undefined && persisted >= start + length) return undefined;
          if (persisted < start) throw new ProviderError(`gcs put ${ctx.key}: the upload session lost bytes it had acknowledged (has ${persisted}, expected ${start})`, { provider: PROVIDER, key: ctx.key });
          // Fewer bytes persisted than sent (or the final request did not complete): send the rest.
          from = persisted;
          continue;
        }
        if (res.status === 200 || res.status === 201) return total === undefined ? undefined : res.json<GcsObjectResource>();
        throw httpError(res);
      } catch (e) {
        const mapped = mapGcsError(e, ctx);
        if (!mapped.retryable || failures >= this.options.chunkRetries || ctx.signal?.aborted) throw mapped;
        failures++;
        await sleep(Math.min(10_000, 250 * 2 ** (failures - 1)) * (0.5 + Math.random() / 2), undefined, { signal: ctx.signal }).catch(() => {
          throw abortedError(ctx.signal, { provider: PROVIDER, key: ctx.key });
        });
        const status = await this.querySession(uri, ctx).catch((qe: unknown) => {
          throw mapGcsError(qe, ctx);
        });
        if (status.resource) return total === undefined ? undefined : status.resource;
        if (status.persisted < start) throw new ProviderError(`gcs put ${ctx.key}: the upload session lost bytes it had acknowledged`, { provider: PROVIDER, key: ctx.key });
        from = Math.min(status.persisted, start + length);
      }
    }
    throw new ProviderError(`gcs put ${ctx.key}: the upload session made no progress`, { provider: PROVIDER, key: ctx.key });
  }

  /** Asks a resumable session how many bytes it holds (or for the object, once complete). */
  private async querySession(uri: string, ctx: GcsErrorContext): Promise<{ persisted: number; resource?: GcsObjectResource }> {
    const res = await this.sessions.send(uri, 'PUT', { 'Content-Range': 'bytes */*' }, [], ctx.signal);
    if (res.status === 308) return { persisted: persistedBytes(res.header('range')) };
    if (res.status === 200 || res.status === 201) return { persisted: -1, resource: res.json<GcsObjectResource>() };
    throw httpError(res);
  }

  /** Best effort: a session that is not cancelled expires on its own after a week. */
  private async cancelSession(uri: string): Promise<void> {
    try {
      await this.sessions.send(uri, 'DELETE', {}, [], AbortSignal.timeout(10_000));
    } catch {
      // nothing to do
    }
  }

  private async attachSha256(key: string, resource: GcsObjectResource, sha256: string): Promise<ObjectMeta> {
    try {
      const [patched] = await this.file(key).setMetadata(
        { metadata: { [SHA256_KEY]: sha256 } },
        { ifGenerationMatch: String(resource.generation), ifMetagenerationMatch: String(resource.metageneration ?? 1) },
      );
      return this.toMeta(key, patched as GcsObjectResource);
    } catch {
      // The bytes are stored and crc32c-checked; only the SHA-256 annotation is missing.
      const meta = this.toMeta(key, resource);
      meta.checksums.sha256 = sha256;
      return meta;
    }
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
        res = await this.openMedia(key, String(resource.generation), range, ctx);
      } catch (e) {
        const mapped = mapGcsError(e, ctx);
        // Overwritten between the metadata read and the media read: read the new one. A key
        // rewritten in a tight loop by other writers can win that race several times in a row on a
        // slow link, so keep trying a while, with a little jitter to fall out of step with them.
        if (mapped.code === 'NotFound' && attempt < GET_OVERWRITE_ATTEMPTS) {
          if (attempt > 0) await sleep(Math.random() * 10 * attempt, undefined, { signal: opts.signal }).catch(() => undefined);
          continue;
        }
        throw mapped;
      }
      return { meta, body: mediaBody(res, ctx, verify), ...(range ? { range } : {}) };
    }
  }

  /**
   * Starts the media download of one generation through the driver's own HTTP client, with the
   * headers the SDK would send (its request decoration: credentials exactly when it would use them).
   * Resolves once a 200/206 answer's headers arrive; any other answer is thrown as a GcsHttpError.
   */
  private async openMedia(key: string, generation: string, range: { offset: number; length: number } | undefined, ctx: GcsErrorContext): Promise<IncomingMessage> {
    const decorated = await this.decorate({
      uri: `${this.storage.baseUrl}/b/${encodeURIComponent(this.options.bucket)}/o/${encodeURIComponent(this.name(key))}`,
      qs: { alt: 'media', generation },
      headers: {
        // With decompress off the SDK asked for gzip too: a gzip-stored object comes as stored,
        // matching its size and checksums, instead of being transcoded.
        'Accept-Encoding': 'gzip',
        'Cache-Control': 'no-store',
        ...(range ? { Range: `bytes=${range.offset}-${range.offset + range.length - 1}` } : {}),
      },
    });
    throwIfAborted(ctx.signal, { provider: PROVIDER, key });
    const url = new URL(decorated.uri);
    for (const [name, value] of Object.entries(decorated.qs ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
    }
    const res = await this.sessions.open(url, headerRecord(decorated.headers), ctx.signal);
    const status = res.statusCode ?? 0;
    if (status === 200 || status === 206) return res;
    const text = await responseText(res).catch(() => '');
    throw GcsHttpError.from(status, text, headerValue(res.headers['retry-after']));
  }

  /** The SDK's decoration of a request (project id, credentials when it would send them), without sending it. */
  private decorate(reqOpts: SdkRequestOptions): Promise<SdkRequestOptions> {
    return new Promise((resolve, reject) => {
      this.storage.makeAuthenticatedRequest(reqOpts, {
        onAuthenticated: (err, decorated) => (err ? reject(err) : resolve(decorated ?? reqOpts)),
      });
    });
  }

  async head(key: string, opts: SignalOptions = {}): Promise<ObjectMeta> {
    validateKey(key, PROVIDER);
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    return this.toMeta(key, await this.resource(key, this.ctx('head', key, opts.signal)));
  }

  // ------------------------------------------------------------------------------------------
  // deletes

  async delete(key: string, opts: SignalOptions = {}): Promise<void> {
    validateKey(key, PROVIDER);
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    try {
      await this.file(key).delete({ ignoreNotFound: true });
    } catch (e) {
      throw mapGcsError(e, this.ctx('delete', key, opts.signal));
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
    const prefix = opts.prefix ?? '';
    validatePrefix(prefix, PROVIDER);
    const ctx = this.ctx('list', undefined, opts.signal);
    const fullPrefix = this.options.prefix + prefix;
    const startOffset = opts.startAfter !== undefined ? this.options.prefix + opts.startAfter : undefined;
    const pageSize = Math.max(1, Math.min(1000, opts.pageSize ?? 1000));
    // startOffset is inclusive: with a delimiter, startAfter itself can come back rolled up into
    // its common prefix, which then must appear only if some key after startAfter shares it.
    let startAfterPrefix: string | undefined;
    if (opts.delimiter && startOffset !== undefined && startOffset.startsWith(fullPrefix)) {
      const at = startOffset.indexOf(opts.delimiter, fullPrefix.length);
      if (at >= 0) startAfterPrefix = startOffset.slice(0, at + opts.delimiter.length);
    }
    let pageToken: string | undefined;
    let lastPrefix: string | undefined;
    do {
      throwIfAborted(opts.signal, { provider: PROVIDER });
      let files: File[];
      let next: { pageToken?: string } | null;
      let response: { prefixes?: string[] };
      try {
        [files, next, response] = (await this.bucket.getFiles({
          prefix: fullPrefix,
          autoPaginate: false,
          maxResults: pageSize,
          ...(opts.delimiter ? { delimiter: opts.delimiter } : {}),
          ...(startOffset !== undefined ? { startOffset } : {}),
          ...(pageToken ? { pageToken } : {}),
        })) as unknown as [File[], { pageToken?: string } | null, { prefixes?: string[] }];
      } catch (e) {
        throw mapGcsError(e, ctx);
      }
      // GCS returns a page's objects and prefixes apart; merge them back into byte order.
      const items: ListItem[] = [];
      for (const f of files) {
        // startOffset is inclusive; startAfter is not.
        if (f.name === startOffset) continue;
        const r = f.metadata as GcsObjectResource;
        items.push({
          type: 'object',
          key: this.keyOf(f.name),
          size: Number(r.size ?? 0),
          etag: etagOf(r),
          lastModified: new Date(r.updated ?? r.timeCreated ?? 0),
          version: String(r.generation),
          checksums: checksumsOf(r),
        });
      }
      for (const p of response?.prefixes ?? []) {
        if (p === lastPrefix) continue;
        if (p === startAfterPrefix) {
          startAfterPrefix = undefined;
          if (!(await this.hasNameAfter(p, startOffset!, ctx))) continue;
        }
        items.push({ type: 'prefix', prefix: this.keyOf(p) });
      }
      items.sort((a, b) => compareKeys(a.type === 'object' ? a.key : a.prefix, b.type === 'object' ? b.key : b.prefix));
      for (const item of items) {
        if (item.type === 'prefix') lastPrefix = this.options.prefix + item.prefix;
        yield item;
      }
      pageToken = next?.pageToken;
    } while (pageToken);
  }

  /** True when some object under `prefix` sorts after `name`. */
  private async hasNameAfter(prefix: string, name: string, ctx: GcsErrorContext): Promise<boolean> {
    try {
      const [files] = await this.bucket.getFiles({ prefix, startOffset: name, maxResults: 2, autoPaginate: false });
      return files.some((f) => f.name !== name);
    } catch (e) {
      throw mapGcsError(e, ctx);
    }
  }

  // ------------------------------------------------------------------------------------------
  // copy and metadata

  async copy(src: string, dst: string, opts: CopyOptions = {}): Promise<ObjectMeta> {
    checkCopy(PROVIDER, this.capabilities, src, dst, opts);
    const ctx = this.ctx('copy', dst, opts.signal, opts.ifNoneMatch === '*');
    const query: Record<string, string> = {};
    if (opts.ifNoneMatch === '*') query.ifGenerationMatch = '0';
    if (opts.sourceIfMatch !== undefined) {
      const parts = parseEtag(opts.sourceIfMatch);
      if (!parts) {
        await this.resource(src, this.ctx('copy', src, opts.signal));
        throw new PreconditionFailedError(`gcs copy ${src}: source etag is not ${opts.sourceIfMatch}`, { provider: PROVIDER, key: src });
      }
      query.ifSourceGenerationMatch = parts.generation;
      if (parts.metageneration !== undefined) query.ifSourceMetagenerationMatch = parts.metageneration;
    }
    let body: Record<string, unknown> = {};
    if (opts.metadata !== undefined || opts.contentType !== undefined) {
      // Replacing: send the whole destination state, keeping the source's SHA-256 with its bytes.
      const source = await this.resource(src, this.ctx('copy', src, opts.signal));
      const sha = checksumsOf(source).sha256;
      const metadata = opts.metadata !== undefined ? { ...opts.metadata, ...(sha ? { [SHA256_KEY]: sha } : {}) } : stringMap(source.metadata);
      const contentType = opts.metadata !== undefined ? (opts.contentType ?? 'application/octet-stream') : (opts.contentType ?? source.contentType);
      body = { contentType, metadata };
      query.ifSourceGenerationMatch ??= String(source.generation);
    }
    const srcFile = this.file(src);
    const path = `/rewriteTo/b/${encodeURIComponent(this.options.bucket)}/o/${encodeURIComponent(this.name(dst))}`;
    try {
      // Large or cross-location rewrites answer with a token until done; every call repeats the request.
      for (let token: string | undefined; ;) {
        throwIfAborted(opts.signal, { provider: PROVIDER, key: dst });
        const res = await requestJson<{ done?: boolean; rewriteToken?: string; resource?: GcsObjectResource }>(srcFile, {
          method: 'POST', uri: path, qs: { ...query, ...(token ? { rewriteToken: token } : {}) }, json: body,
        });
        if (res.done && res.resource) return this.toMeta(dst, res.resource);
        if (!res.rewriteToken) throw new ProviderError(`gcs copy ${src}: rewrite answered neither done nor a rewriteToken`, { provider: PROVIDER, key: dst });
        token = res.rewriteToken;
      }
    } catch (e) {
      const mapped = mapGcsError(e, { ...ctx, createOnly: false });
      if (mapped.code === 'NotFound') throw new NotFoundError(`gcs copy: no object at ${src}`, { provider: PROVIDER, key: src, cause: mapped });
      if (mapped.code === 'PreconditionFailed') {
        if (opts.ifNoneMatch === '*' && (await this.exists(dst, ctx))) throw new AlreadyExistsError(`gcs copy: ${dst} already exists`, { provider: PROVIDER, key: dst, cause: mapped });
        throw new PreconditionFailedError(`gcs copy ${src}: source etag is not ${opts.sourceIfMatch ?? 'what it was'}`, { provider: PROVIDER, key: src, cause: mapped });
      }
      throw mapped;
    }
  }

  /**
   * Replaces the user metadata with a patch that nulls removed keys, conditional on the generation
   * and metageneration just read; a concurrent change without `ifMatch` is re-read and re-applied.
   */
  async updateMetadata(key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
    validateKey(key, PROVIDER);
    validateMetadata(opts.metadata, PROVIDER, key);
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    const ctx = this.ctx('updateMetadata', key, opts.signal);
    for (let attempt = 0; ; attempt++) {
      const current = await this.resource(key, ctx);
      const etag = etagOf(current);
      if (opts.ifMatch !== undefined && opts.ifMatch !== etag) {
        throw new PreconditionFailedError(`gcs updateMetadata ${key}: etag is ${etag}, not ${opts.ifMatch}`, { provider: PROVIDER, key });
      }
      const sha = checksumsOf(current).sha256;
      const next: Record<string, string | null> = { ...(sha ? { [SHA256_KEY]: sha } : {}), ...opts.metadata };
      for (const k of Object.keys(current.metadata ?? {})) if (!(k in next)) next[k] = null;
      try {
        const [patched] = await this.file(key).setMetadata(
          { metadata: next, ...(opts.contentType !== undefined ? { contentType: opts.contentType } : {}) } as FileMetadata,
          { ifGenerationMatch: String(current.generation), ifMetagenerationMatch: String(current.metageneration) },
        );
        return this.toMeta(key, patched as GcsObjectResource);
      } catch (e) {
        const mapped = mapGcsError(e, ctx);
        if (mapped.code === 'PreconditionFailed' && opts.ifMatch === undefined && attempt < 4) continue;
        throw mapped;
      }
    }
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

  private name(key: string): string {
    return this.options.prefix + key;
  }

  private keyOf(name: string): string {
    return name.slice(this.options.prefix.length);
  }

  private file(key: string): File {
    return this.bucket.file(this.name(key));
  }

  private ctx(op: string, key: string | undefined, signal?: AbortSignal, createOnly = false): GcsErrorContext {
    return { op, bucket: this.options.bucket, key, signal, createOnly };
  }

  private async resource(key: string, ctx: GcsErrorContext): Promise<GcsObjectResource> {
    try {
      const [r] = await this.file(key).getMetadata();
      throwIfAborted(ctx.signal, { provider: PROVIDER, key });
      return r as GcsObjectResource;
    } catch (e) {
      throw mapGcsError(e, { ...ctx, key });
    }
  }

  private async exists(key: string, ctx: GcsErrorContext): Promise<boolean> {
    try {
      await this.resource(key, ctx);
      return true;
    } catch (e) {
      if (isCloudmuxError(e, 'NotFound')) return false;
      throw e;
    }
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

  private toMeta(key: string, r: GcsObjectResource): ObjectMeta {
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

function etagOf(r: GcsObjectResource): string {
  return `${r.generation}.${r.metageneration ?? 1}`;
}

function parseEtag(etag: string): EtagParts | undefined {
  const m = /^"?(\d+)(?:\.(\d+))?"?$/.exec(etag.trim());
  return m ? { generation: m[1]!, metageneration: m[2] } : undefined;
}

function stringMap(m: GcsObjectResource['metadata']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m ?? {})) if (v !== null && v !== undefined) out[k] = String(v);
  return out;
}

function checkExpected(expected: Checksums | undefined, actual: Checksums, key: string): void {
  if (!expected) return;
  const bad = checksumMismatches(expected, actual);
  if (bad.length > 0) throw new IntegrityError(`gcs put ${key}: body ${bad.join(', ')} differs from the expected digest; nothing was written`, { provider: PROVIDER, key });
}

/** `Range: bytes=0-N` of a 308 answer as a byte count (no header: nothing persisted). */
function persistedBytes(range: string | null | undefined): number {
  const m = range ? /bytes=0-(\d+)/.exec(range) : null;
  return m ? Number(m[1]) + 1 : 0;
}

function httpError(res: SessionResponse): GcsHttpError {
  return GcsHttpError.from(res.status, res.text, res.header('retry-after'));
}

/** The parts after the first `skip` bytes (subarrays, no copies). */
function skipBytes(parts: Buffer[], skip: number): Buffer[] {
  const out: Buffer[] = [];
  for (const p of parts) {
    if (skip >= p.byteLength) {
      skip -= p.byteLength;
      continue;
    }
    out.push(skip > 0 ? p.subarray(skip) : p);
    skip = 0;
  }
  return out;
}

function blocksOf(buf: Buffer): AsyncIterator<Buffer> {
  return (async function* () {
    const step = 1024 * 1024;
    for (let i = 0; i < buf.byteLength; i += step) yield buf.subarray(i, i + step);
  })();
}

/**
 * A download's body as the caller sees it: failures mapped, an abort ends it, and destroying it (a
 * reader that stops early) destroys the response, so its socket is closed rather than pooled.
 */
function mediaBody(res: IncomingMessage, ctx: GcsErrorContext, verify?: Transform): Readable {
  const out = holdErrors(verify ?? new PassThrough());
  const onAbort = (): void => {
    out.destroy(abortedError(ctx.signal, { provider: PROVIDER, key: ctx.key }));
  };
  if (ctx.signal?.aborted) onAbort();
  ctx.signal?.addEventListener('abort', onAbort, { once: true });
  res.once('error', (e) => out.destroy(mapGcsError(e, ctx)));
  out.once('close', () => {
    ctx.signal?.removeEventListener('abort', onAbort);
    if (!res.destroyed) res.destroy();
  });
  res.pipe(out);
  return out;
}

/** Metadata-then-media reads of one get before an object rewritten each time in between is reported NotFound. */
const GET_OVERWRITE_ATTEMPTS = 16;

function headerRecord(headers: SdkRequestOptions['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) if (value !== undefined && value !== null) out[name] = String(value);
  return out;
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** The SDK's authenticated JSON request, for API calls it wraps awkwardly (rewrite with constant preconditions). */
function requestJson<T>(file: File, reqOpts: { method: string; uri: string; qs: Record<string, string>; json: unknown }): Promise<T> {
  return new Promise((resolve, reject) => {
    file.request(reqOpts, (err, body) => {
      if (err) reject(err);
      else resolve(body as T);
    });
  });
}
