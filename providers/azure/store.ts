import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type * as AzureIdentity from '@azure/identity';
import type * as AzureBlob from '@azure/storage-blob';
import type {
  BlobDownloadResponseParsed, BlobHTTPHeaders, BlobItem, BlobRequestConditions, BlockBlobUploadOptions, ContainerClient,
} from '@azure/storage-blob';
import {
  AbortedError, AlreadyExistsError, CloudmuxError, IntegrityError, InvalidArgumentError, InvalidRangeError, MultiHasher, NotFoundError,
  NotSupportedError, PreconditionFailedError, ProviderError, SHA256_KEY, TransientError, bodyBytes, bodyChunks, checkCopy, checkGet, handedOverMd5,
  checkPart, checkPartsTile, checkPut, checksumMismatches, decodeHandle, encodeHandle, compareKeys, isCloudmuxError, isReplayableBody, resolveRange, throwIfAborted, validateKey,
  validateMetadata, validatePrefix, validKeysOf,
} from '../../src/core/index.js';
import type {
  BlobStore, Body, Capabilities, ChecksumAlgorithm, Checksums, CompleteUploadOptions, CopyOptions, DeleteManyResult, GetOptions,
  GetResult, ListItem, ListOptions, ObjectMeta, ObjectSummary, PresignOptions, PutOptions, ResumableUploads, SignalOptions,
  StartUploadOptions, UpdateMetadataOptions, UploadHandle, UploadPartOptions, UploadedPart,
} from '../../src/core/index.js';
import { BlockPool, pooledBlocks } from '../../src/core/body.js';
import { azureChecksums, blockId, md5Bytes } from './checksums.js';
import { BLOCKS_PER_SIZE_STEP, MAX_BLOCKS, MAX_BLOCK_SIZE, type AzureTokenCredential, type ResolvedAzureConfig } from './config.js';
import { AzureDataClient, proxiedByEnvironment, type DownloadResponse } from './data-client.js';
import { ResponseBody, type BodyCheck } from '../../src/core/response-body.js';
import { mapAzureError } from './errors.js';
import { mergeServerOrder, utf8Order } from './list-order.js';

// The SDKs are loaded as CommonJS: the ESM entry of @azure/storage-blob makes Node load hundreds of
// dist files, its CJS one far fewer (~30 ms less CPU to load on Node 20). @azure/identity too, so
// that it shares the @azure/core-* copies the blob client loaded. The credentials the SDK tells
// apart with instanceof are made here from the same copy; a caller's token credential is duck-typed.
const loadCjs = createRequire(import.meta.url);
const {
  AnonymousCredential, BlobSASPermissions, BlobServiceClient, SASProtocol, StorageSharedKeyCredential, generateBlobSASQueryParameters,
} = loadCjs('@azure/storage-blob') as typeof AzureBlob;
type BlobServiceClient = AzureBlob.BlobServiceClient;
type StorageSharedKeyCredential = AzureBlob.StorageSharedKeyCredential;

const PROVIDER = 'azure';
const DEFAULT_CONTENT_TYPE = 'application/octet-stream';
/** Sub-requests per blob batch (Azure's limit). */
const BATCH_LIMIT = 256;
/**
 * Attempts per staged block. A block is idempotent and already in memory, so a dropped keep-alive
 * socket costs one block, not a whole streamed upload that the retry layer could not replay.
 */
const STAGE_ATTEMPTS = 3;


/** What an Azure upload handle holds: the block-id prefix and what the commit stamps on the blob. */
interface AzureUploadHandle {
  key: string;
  /** Block ids of this upload are `blockId(uploadId, partNumber)`: deterministic, so a resume finds them. */
  uploadId: string;
  size: number;
  partSize: number;
  contentType: string;
  metadata: Record<string, string>;
  account: string;
  container: string;
  prefix: string;
}

/** One entry of a server listing, before the UTF-8 re-ordering. */
interface ListedEntry {
  name: string;
  blob?: BlobItem;
}

/** The properties both getProperties and download return, as far as ObjectMeta needs them. */
interface BlobPropsLike extends Omit<DownloadResponse, 'body' | 'contentRange'> {
  contentEncoding?: string;
  contentLanguage?: string;
  contentDisposition?: string;
  cacheControl?: string;
}

/** DefaultAzureCredential, imported on first use so that key- and SAS-based users never load @azure/identity. */
function lazyDefaultCredential(): AzureTokenCredential {
  let loaded: Promise<AzureTokenCredential> | undefined;
  return {
    async getToken(scopes, options) {
      loaded ??= Promise.resolve().then(() => {
        const { DefaultAzureCredential } = loadCjs('@azure/identity') as typeof AzureIdentity;
        return new DefaultAzureCredential() as unknown as AzureTokenCredential;
      });
      return (await loaded).getToken(scopes, options);
    },
  };
}

function unquote(etag: string | undefined): string {
  if (!etag) return '';
  return etag.startsWith('"') && etag.endsWith('"') && etag.length >= 2 ? etag.slice(1, -1) : etag;
}

function quote(etag: string): string {
  return etag === '*' || etag.startsWith('"') ? etag : `"${etag}"`;
}

