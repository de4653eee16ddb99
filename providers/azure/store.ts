import { createRequire } from 'node:module';
import type * as AzureIdentity from '@azure/identity';
import type * as AzureBlob from '@azure/storage-blob';
import type { BlobHTTPHeaders, BlobItem, BlobRequestConditions, ContainerClient } from '@azure/storage-blob';
import {
  copySourceOf, requireCopySource, AbortedError, AuthFailedError, CloudmuxError, InvalidArgumentError, NotSupportedError,
  bodyBytes, checkCopy, checkDelete, checkGet, checkPut, compareKeys, isReplayableBody, resolveRange, throwIfAborted, validateKey,
  validatePrefix, validKeysOf,
} from '../../src/core/index.js';
import type {
  BlobStore, Body, Capabilities, ChecksumAlgorithm, CompleteUploadOptions, CopyOptions, DeleteManyResult, GetOptions, GetResult,
  ListItem, ListOptions, ObjectMeta, ObjectSummary, PresignOptions, PutOptions, ResumableUploads, SignalOptions, DeleteOptions,
  StartUploadOptions, UpdateMetadataOptions, UploadHandle, UploadPartOptions, UploadedPart,
} from '../../src/core/index.js';
import { azureChecksums } from './checksums.js';
import { DEFAULT_CONTENT_TYPE, PROVIDER, MAX_BLOCKS, MAX_BLOCK_SIZE, type AzureTokenCredential, type ResolvedAzureConfig } from './config.js';
import { AzureDataClient, proxiedByEnvironment, type DownloadResponse } from './data-client.js';
import { mapAzureError, scrub } from './errors.js';
import { utf8Order } from './list-order.js';
import { redactInspection } from '../../src/core/redact.js';
import { putSingle, writeError } from './put.js';
import * as resumable from './resumable.js';
import * as copying from './copy.js';
import { putStream } from './block-put.js';
import { BATCH_LIMIT, deleteBatch, deleteParallel } from './delete-many.js';
import { type ListedEntry, serverListing, prefixHasKeyAfter } from './listing.js';
import { download, getResult } from './reads.js';

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

/** The properties both getProperties and download return, as far as ObjectMeta needs them. */
export interface BlobPropsLike extends Omit<DownloadResponse, 'body' | 'contentRange'> {
  contentEncoding?: string;
  contentLanguage?: string;
  contentDisposition?: string;
  cacheControl?: string;
}

/**
 * DefaultAzureCredential, imported on first use so that key- and SAS-based users never load
 * @azure/identity. Its failure says what was looked for before it (`source`), not only its own chain.
 */
function lazyDefaultCredential(source: string): AzureTokenCredential {
  let loaded: Promise<AzureTokenCredential> | undefined;
  return {
    async getToken(scopes, options) {
      loaded ??= Promise.resolve().then(() => {
        const { DefaultAzureCredential } = loadCjs('@azure/identity') as typeof AzureIdentity;
        return new DefaultAzureCredential() as unknown as AzureTokenCredential;
      });
      try {
        return await (await loaded).getToken(scopes, options);
      } catch (e) {
        const why = scrub(String((e as Error)?.message ?? e).split('\n')[0] ?? '').slice(0, 400);
        throw new AuthFailedError(`no Azure AD token: ${why}; credential: ${source}`, { provider: PROVIDER, cause: e });
      }
    },
  };
}

export function unquote(etag: string | undefined): string {
  if (!etag) return '';
  return etag.startsWith('"') && etag.endsWith('"') && etag.length >= 2 ? etag.slice(1, -1) : etag;
}