/**
 * Azure Blob Storage (block blobs) as a {@link BlobStore}.
 *
 * - put: bodies up to `singleShotThreshold` (known size, or a stream that ends within one block)
 *   go in one Put Blob with a transactional Content-MD5 (the `expect` MD5 when one is handed
 *   over, so Azure checks the bytes against it on arrival; else computed here); larger ones are
 *   staged as blocks, each with its transactional MD5, `uploadConcurrency` at a time (a block that
 *   hits a retryable error is re-sent, up to 3 attempts: it is in memory and idempotent, while the
 *   whole streamed put could not be replayed), then committed with the blob's Content-MD5 (the
 *   `expect` MD5 when both it and the SHA-256 are handed over, else computed) and
 *   `cloudmux_sha256`. Nothing is committed unless every byte was staged and the `expect` digests
 *   match; uncommitted blocks are invisible and Azure drops them after a week.
 *   Two concurrent staged puts of one key: the later commit fails with a retryable Transient
 *   (Azure discards the other upload's blocks), where S3/GCS let the last writer win.
 * - version: the versionId where the account keeps versions, else the etag.
 * - list: Azure lists in UTF-16 order and has no startAfter; both are corrected here (list-order.ts),
 *   startAfter by listing from the prefix and skipping.
 * - deleteMany: blob batch (256 per request) with a shared key or Azure AD credential; bounded
 *   parallel deletes with a SAS.
 * - copy: Copy Blob within the account, polled until done; the source is pinned by its etag.
 * - presign: service SAS; needs the account key. A presigned PUT must send `x-ms-blob-type: BlockBlob`.
 * - SDK retries are off (one attempt); cloudmux's retry layer owns retries.
 * - transport: with a shared key or a SAS, Put Blob, Put Block and Get Blob (the requests a
 *   migration of many small objects is made of) go through cloudmux's own node:http client
 *   (data-client.ts): same headers and service version as the SDK, a fraction of its CPU per
 *   request. Everything else, and every request with an Azure AD credential (whose token cycling
 *   and CAE challenges stay with the SDK) or through a proxy named in the environment
 *   (HTTPS_PROXY…), goes through @azure/storage-blob. `sdkDataPath: true`
 *   sends the three through the SDK as well.
 */
export class AzureStore implements BlobStore, ResumableUploads {
  readonly provider = PROVIDER;
  readonly capabilities: Capabilities;
  private readonly container: ContainerClient;
  private readonly sharedKey: StorageSharedKeyCredential | undefined;
  private readonly canBatch: boolean;
  /** cloudmux's own client for Put Blob, Put Block and Get Blob; undefined when those go through the SDK. */
  private readonly data: AzureDataClient | undefined;
  /** Blob-name prefix of this store's keys: '' or `prefix/`. */
  private readonly namePrefix: string;

  constructor(readonly config: ResolvedAzureConfig) {
    const pipelineOptions = {
      retryOptions: { maxTries: 1 },
      userAgentOptions: { userAgentPrefix: 'cloudmux' },
    };
    let service: BlobServiceClient;
    const auth = config.auth;
    if (auth.kind === 'sharedKey') {
      this.sharedKey = new StorageSharedKeyCredential(auth.account, auth.accountKey);
      service = new BlobServiceClient(config.endpoint, this.sharedKey, pipelineOptions);
    } else if (auth.kind === 'sas') {
      service = new BlobServiceClient(`${config.endpoint}?${auth.sasToken}`, new AnonymousCredential(), pipelineOptions);
    } else {
      const credential = auth.kind === 'token' ? auth.credential : lazyDefaultCredential();
      service = new BlobServiceClient(config.endpoint, credential as Parameters<typeof AzureBlob.newPipeline>[0], pipelineOptions);
    }
    this.container = service.getContainerClient(config.container);
    this.canBatch = auth.kind !== 'sas';
    this.data = (auth.kind === 'sharedKey' || auth.kind === 'sas') && !config.sdkDataPath && !proxiedByEnvironment(config.endpoint)
      ? new AzureDataClient(config.endpoint, config.container, auth)
      : undefined;
    this.namePrefix = config.prefix ? `${config.prefix}/` : '';
    this.capabilities = {
      conditionalPut: true,
      versioning: config.versioning,
      nativeChecksums: ['md5'] satisfies ChecksumAlgorithm[],
      presign: this.sharedKey !== undefined,
      streaming: true,
      resumableUpload: true,
    };
  }

  /** Peak bytes one streamed put holds: the blocks in flight plus the one being filled and the next read ahead. */
  get uploadMemoryBytes(): number {
    return this.config.blockSize * (this.config.uploadConcurrency + 2);
  }

  async put(key: string, body: Body, opts: PutOptions = {}): Promise<ObjectMeta> {
    checkPut(PROVIDER, this.capabilities, key, opts);
    try {
      if (isReplayableBody(body)) {
        const buf = bodyBytes(body);
        if (buf.byteLength <= this.config.singleShotThreshold) return await this.putSingle(key, buf, opts);
      }
      return await this.putStream(key, body, opts);
    } catch (e) {
      throw await this.writeError(e, key, opts);
    }
  }

  async get(key: string, opts: GetOptions = {}): Promise<GetResult> {
    checkGet(PROVIDER, key, opts);
    const signal = opts.signal;
    const conditions: BlobRequestConditions = {};
    if (opts.ifMatch !== undefined) conditions.ifMatch = quote(opts.ifMatch);
    if (opts.ifNoneMatch !== undefined) conditions.ifNoneMatch = quote(opts.ifNoneMatch);
    try {
      let offset = 0;
      let count: number | undefined;
      let pinned = false;
      const range = opts.range;
      for (let attempt = 0; ; attempt++) {
        if (range && 'suffix' in range) {
          // Azure takes no suffix ranges: read the size, then pin that version by its etag.
          const props = await this.container.getBlobClient(this.blobName(key)).getProperties({ conditions, abortSignal: signal });
          const r = resolveRange(range, props.contentLength ?? 0, PROVIDER, key);
          offset = r.offset;
          count = r.length > 0 ? r.length : undefined;
          pinned = true;
          conditions.ifMatch = props.etag;
        } else if (range) {
          offset = range.offset;
          count = range.length;
        }
        let res: DownloadResponse;
        try {
          res = await this.download(key, offset, count, conditions, signal);
        } catch (e) {
          const err = this.mapError(e, key, signal);
          if (err.code === 'InvalidRange' && range && !('suffix' in range) && range.offset === 0) {
            // Azure rejects any range on an empty blob; ours reads as empty from offset 0.
            res = await this.download(key, 0, undefined, conditions, signal);
            if ((res.contentLength ?? 0) !== 0) {
              res.body?.destroy();
              throw err;
            }
          } else if (pinned && opts.ifMatch === undefined && err.code === 'PreconditionFailed' && attempt < 2) {
            conditions.ifMatch = undefined;
            continue; // overwritten between the size probe and the read
          } else {
            throw err;
          }
        }
        return this.getResult(key, res, opts, range !== undefined);
      }
    } catch (e) {
      throw this.mapError(e, key, signal);
    }
  }

  async head(key: string, opts: SignalOptions = {}): Promise<ObjectMeta> {
    validateKey(key, PROVIDER);
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    try {
      const props = await this.container.getBlobClient(this.blobName(key)).getProperties({ abortSignal: opts.signal });
      return this.metaFrom(key, props);
    } catch (e) {
      throw this.mapError(e, key, opts.signal);
    }
  }

  async delete(key: string, opts: SignalOptions = {}): Promise<void> {
    validateKey(key, PROVIDER);
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    try {
      await this.container.getBlobClient(this.blobName(key)).delete({ deleteSnapshots: 'include', abortSignal: opts.signal });
    } catch (e) {
      const err = this.mapError(e, key, opts.signal);
      if (err.code !== 'NotFound') throw err;
    }
  }

  async deleteMany(keys: Iterable<string>, opts: SignalOptions = {}): Promise<DeleteManyResult> {
    const result: DeleteManyResult = { deleted: [], errors: [] };
    const valid = validKeysOf(keys, result, PROVIDER);
    for (let i = 0; i < valid.length; i += BATCH_LIMIT) {
      const chunk = valid.slice(i, i + BATCH_LIMIT);
      if (opts.signal?.aborted) {
        const err = this.mapError(undefined, undefined, opts.signal);
        for (const key of chunk) result.errors.push({ key, error: err });
        continue;
      }
      if (this.canBatch && chunk.length > 1) await this.deleteBatch(chunk, result, opts.signal);
      else await this.deleteParallel(chunk, result, opts.signal);
    }
    return result;
  }

  async *list(opts: ListOptions = {}): AsyncGenerator<ListItem> {
    const prefix = opts.prefix ?? '';
    validatePrefix(prefix, PROVIDER);
    throwIfAborted(opts.signal, { provider: PROVIDER });
    const { delimiter, startAfter, signal } = opts;
    const serverPrefix = this.namePrefix + prefix;
    const open = (p: string): AsyncIterator<ListedEntry> => this.serverListing(p, delimiter, opts.pageSize, signal);
    for await (const entry of utf8Order(open, serverPrefix, this.config.listReorderBuffer)) {
      const key = entry.name.slice(this.namePrefix.length);
      if (entry.blob) {
        if (startAfter !== undefined && compareKeys(key, startAfter) <= 0) continue;
        yield { type: 'object', ...this.summaryFrom(key, entry.blob) };
      } else {
        if (startAfter !== undefined && !(await this.prefixHasKeyAfter(key, startAfter, signal))) continue;
        yield { type: 'prefix', prefix: key };
      }
    }
  }

  async copy(src: string, dst: string, opts: CopyOptions = {}): Promise<ObjectMeta> {
    checkCopy(PROVIDER, this.capabilities, src, dst, opts);
    const signal = opts.signal;
    const source = this.container.getBlobClient(this.blobName(src));
    const target = this.container.getBlockBlobClient(this.blobName(dst));
    let props: BlobPropsLike;
    try {
      props = await source.getProperties({ abortSignal: signal });
    } catch (e) {
      throw this.mapError(e, src, signal);
    }
    if (opts.sourceIfMatch !== undefined && unquote(props.etag) !== unquote(opts.sourceIfMatch)) {
      throw new PreconditionFailedError(`source etag is ${unquote(props.etag)}, not ${opts.sourceIfMatch}`, { provider: PROVIDER, key: src });
    }
    const sha = props.metadata?.[SHA256_KEY];
    const metadata = opts.metadata ? { ...opts.metadata, ...(sha ? { [SHA256_KEY]: sha } : {}) } : undefined;
    let copyId: string | undefined;
    try {
      const poller = await target.beginCopyFromURL(source.url, {
        metadata,
        conditions: opts.ifNoneMatch === '*' ? { ifNoneMatch: '*' } : undefined,
        // Pin the version whose properties were just read, so the copy and its metadata agree.
        sourceConditions: { ifMatch: props.etag },
        intervalInMs: this.config.copyPollIntervalMs,
        abortSignal: signal,
      });
      copyId = (poller.getOperationState() as { copyId?: string }).copyId;
      const done = await poller.pollUntilDone();
      if (done.copyStatus !== 'success') {
        throw new TransientError(`server-side copy of ${src} to ${dst} ended ${done.copyStatus ?? 'without a status'}`, { provider: PROVIDER, key: dst });
      }
      let etag = done.etag;
      const wantType = opts.metadata ? (opts.contentType ?? DEFAULT_CONTENT_TYPE) : (opts.contentType ?? props.contentType ?? DEFAULT_CONTENT_TYPE);
      if (wantType !== (props.contentType ?? DEFAULT_CONTENT_TYPE)) {
        const res = await target.setHTTPHeaders(this.httpHeaders(props, wantType), { conditions: etag ? { ifMatch: etag } : undefined, abortSignal: signal });
        etag = res.etag;
      }
      const after = await target.getProperties({ abortSignal: signal });
      return this.metaFrom(dst, after);
    } catch (e) {
      if (signal?.aborted && copyId) await target.abortCopyFromURL(copyId).catch(() => undefined);
      const err = this.mapError(e, dst, signal);
      if (err.code === 'PreconditionFailed' && err.providerCode === 'SourceConditionNotMet' && opts.sourceIfMatch === undefined) {
        throw new TransientError(`${src} changed while being copied; retry`, { provider: PROVIDER, key: src, cause: err });
      }
      if (err.code === 'NotFound' && !isCloudmuxError(e)) throw new NotFoundError(`no object at ${src}`, { provider: PROVIDER, key: src, cause: err });
      throw err;
    }
  }