export function quote(etag: string): string {
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
 *   copyFromStore does the same from another container or prefix of the account (shared key on
 *   both, or a source with a SAS).
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
  /** @internal */
  readonly container: ContainerClient;
  private readonly sharedKey: StorageSharedKeyCredential | undefined;
  private readonly canBatch: boolean;
  /** @internal cloudmux's own client for Put Blob, Put Block and Get Blob; undefined when those go through the SDK. */
  readonly data: AzureDataClient | undefined;
  /** @internal Blob-name prefix of this store's keys: '' or `prefix/`. */
  readonly namePrefix: string;

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
      const credential = auth.kind === 'token' ? auth.credential : lazyDefaultCredential(config.credentialSource);
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
      multipartPut: true,
      copyFromStore: true,
      conditionalDelete: true,
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
        if (buf.byteLength <= this.config.singleShotThreshold) return await putSingle(this, key, buf, opts);
      }
      return await putStream(this, key, body, opts);
    } catch (e) {
      throw await writeError(this, e, key, opts);
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
          res = await download(this, key, offset, count, conditions, signal);
        } catch (e) {
          const err = this.mapError(e, key, signal);
          if (err.code === 'InvalidRange' && range && !('suffix' in range) && range.offset === 0) {
            // Azure rejects any range on an empty blob; ours reads as empty from offset 0.
            res = await download(this, key, 0, undefined, conditions, signal);
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
        return getResult(this, key, res, opts, range !== undefined);
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

  async delete(key: string, opts: DeleteOptions = {}): Promise<void> {
    checkDelete(PROVIDER, this.capabilities, key, opts);
    const blob = this.container.getBlobClient(this.blobName(key));
    try {
      await blob.delete({ deleteSnapshots: 'include', abortSignal: opts.signal, ...(opts.ifMatch !== undefined ? { conditions: { ifMatch: quote(opts.ifMatch) } } : {}) });
    } catch (e) {
      const err = this.mapError(e, key, opts.signal);
      if (err.code === 'NotFound') return;
      // A condition on a blob that is gone: deleted either way.
      if (err.code === 'PreconditionFailed' && !(await blob.exists({ abortSignal: opts.signal }).catch(() => true))) return;
      throw err;
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
      if (this.canBatch && chunk.length > 1) await deleteBatch(this, chunk, result, opts.signal);
      else await deleteParallel(this, chunk, result, opts.signal);
    }
    return result;
  }

  async *list(opts: ListOptions = {}): AsyncGenerator<ListItem> {
    const prefix = opts.prefix ?? '';
    validatePrefix(prefix, PROVIDER);
    throwIfAborted(opts.signal, { provider: PROVIDER });
    const { delimiter, startAfter, signal } = opts;
    const serverPrefix = this.namePrefix + prefix;
    const open = (p: string): AsyncIterator<ListedEntry> => serverListing(this, p, delimiter, opts.pageSize, signal);
    for await (const entry of utf8Order(open, serverPrefix, this.config.listReorderBuffer)) {
      const key = entry.name.slice(this.namePrefix.length);
      if (entry.blob) {
        if (startAfter !== undefined && compareKeys(key, startAfter) <= 0) continue;
        yield { type: 'object', ...this.summaryFrom(key, entry.blob) };
      } else {
        if (startAfter !== undefined && !(await prefixHasKeyAfter(this, key, startAfter, signal))) continue;
        yield { type: 'prefix', prefix: key };
      }
    }
  }

  async copy(src: string, dst: string, opts: CopyOptions = {}): Promise<ObjectMeta> {
    checkCopy(PROVIDER, this.capabilities, src, dst, opts);
    return copying.copyFrom(this, this, src, dst, opts);
  }

  canCopyFrom(source: BlobStore): boolean {
    return copySourceOf(source, AzureStore, (s) => this.reaches(s)) !== undefined;
  }

  /** Copy Blob from another container or prefix of this account: no bytes through this process. */
  async copyFromStore(source: BlobStore, srcKey: string, dstKey: string, opts: CopyOptions = {}): Promise<ObjectMeta> {
    const from = requireCopySource(this, source, AzureStore, (s) => this.reaches(s), dstKey);
    checkCopy(PROVIDER, this.capabilities, srcKey, dstKey, opts);
    return copying.copyFrom(this, from, srcKey, dstKey, opts);
  }

  /** True when `s` is of this account and endpoint and a Copy Blob sent here may read its blobs: both use the account's shared key (Azure authorizes a same-account source by the request's own signature), or `s` has a SAS (its blob URLs carry it). */
  private reaches(s: AzureStore): boolean {
    if (s === this) return true;
    const a = this.config;
    const b = s.config;
    if (a.endpoint !== b.endpoint || a.account !== b.account) return false;
    return b.auth.kind === 'sas' || (a.auth.kind === 'sharedKey' && b.auth.kind === 'sharedKey');
  }

  async updateMetadata(key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
    return copying.updateMetadata(this, key, opts);
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

  get partDigests(): readonly ChecksumAlgorithm[] {
    return this.config.blockMd5 ? ['md5'] : [];
  }

  /** Sends nothing: an Azure upload is just the block ids it will stage, which the handle fixes. */
  async startUpload(key: string, opts: StartUploadOptions): Promise<UploadHandle> {
    return resumable.startUpload(this, key, opts);
  }

  /** Put Block with its transactional MD5; one attempt (the caller's part engine retries in place). */
  async uploadPart(handle: UploadHandle, partNumber: number, bytes: Uint8Array, opts: UploadPartOptions = {}): Promise<UploadedPart> {
    return resumable.uploadPart(this, handle, partNumber, bytes, opts);
  }

  /**
   * The uncommitted blocks of this upload (Get Block List). Azure cannot tell a finished or
   * abandoned upload from a fresh one: either lists no blocks (a commit discards uncommitted ones).
   */
  async listParts(handle: UploadHandle, opts: SignalOptions = {}): Promise<UploadedPart[]> {
    return resumable.listParts(this, handle, opts);
  }

  /** Put Block List with the blob's Content-MD5 (when given) and `cloudmux_sha256`. */
  async completeUpload(handle: UploadHandle, parts: readonly UploadedPart[], opts: CompleteUploadOptions): Promise<ObjectMeta> {
    return resumable.completeUpload(this, handle, parts, opts);
  }

  /** Nothing to send: Azure has no call that drops uncommitted blocks; they expire after 7 days. */
  async abortUpload(handle: UploadHandle, opts: SignalOptions = {}): Promise<void> {
    return resumable.abortUpload(this, handle, opts);
  }

  // ---- put ----

  // ---- get ----

  // ---- delete ----

  // ---- list ----

  // ---- helpers ----

  /** @internal */
  blobName(key: string): string {
    return this.namePrefix + key;
  }

  /** @internal */
  errorContext(key: string | undefined, signal: AbortSignal | undefined): { key?: string; account: string; container: string; signal?: AbortSignal } {
    return { key, account: this.config.account, container: this.config.container, signal };
  }

  /** @internal */
  mapError(e: unknown, key: string | undefined, signal: AbortSignal | undefined): CloudmuxError {
    if (e === undefined && signal?.aborted) return new AbortedError('operation aborted', { provider: PROVIDER, key, cause: signal.reason });
    const err = mapAzureError(e, this.errorContext(key, signal));
    // "Not authorized" is only actionable with the credential that was refused: say which (never its value).
    if ((err.code === 'AuthFailed' || err.code === 'AccessDenied') && !err.message.includes('; credential: ')) err.message += `; credential: ${this.config.credentialSource}`;
    return err;
  }

  /** @internal */
  metaFrom(key: string, p: BlobPropsLike): ObjectMeta {
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

  /** @internal Set Blob Properties replaces every HTTP header, so carry the ones not being changed. */
  httpHeaders(p: BlobPropsLike, contentType: string): BlobHTTPHeaders {
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
redactInspection(AzureStore);