  async updateMetadata(key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
    validateKey(key, PROVIDER);
    validateMetadata(opts.metadata, PROVIDER, key);
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    const client = this.container.getBlobClient(this.blobName(key));
    const signal = opts.signal;
    try {
      for (let attempt = 0; ; attempt++) {
        const props = await client.getProperties({ abortSignal: signal });
        if (opts.ifMatch !== undefined && unquote(props.etag) !== unquote(opts.ifMatch)) {
          throw new PreconditionFailedError(`etag is ${unquote(props.etag)}, not ${opts.ifMatch}`, { provider: PROVIDER, key });
        }
        const sha = props.metadata?.[SHA256_KEY];
        const metadata: Record<string, string> = { ...(sha ? { [SHA256_KEY]: sha } : {}), ...opts.metadata };
        try {
          // Set Blob Metadata changes the etag; the condition keeps it from landing on a newer version than the one read.
          let res: { etag?: string; lastModified?: Date; versionId?: string } = await client.setMetadata(metadata, { conditions: { ifMatch: props.etag }, abortSignal: signal });
          const contentType = opts.contentType ?? props.contentType ?? DEFAULT_CONTENT_TYPE;
          if (contentType !== (props.contentType ?? DEFAULT_CONTENT_TYPE)) {
            res = await client.setHTTPHeaders(this.httpHeaders(props, contentType), { conditions: res.etag ? { ifMatch: res.etag } : undefined, abortSignal: signal });
          }
          return this.metaFrom(key, { ...props, metadata, contentType, etag: res.etag ?? props.etag, lastModified: res.lastModified ?? props.lastModified, versionId: res.versionId ?? props.versionId });
        } catch (e) {
          const err = this.mapError(e, key, signal);
          // Someone else rewrote it between our read and write; without a caller condition, read again.
          if (err.code === 'PreconditionFailed' && opts.ifMatch === undefined && attempt < 2) continue;
          throw err;
        }
      }
    } catch (e) {
      throw this.mapError(e, key, signal);
    }
  }

  /**
   * A service SAS URL for one blob. GET: read (with `contentType`, the response's Content-Type is
   * overridden). PUT: create/write; the request must carry `x-ms-blob-type: BlockBlob`.
   */
  async presign(key: string, opts: PresignOptions): Promise<string> {
    validateKey(key, PROVIDER);
    if (!this.sharedKey) {
      throw new NotSupportedError('presign needs the storage account key (SAS and Azure AD credentials cannot sign)', { provider: PROVIDER, key });
    }
    if (!Number.isSafeInteger(opts.expiresIn) || opts.expiresIn < 1) throw new InvalidArgumentError(`expiresIn must be a positive number of seconds, got ${opts.expiresIn}`, { provider: PROVIDER, key });
    if (opts.method !== 'GET' && opts.method !== 'PUT') throw new InvalidArgumentError(`presign method must be GET or PUT, got ${String(opts.method)}`, { provider: PROVIDER, key });
    const blob = this.container.getBlobClient(this.blobName(key));
    const now = Date.now();
    const sas = generateBlobSASQueryParameters({
      containerName: this.config.container,
      blobName: this.blobName(key),
      permissions: BlobSASPermissions.parse(opts.method === 'GET' ? 'r' : 'cw'),
      // Allow for clock skew between this host and Azure.
      startsOn: new Date(now - 5 * 60_000),
      expiresOn: new Date(now + opts.expiresIn * 1000),
      protocol: this.config.endpoint.startsWith('https:') ? SASProtocol.Https : SASProtocol.HttpsAndHttp,
      ...(opts.method === 'GET' && opts.contentType ? { contentType: opts.contentType } : {}),
    }, this.sharedKey).toString();
    return `${blob.url}?${sas}`;
  }

  async close(): Promise<void> {
    this.data?.close();
  }

  toString(): string {
    const base = `az://${this.config.account}/${this.config.container}${this.config.prefix ? `/${this.config.prefix}` : ''}`;
    const standard = `https://${this.config.account}.blob.core.windows.net`;
    return this.config.endpoint === standard ? base : `${base}?endpoint=${this.config.endpoint}`;
  }

  // ---- resumable uploads (src/core/resumable.ts): staged blocks with ids derived from the handle ----

  get multipartThreshold(): number {
    return this.config.singleShotThreshold;
  }

  uploadPartSize(size: number): number {
    return Math.min(MAX_BLOCK_SIZE, Math.max(this.config.blockSize, Math.ceil(size / MAX_BLOCKS)));
  }

  /** Sends nothing: an Azure upload is just the block ids it will stage, which the handle fixes. */
  async startUpload(key: string, opts: StartUploadOptions): Promise<UploadHandle> {
    validateKey(key, PROVIDER);
    validateMetadata(opts.metadata, PROVIDER, key);
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    if (!Number.isSafeInteger(opts.size) || opts.size < 0) throw new InvalidArgumentError(`size must be a byte count, got ${opts.size}`, { provider: PROVIDER, key });
    if (!Number.isSafeInteger(opts.partSize) || opts.partSize < 1 || opts.partSize > MAX_BLOCK_SIZE) {
      throw new InvalidArgumentError(`partSize must be 1..${MAX_BLOCK_SIZE} bytes, got ${opts.partSize}`, { provider: PROVIDER, key });
    }
    if (Math.ceil(opts.size / opts.partSize) > MAX_BLOCKS) {
      throw new InvalidArgumentError(`${opts.size} bytes need more than ${MAX_BLOCKS} blocks of ${opts.partSize}`, { provider: PROVIDER, key });
    }
    const handle: AzureUploadHandle = {
      key, uploadId: randomBytes(8).toString('hex'), size: opts.size, partSize: opts.partSize,
      contentType: opts.contentType ?? DEFAULT_CONTENT_TYPE, metadata: { ...opts.metadata },
      account: this.config.account, container: this.config.container, prefix: this.config.prefix,
    };
    return encodeHandle(PROVIDER, { ...handle });
  }

  /** Put Block with its transactional MD5 (retried in place on a retryable failure, like a streamed put's blocks). */
  async uploadPart(handle: UploadHandle, partNumber: number, bytes: Uint8Array, opts: UploadPartOptions = {}): Promise<UploadedPart> {
    const h = this.uploadHandle(handle);
    checkPart(h, partNumber, bytes.byteLength, PROVIDER, h.key);
    throwIfAborted(opts.signal, { provider: PROVIDER, key: h.key });
    const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    await this.stageBlock(h.key, blockId(h.uploadId, partNumber), buf, opts.signal ?? new AbortController().signal);
    return { partNumber, size: bytes.byteLength };
  }

  /**
   * The uncommitted blocks of this upload (Get Block List). Azure cannot tell a finished or
   * abandoned upload from a fresh one: either lists no blocks (a commit discards uncommitted ones).
   */
  async listParts(handle: UploadHandle, opts: SignalOptions = {}): Promise<UploadedPart[]> {
    const h = this.uploadHandle(handle);
    throwIfAborted(opts.signal, { provider: PROVIDER, key: h.key });
    const client = this.container.getBlockBlobClient(this.blobName(h.key));
    let listed: { name?: string; size?: number }[];
    try {
      const res = await client.getBlockList('uncommitted', { abortSignal: opts.signal });
      listed = res.uncommittedBlocks ?? [];
    } catch (e) {
      const err = this.mapError(e, h.key, opts.signal);
      if (err.code === 'NotFound') return [];
      throw err;
    }
    const ours = new Map<string, number>();
    const count = Math.max(1, Math.ceil(h.size / h.partSize));
    for (let n = 1; n <= count; n++) ours.set(blockId(h.uploadId, n), n);
    const parts: UploadedPart[] = [];
    for (const b of listed) {
      const n = b.name === undefined ? undefined : ours.get(b.name);
      if (n !== undefined) parts.push({ partNumber: n, size: b.size ?? 0 });
    }
    return parts.sort((a, b) => a.partNumber - b.partNumber);
  }

  /** Put Block List with the blob's Content-MD5 (when given) and `cloudmux_sha256`. */
  async completeUpload(handle: UploadHandle, parts: readonly UploadedPart[], opts: CompleteUploadOptions): Promise<ObjectMeta> {
    const h = this.uploadHandle(handle);
    const key = h.key;
    checkPartsTile(h, parts, PROVIDER, key);
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    const client = this.container.getBlockBlobClient(this.blobName(key));
    const checksums: Checksums = { sha256: opts.checksums.sha256.toLowerCase(), ...(opts.checksums.md5 ? { md5: opts.checksums.md5.toLowerCase() } : {}) };
    const metadata = { ...h.metadata, [SHA256_KEY]: checksums.sha256! };
    try {
      const res = await client.commitBlockList(parts.map((p) => blockId(h.uploadId, p.partNumber)), {
        blobHTTPHeaders: { blobContentType: h.contentType, ...(checksums.md5 ? { blobContentMD5: Buffer.from(checksums.md5, 'hex') } : {}) },
        metadata,
        abortSignal: opts.signal,
      });
      return this.writtenMeta(key, h.size, h.contentType, metadata, checksums, res);
    } catch (e) {
      throw this.mapError(e, key, opts.signal);
    }
  }

  /** Nothing to send: Azure has no call that drops uncommitted blocks; they expire after 7 days. */
  async abortUpload(handle: UploadHandle, opts: SignalOptions = {}): Promise<void> {
    const h = this.uploadHandle(handle);
    throwIfAborted(opts.signal, { provider: PROVIDER, key: h.key });
  }

  private uploadHandle(handle: UploadHandle): AzureUploadHandle {
    const h = decodeHandle<AzureUploadHandle>(handle, PROVIDER);
    if (h.account !== this.config.account || h.container !== this.config.container || h.prefix !== this.config.prefix || !/^[0-9a-f]{16}$/.test(String(h.uploadId))) {
      throw new InvalidArgumentError(`the upload handle belongs to az://${String(h.account)}/${String(h.container)}, not ${this.toString()}`, { provider: PROVIDER, key: h.key });
    }
    validateKey(h.key, PROVIDER);
    return h;
  }

  // ---- put ----

  private async putSingle(key: string, buf: Buffer, opts: PutOptions): Promise<ObjectMeta> {
    const checksums = this.digestAndCheck(buf, key, opts);
    const md5 = Buffer.from(checksums.md5!, 'hex');
    const contentType = opts.contentType ?? DEFAULT_CONTENT_TYPE;
    const metadata = { ...opts.metadata, [SHA256_KEY]: checksums.sha256! };
    const conditions = this.writeConditions(opts);
    if (this.data) {
      const b64 = md5.toString('base64');
      const res = await this.data.putBlob(this.blobName(key), buf, {
        blobContentType: contentType, blobContentMD5: b64, transactionalMD5: b64, metadata, ifMatch: conditions?.ifMatch, ifNoneMatch: conditions?.ifNoneMatch,
      }, opts.signal);
      return this.writtenMeta(key, buf.byteLength, contentType, metadata, checksums, res);
    }
    // transactionalContentMD5 is read by the SDK at run time though its type omits it for Put Blob.
    const uploadOptions: BlockBlobUploadOptions & { transactionalContentMD5?: Uint8Array } = {
      blobHTTPHeaders: { blobContentType: contentType, blobContentMD5: md5 },
      transactionalContentMD5: md5,
      metadata,
      conditions,
      abortSignal: opts.signal,
    };
    const res = await this.container.getBlockBlobClient(this.blobName(key)).upload(buf, buf.byteLength, uploadOptions);
    return this.writtenMeta(key, buf.byteLength, contentType, metadata, checksums, res);
  }

  /**
   * SHA-256 and MD5 of a single-shot body, checked against `expect`. An MD5 handed over in `expect`
   * is not computed again: it goes to Azure as the transactional Content-MD5, and Azure refuses the
   * bytes unless they hash to it, which is the same check done where the bytes land, without a
   * software MD5 pass here (the slowest digest we compute; SHA-256 is hardware-assisted).
   */
  private digestAndCheck(buf: Buffer, key: string, opts: PutOptions): Checksums {
    const given = handedOverMd5(opts.expect);
    const hasher = new MultiHasher(given ? [] : ['md5']);
    hasher.update(buf);
    const checksums = hasher.digest();
    if (given) checksums.md5 = given;
    this.checkExpect(checksums, key, opts);
    return checksums;
  }

  private checkExpect(actual: Checksums, key: string, opts: PutOptions): void {
    if (opts.expect && checksumMismatches(opts.expect, actual).length > 0) {
      throw new IntegrityError('body does not match the expected checksums; nothing was written', { provider: PROVIDER, key });
    }
  }

  private async putStream(key: string, body: Body, opts: PutOptions): Promise<ObjectMeta> {
    const size = opts.size;
    // Azure commits at most 50 000 blocks: size them to fit when the caller gives the size, else grow them as the stream goes on.
    const base = this.config.blockSize;
    const fixed = size !== undefined ? Math.max(base, Math.ceil(size / MAX_BLOCKS)) : undefined;
    const sizeAt = (i: number): number => fixed ?? Math.min(MAX_BLOCK_SIZE, base * 2 ** Math.floor(i / BLOCKS_PER_SIZE_STEP));
    const pool = new BlockPool();
    const source = pooledBlocks(bodyChunks(body), sizeAt, pool)[Symbol.asyncIterator]();
    const nextBlock = async (): Promise<IteratorResult<Buffer>> => {
      try {
        return await source.next();
      } catch (e) {
        // The caller's stream failed, not Azure; a CloudmuxError (e.g. from another store's get) keeps its own code.
        if (e instanceof CloudmuxError) throw e;
        throw new ProviderError(`reading the body failed: ${(e as Error)?.message ?? String(e)}`, { provider: PROVIDER, key, cause: e });
      }
    };
    const first = await nextBlock();
    const second = first.done ? first : await nextBlock();
    if (second.done) {
      const buf = first.done ? Buffer.alloc(0) : first.value;
      if (buf.byteLength <= this.config.singleShotThreshold) return this.putSingle(key, buf, opts);
    }
    await this.precheckConditions(key, opts);
    const client = this.container.getBlockBlobClient(this.blobName(key));

    const signal = opts.signal;
    const stageAbort = new AbortController();
    const onAbort = (): void => stageAbort.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const uploadId = randomBytes(8).toString('hex');
    const ids: string[] = [];
    // Each block carries its own transactional MD5 (Azure checks it on arrival). The blob's
    // Content-MD5 is a second, whole-blob MD5 pass, skipped when `expect` hands over both the MD5
    // and the SHA-256: the SHA-256 computed here proves these are the bytes that MD5 describes.
    const givenMd5 = opts.expect?.sha256 !== undefined ? handedOverMd5(opts.expect) : undefined;
    const hasher = new MultiHasher(givenMd5 ? [] : ['md5']);
    const inflight = new Set<Promise<void>>();
    let failure: unknown;
    let bytes = 0;
    const stage = (block: Buffer): void => {
      if (ids.length >= MAX_BLOCKS) {
        throw new InvalidArgumentError(`body exceeds Azure's ${MAX_BLOCKS} blocks per blob (opts.size was ${size ?? 'not given'}); give the real size or a larger blockSize`, { provider: PROVIDER, key });
      }
      hasher.update(block);
      bytes += block.byteLength;
      const id = blockId(uploadId, ids.length);
      ids.push(id);
      const p: Promise<void> = this.stageBlock(key, id, block, stageAbort.signal)
        .then(
          () => pool.give(block),
          (e: unknown) => {
            // The failed request's buffer is dropped, not reused: nothing may still be writing from it then.
            failure ??= e;
            stageAbort.abort();
          },
        )
        .finally(() => inflight.delete(p));
      inflight.add(p);
    };
    try {
      for (const r of [first, second]) if (!r.done) stage(r.value);
      for (;;) {
        // Fill the next block while the staged ones upload; then wait for a free slot.
        throwIfAborted(signal, { provider: PROVIDER, key });
        const next = await nextBlock();
        if (next.done || failure !== undefined) break;
        while (inflight.size >= this.config.uploadConcurrency && failure === undefined) await Promise.race(inflight);
        if (failure !== undefined) break;
        stage(next.value);
      }
      await Promise.all(inflight);
      if (failure !== undefined) throw failure;
      throwIfAborted(signal, { provider: PROVIDER, key });
      const checksums = hasher.digest();
      if (givenMd5) checksums.md5 = givenMd5;
      this.checkExpect(checksums, key, opts);
      const contentType = opts.contentType ?? DEFAULT_CONTENT_TYPE;
      const metadata = { ...opts.metadata, [SHA256_KEY]: checksums.sha256! };
      // Azure leaves a block blob's Content-MD5 empty unless the committer sets it; set it so readers can verify.
      const res = await client.commitBlockList(ids, {
        blobHTTPHeaders: { blobContentType: contentType, blobContentMD5: Buffer.from(checksums.md5!, 'hex') },
        metadata,
        conditions: this.writeConditions(opts),
        abortSignal: signal,
      });
      return this.writtenMeta(key, bytes, contentType, metadata, checksums, res);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      if (inflight.size > 0) {
        stageAbort.abort();
        await Promise.allSettled(inflight);
      }
      await source.return?.(undefined);
    }
  }

  private async stageBlock(key: string, id: string, block: Buffer, signal: AbortSignal): Promise<void> {
    const md5 = md5Bytes(block);
    const name = this.blobName(key);
    const client = this.data ? undefined : this.container.getBlockBlobClient(name);
    for (let attempt = 1; ; attempt++) {
      try {
        if (client) await client.stageBlock(id, block, block.byteLength, { transactionalContentMD5: md5, abortSignal: signal });
        else await this.data!.putBlock(name, id, block, md5.toString('base64'), signal);
        return;
      } catch (e) {
        const err = this.mapError(e, key, signal);
        if (!err.retryable || attempt >= STAGE_ATTEMPTS || signal.aborted) throw err;
        const backoff = Math.max(err.retryAfterMs ?? 0, 100 * 2 ** attempt * Math.random());
        await sleep(backoff, undefined, { signal }).catch(() => undefined);
      }
    }
  }

  /** Fails a staged put before uploading when its condition already cannot hold (the commit re-checks atomically). */
  private async precheckConditions(key: string, opts: PutOptions): Promise<void> {
    if (opts.ifNoneMatch === undefined && opts.ifMatch === undefined) return;
    let current: ObjectMeta | undefined;
    try {
      current = await this.head(key, { signal: opts.signal });
    } catch (e) {
      if (!isCloudmuxError(e, 'NotFound')) throw e;
    }
    if (opts.ifNoneMatch === '*' && current) throw new AlreadyExistsError(`${key} already exists`, { provider: PROVIDER, key });
    if (opts.ifMatch !== undefined) {
      if (!current) throw new NotFoundError(`no object at ${key} to compare with ifMatch`, { provider: PROVIDER, key });
      if (current.etag !== unquote(opts.ifMatch)) throw new PreconditionFailedError(`etag is ${current.etag}, not ${opts.ifMatch}`, { provider: PROVIDER, key });
    }
  }

  private writeConditions(opts: PutOptions): BlobRequestConditions | undefined {
    if (opts.ifNoneMatch === '*') return { ifNoneMatch: '*' };
    if (opts.ifMatch !== undefined) return { ifMatch: quote(opts.ifMatch) };
    return undefined;
  }

  /** Maps a put failure, telling "ifMatch on a missing key" (NotFound) from a changed etag. */
  private async writeError(e: unknown, key: string, opts: PutOptions): Promise<CloudmuxError> {
    const err = this.mapError(e, key, opts.signal);
    if (opts.ifNoneMatch === '*' && err.code === 'PreconditionFailed') return new AlreadyExistsError(`${key} already exists`, { provider: PROVIDER, key, cause: err });
    if (opts.ifMatch !== undefined && err.code === 'PreconditionFailed') {
      try {
        await this.head(key);
      } catch (h) {
        if (isCloudmuxError(h, 'NotFound')) return new NotFoundError(`no object at ${key} to compare with ifMatch`, { provider: PROVIDER, key, cause: err });
      }
    }
    return err;
  }

  private writtenMeta(key: string, size: number, contentType: string, metadata: Record<string, string>, checksums: Checksums, res: { etag?: string; lastModified?: Date; versionId?: string }): ObjectMeta {
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

  // ---- get ----

  /** Get Blob through the data client, or through the SDK (its response's getters copied into a plain object). */
  private async download(key: string, offset: number, count: number | undefined, conditions: BlobRequestConditions, signal: AbortSignal | undefined): Promise<DownloadResponse> {
    if (this.data) return this.data.getBlob(this.blobName(key), { offset, count, ifMatch: conditions.ifMatch, ifNoneMatch: conditions.ifNoneMatch }, signal);
    const res: BlobDownloadResponseParsed = await this.container.getBlobClient(this.blobName(key)).download(offset, count, { conditions, abortSignal: signal, maxRetryRequests: 0 });
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

  private getResult(key: string, res: DownloadResponse, opts: GetOptions, ranged: boolean): GetResult {
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
    const meta = this.metaFrom(key, {
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
    const body = src ? new ResponseBody(src, (e) => this.mapError(e, key, opts.signal), verify ? this.verifier(key, meta) : undefined) : Readable.from([]);
    const result: GetResult = { meta, body };
    if (ranged) result.range = { offset, length };
    return result;
  }

  /** Checks a whole download against the stored digest (SHA-256, else MD5) and its length. */
  private verifier(key: string, meta: ObjectMeta): BodyCheck {
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

  // ---- delete ----

  private async deleteBatch(keys: string[], result: DeleteManyResult, signal: AbortSignal | undefined): Promise<void> {
    const clients = keys.map((k) => this.container.getBlobClient(this.blobName(k)));
    const byUrl = new Map(clients.map((c, i) => [c.url, keys[i]!]));
    let res;
    try {
      res = await this.container.getBlobBatchClient().deleteBlobs(clients, { deleteSnapshots: 'include', abortSignal: signal });
    } catch (e) {
      const err = this.mapError(e, undefined, signal);
      for (const key of keys) result.errors.push({ key, error: err });
      return;
    }
    const seen = new Set<string>();
    res.subResponses.forEach((sub, i) => {
      const key = byUrl.get(sub._request.url) ?? keys[i]!;
      seen.add(key);
      if (sub.status < 300 || sub.status === 404) {
        result.deleted.push(key);
        return;
      }
      const err = mapAzureError({ name: 'RestError', statusCode: sub.status, code: sub.errorCode, message: sub.statusMessage }, this.errorContext(key, signal));
      result.errors.push({ key, error: err });
    });
    for (const key of keys) {
      if (!seen.has(key)) result.errors.push({ key, error: new TransientError('the blob batch response had no answer for this key', { provider: PROVIDER, key }) });
    }
  }

  private async deleteParallel(keys: string[], result: DeleteManyResult, signal: AbortSignal | undefined): Promise<void> {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < keys.length) {
        const key = keys[next++]!;
        try {
          await this.delete(key, { signal });
          result.deleted.push(key);
        } catch (error) {
          result.errors.push({ key, error: error as Error });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.config.deleteConcurrency, keys.length) }, worker));
  }

  // ---- list ----

  /** One lazy server listing in server (UTF-16) order; a hierarchy page's prefixes merged among its blobs. */
  private async *serverListing(prefix: string, delimiter: string | undefined, pageSize: number | undefined, signal: AbortSignal | undefined): AsyncGenerator<ListedEntry> {
    const options = { prefix, includeMetadata: true, abortSignal: signal };
    const settings = pageSize ? { maxPageSize: Math.min(Math.max(1, Math.floor(pageSize)), 5000) } : {};
    const pages = delimiter
      ? this.container.listBlobsByHierarchy(delimiter, options).byPage(settings)
      : this.container.listBlobsFlat(options).byPage(settings);
    const iterator = pages[Symbol.asyncIterator]();
    try {
      for (;;) {
        throwIfAborted(signal, { provider: PROVIDER });
        let page;
        try {
          page = await iterator.next();
        } catch (e) {
          throw this.mapError(e, undefined, signal);
        }
        if (page.done) return;
        const segment = page.value.segment as { blobItems: BlobItem[]; blobPrefixes?: { name: string }[] };
        // Hierarchical-namespace accounts list directories as empty marker blobs; they are not objects.
        const items = segment.blobItems.filter((b) => b.metadata?.hdi_isfolder !== 'true').map((b) => ({ name: b.name, blob: b }));
        const prefixes = (segment.blobPrefixes ?? []).map((p) => ({ name: p.name }));
        yield* mergeServerOrder<ListedEntry>(items, prefixes);
      }
    } finally {
      await iterator.return?.(undefined);
    }
  }

  /** Whether a rolled-up prefix still holds a key after `startAfter` (only in doubt when startAfter lies inside it). */
  private async prefixHasKeyAfter(prefix: string, startAfter: string, signal: AbortSignal | undefined): Promise<boolean> {
    if (compareKeys(prefix, startAfter) > 0) return true;
    if (!startAfter.startsWith(prefix)) return false;
    for await (const e of this.serverListing(this.namePrefix + prefix, undefined, undefined, signal)) {
      if (compareKeys(e.name.slice(this.namePrefix.length), startAfter) > 0) return true;
    }
    return false;
  }

  // ---- helpers ----

  private blobName(key: string): string {
    return this.namePrefix + key;
  }

  private errorContext(key: string | undefined, signal: AbortSignal | undefined): { key?: string; account: string; container: string; signal?: AbortSignal } {
    return { key, account: this.config.account, container: this.config.container, signal };
  }

  private mapError(e: unknown, key: string | undefined, signal: AbortSignal | undefined): CloudmuxError {
    if (e === undefined && signal?.aborted) return new AbortedError('operation aborted', { provider: PROVIDER, key, cause: signal.reason });
    return mapAzureError(e, this.errorContext(key, signal));
  }

  private metaFrom(key: string, p: BlobPropsLike): ObjectMeta {
    const metadata = { ...(p.metadata ?? {}) };
    return {
      key,
      size: p.contentLength ?? 0,
      etag: unquote(p.etag),
      version: p.versionId ?? unquote(p.etag),
      lastModified: p.lastModified ?? new Date(0),
      contentType: p.contentType ?? DEFAULT_CONTENT_TYPE,
      metadata,
      checksums: azureChecksums(metadata, p.contentMD5 ?? p.blobContentMD5),
    };
  }

  private summaryFrom(key: string, b: BlobItem): ObjectSummary {
    return {
      key,
      size: b.properties.contentLength ?? 0,
      etag: unquote(b.properties.etag),
      lastModified: b.properties.lastModified,
      version: b.versionId ?? unquote(b.properties.etag),
      checksums: azureChecksums(b.metadata, b.properties.contentMD5),
    };
  }

  /** Set Blob Properties replaces every HTTP header, so carry the ones not being changed. */
  private httpHeaders(p: BlobPropsLike, contentType: string): BlobHTTPHeaders {
    return {
      blobContentType: contentType,
      blobContentMD5: p.contentMD5,
      blobContentEncoding: p.contentEncoding,
      blobContentLanguage: p.contentLanguage,
      blobContentDisposition: p.contentDisposition,
      blobCacheControl: p.cacheControl,
    };
  }
}
