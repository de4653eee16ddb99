import { bodyChunks } from '../../core/body.js';
import {
  AccessDeniedError, InvalidConfigError, InvalidKeyError, NotModifiedError, NotSupportedError, PreconditionFailedError, TransientError, isCloudmuxError,
  throwIfAborted,
} from '../../core/errors.js';
import { validateKey } from '../../core/keys.js';
import { SHA256_KEY, carriedReservedMetadata, validateMetadata } from '../../core/metadata.js';
import { resolveRange } from '../../core/range.js';
import { redactInspection } from '../../core/redact.js';
import { systemMetadata } from '../../core/system-metadata.js';
import { pinnedMetadataUpdate } from '../pinned-metadata-update.js';
import type {
  BlobStore, Body, Capabilities, CopyOptions, DeleteManyResult, DeleteOptions, GetOptions, GetResult, ListItem, ListOptions, ObjectMeta,
  PresignOptions, PutOptions, SignalOptions, UpdateMetadataOptions,
} from '../../core/types.js';
import { checkCopy, checkGet, checkPut } from '../../core/validate.js';
import { ChunkIndex } from './chunk-index.js';
import { keyedChunkIds, plainChunkIds, type ChunkIdScheme } from './chunk-ids.js';
import { readChunks } from './chunk-reader.js';
import { addStats, emptyStats, hashesOffThread, refreshChunks, writeChunked, type ChunkWriterContext, type TransferStats } from './chunk-writer.js';
import { DEFAULT_CHUNK_SIZES, checkChunkSizes, type ChunkSizes } from './chunker.js';
import { listLogical } from './listing.js';
import { Sha256WorkerPool } from './sha256-worker.js';
import { readManifest } from './manifest-io.js';
import { DEFAULT_CHUNK_PREFIX, MANIFEST_MARK, chunksForRange, markedSize, type Manifest } from './manifest.js';

export interface ChunkedStoreOptions {
  /** Chunk sizes (default 256 KiB / 1 MiB / 4 MiB). Recorded per object; readers take them from the manifest. */
  sizes?: Partial<ChunkSizes>;
  /** Objects smaller than this are stored as they are (default: the target chunk size). */
  threshold?: number;
  /** Inner key prefix of the chunks (default `.cmx-chunks/`). Keys under it are refused from callers. */
  chunkPrefix?: string;
  /**
   * 32-byte secret for keyed chunk ids (HMAC-SHA-256) and a keyed gear table, for use over an
   * EncryptedStore: see chunkIdKeyFromKeyring. Absent: SHA-256 ids and the public gear table.
   */
  idKey?: Uint8Array;
  /** More keys whose keyed chunk ids reads accept (objects written under other keyring keys). */
  readIdKeys?: Uint8Array[];
  /** Chunks stored at once by one put (default 4). */
  concurrency?: number;
  /** Chunks fetched ahead of the one a read returns (default 2). */
  readAhead?: number;
  /**
   * The grace period of the garbage collector that runs on this store (default 24 h). Writers
   * refresh chunks older than a quarter of it before relying on them, and give up a put that took
   * longer than that quarter; GC must use the same value or a larger one.
   */
  graceMs?: number;
  /**
   * Hash the whole object (its `sha256`) on a worker thread, fed through a shared ring, instead of
   * on the thread that cuts chunks (default true). Not for bodies known to be under 8 MiB, nor
   * when `expect` asks for MD5 or CRC32C. `close` stops the workers.
   */
  hashOffThread?: boolean;
  /** Clock (ms), for tests. */
  now?: () => number;
}

export const DEFAULT_GRACE_MS = 24 * 3600 * 1000;

/**
 * Deduplicated storage of large objects as content-defined chunks (docs/chunk-format.md): a put
 * of an object at or over `threshold` bytes stores each chunk once under its content id and then
 * a small manifest under the object's key; a get streams the chunks back, each checked against
 * its id. Smaller objects pass through unchanged.
 *
 * # Contract (beyond BlobStore's)
 * - Sizes, ranges, digests and `verify` are of the logical object; etags and versions are the
 *   manifest's (so conditions work as on the inner store).
 * - A manifest is written only after every chunk it names is stored: a reader never finds a
 *   manifest with missing chunks, whatever fails or is killed in between.
 * - Nothing unverified is returned: every chunk is checked against its id before any of its bytes
 *   are; a missing or altered chunk is IntegrityError.
 * - Deletes and overwrites remove manifests only; chunks no manifest uses are removed by
 *   `collectGarbage` after its grace period.
 * - `presign` is NotSupported; listings hide the chunk prefix and report logical sizes (a `head`
 *   of each object large enough to be a manifest), without digests.
 */
export class ChunkedStore implements BlobStore {
  readonly provider: string;
  readonly capabilities: Capabilities;
  readonly sizes: Readonly<ChunkSizes>;
  readonly threshold: number;
  readonly chunkPrefix: string;
  readonly graceMs: number;
  /** What every chunked put and copy through this store moved, added up. */
  readonly totals: TransferStats = emptyStats();
  private readonly ids: ChunkIdScheme;
  private readonly readIds: ChunkIdScheme[];
  private readonly index: ChunkIndex;
  private readonly concurrency: number;
  private readonly readAhead: number;
  private readonly now: () => number;
  private readonly sha256Pool: Sha256WorkerPool | undefined;

  constructor(readonly inner: BlobStore, options: ChunkedStoreOptions = {}) {
    const sizes = { ...DEFAULT_CHUNK_SIZES, ...options.sizes };
    checkChunkSizes(sizes);
    this.sizes = Object.freeze(sizes);
    this.threshold = positive(options.threshold ?? sizes.target, 'threshold');
    this.chunkPrefix = options.chunkPrefix ?? DEFAULT_CHUNK_PREFIX;
    if (!this.chunkPrefix.endsWith('/') || this.chunkPrefix.length < 2) throw new InvalidConfigError(`chunk prefix must end with / (got ${JSON.stringify(this.chunkPrefix)})`);
    validateKey(`${this.chunkPrefix}x`);
    this.ids = options.idKey ? keyedChunkIds(options.idKey) : plainChunkIds;
    this.readIds = [this.ids, ...(options.readIdKeys ?? []).map((k) => keyedChunkIds(k))];
    this.concurrency = positive(options.concurrency ?? 4, 'concurrency');
    this.readAhead = positive(options.readAhead ?? 2, 'readAhead');
    this.graceMs = positive(options.graceMs ?? DEFAULT_GRACE_MS, 'graceMs');
    this.now = options.now ?? Date.now;
    this.sha256Pool = options.hashOffThread === false ? undefined : new Sha256WorkerPool();
    this.index = new ChunkIndex(inner, this.chunkPrefix);
    this.provider = inner.provider;
    // A change feed would report manifests and chunks, not logical objects: not offered.
    this.capabilities = { ...inner.capabilities, presign: false, nativeChecksums: [], resumableUpload: false, changeFeed: false, multipartPut: false, copyFromStore: false };
  }

  async put(key: string, body: Body, opts: PutOptions = {}): Promise<ObjectMeta> {
    this.checkKey(key);
    checkPut(this.provider, this.capabilities, key, opts);
    const { head, rest } = await this.readHead(body, opts.signal, key);
    if (!rest) {
      const bytes = head.length === 1 ? head[0]! : Buffer.concat(head);
      const meta = await this.inner.put(key, bytes, opts);
      this.totals.bytesRead += bytes.byteLength;
      this.totals.bytesSent += bytes.byteLength;
      return meta;
    }
    const source = (async function* () {
      yield* head;
      yield* rest;
    })();
    const known = opts.size ?? (typeof body === 'string' ? Buffer.byteLength(body) : body instanceof Uint8Array ? body.byteLength : undefined);
    if (hashesOffThread(opts, known)) this.sha256Pool?.warm();
    await this.index.ready({ signal: opts.signal });
    const { meta, manifest, stats } = await writeChunked(this.writerContext(), key, source, opts, known);
    addStats(this.totals, stats);
    return this.describe(meta, manifest);
  }

  async get(key: string, opts: GetOptions = {}): Promise<GetResult> {
    this.checkKey(key);
    checkGet(this.provider, key, opts);
    if (opts.range) return this.getRange(key, opts);
    const r = await this.inner.get(key, { ifMatch: opts.ifMatch, ifNoneMatch: opts.ifNoneMatch, signal: opts.signal, verify: opts.verify });
    if (markedSize(r.meta.metadata) === undefined) return r;
    const manifest = await readManifest(r, this.provider, key);
    const ids = this.idsFor(manifest, key);
    const body = readChunks(this.readerContext(opts.signal), ids, key, manifest, {
      first: 0, last: manifest.chunks.length - 1, skip: 0, length: manifest.size, expectSha256: opts.verify ? manifest.sha256 : undefined,
    });
    return { meta: this.describe(r.meta, manifest), body };
  }

  /** Ranges: the manifest first (pinned to the etag `head` saw), then only the chunks the range covers. */
  private async getRange(key: string, opts: GetOptions): Promise<GetResult> {
    const range = opts.range!;
    for (let attempt = 1; ; attempt++) {
      const head = await this.inner.head(key, { signal: opts.signal });
      checkConditions(head, opts, this.provider, key);
      if (markedSize(head.metadata) === undefined) {
        return this.inner.get(key, { range, ifMatch: head.etag, signal: opts.signal });
      }
      let r: GetResult;
      try {
        r = await this.inner.get(key, { ifMatch: head.etag, signal: opts.signal });
      } catch (e) {
        // Overwritten between head and get: look again.
        if (attempt < 3 && opts.ifMatch === undefined && isCloudmuxError(e, 'PreconditionFailed')) continue;
        throw e;
      }
      const manifest = await readManifest(r, this.provider, key);
      const pr = resolveRange(range, manifest.size, this.provider, key);
      const span = chunksForRange(manifest, pr.offset, pr.length);
      const body = readChunks(this.readerContext(opts.signal), this.idsFor(manifest, key), key, manifest, { ...span, length: pr.length });
      return { meta: this.describe(r.meta, manifest), body, range: pr };
    }
  }

  async head(key: string, opts: SignalOptions = {}): Promise<ObjectMeta> {
    this.checkKey(key);
    validateKey(key, this.provider);
    for (let attempt = 1; ; attempt++) {
      const meta = await this.inner.head(key, opts);
      if (markedSize(meta.metadata) === undefined) return meta;
      try {
        return await this.describeStored(key, meta.etag, opts.signal);
      } catch (e) {
        if (attempt < 3 && isCloudmuxError(e, 'PreconditionFailed')) continue;
        throw e;
      }
    }
  }

  async delete(key: string, opts?: DeleteOptions): Promise<void> {
    this.checkKey(key);
    return this.inner.delete(key, opts);
  }

  async deleteMany(keys: Iterable<string>, opts?: SignalOptions): Promise<DeleteManyResult> {
    const ok: string[] = [];
    const errors: DeleteManyResult['errors'] = [];
    for (const k of keys) {
      try {
        this.checkKey(k);
        ok.push(k);
      } catch (e) {
        errors.push({ key: k, error: e as Error });
      }
    }
    const r = await this.inner.deleteMany(ok, opts);
    return { deleted: r.deleted, errors: [...r.errors, ...errors] };
  }

  list(opts: ListOptions = {}): AsyncIterable<ListItem> {
    return listLogical(this.inner, this.chunkPrefix, opts);
  }

  /**
   * Server-side: copies the manifest only (chunks are shared), carrying the chunk mark over. The
   * chunks the copy will name are first made fresh for GC (old ones touched), as a put does.
   */
  async copy(src: string, dst: string, opts: CopyOptions = {}): Promise<ObjectMeta> {
    this.checkKey(src);
    this.checkKey(dst);
    checkCopy(this.provider, this.capabilities, src, dst, opts);
    for (let attempt = 1; ; attempt++) {
      const started = this.now();
      const source = await this.inner.head(src, { signal: opts.signal });
      if (opts.sourceIfMatch !== undefined && opts.sourceIfMatch !== source.etag) {
        throw new PreconditionFailedError(`source etag is ${source.etag}, not ${opts.sourceIfMatch}`, { provider: this.provider, key: src });
      }
      const innerOpts: CopyOptions = { ...opts, sourceIfMatch: source.etag };
      if (opts.metadata) innerOpts.metadata = systemMetadata({ ...opts.metadata, ...carriedReservedMetadata(source.metadata) });
      try {
        if (markedSize(source.metadata) !== undefined) {
          const manifest = await readManifest(await this.inner.get(src, { ifMatch: source.etag, signal: opts.signal }), this.provider, src);
          await this.index.ready({ signal: opts.signal });
          this.totals.chunksTouched += await refreshChunks(this.writerContext(), manifest.chunks.map((c) => c.id), src, { signal: opts.signal });
          if (this.now() - started > this.graceMs / 4) {
            throw new TransientError(`chunked copy took longer than a quarter of the GC grace period; nothing was written; retry`, { provider: this.provider, key: dst });
          }
          return this.describe(await this.inner.copy(src, dst, innerOpts), manifest);
        }
        return await this.inner.copy(src, dst, innerOpts);
      } catch (e) {
        // The source was overwritten between head and copy: look again (unless the caller pinned it).
        if (attempt < 3 && opts.sourceIfMatch === undefined && isCloudmuxError(e, 'PreconditionFailed')) continue;
        throw e;
      }
    }
  }

  async updateMetadata(key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
    this.checkKey(key);
    validateKey(key, this.provider);
    validateMetadata(opts.metadata, this.provider, key);
    throwIfAborted(opts.signal, { provider: this.provider, key });
    const meta = await pinnedMetadataUpdate(this.inner, key, opts, this.provider);
    return await this.describeAfterWrite(key, meta, opts.signal);
  }

  async presign(key: string, _opts: PresignOptions): Promise<string> {
    throw new NotSupportedError('a chunked store cannot presign URLs: a large object is a manifest and chunks, not one stored object', { provider: this.provider, key });
  }

  /** Stops the hashing workers (a put still running fails with Transient), then closes the inner store. */
  async close(): Promise<void> {
    await this.sha256Pool?.close();
    await this.inner.close();
  }

  toString(): string {
    return `Chunked(${this.inner.toString()})`;
  }

  /** The manifest of a chunked object, or undefined for an object stored as it is. Errors: NotFound, IntegrityError. */
  async manifest(key: string, opts: SignalOptions = {}): Promise<Manifest | undefined> {
    this.checkKey(key);
    validateKey(key, this.provider);
    const r = await this.inner.get(key, { signal: opts.signal });
    if (markedSize(r.meta.metadata) === undefined) {
      r.body.destroy();
      return undefined;
    }
    return readManifest(r, this.provider, key);
  }

  // ------------------------------------------------------------------------------------------

  /** Keys under the chunk prefix are the layer's own: InvalidKey from callers. */
  private checkKey(key: string): void {
    if (typeof key === 'string' && key.startsWith(this.chunkPrefix)) {
      throw new InvalidKeyError(`keys under ${this.chunkPrefix} hold this store's chunks; they cannot be used as object keys`, { provider: this.provider, key });
    }
  }

  /**
   * Reads up to `threshold` bytes of the body: `rest` is undefined when the body ended first (a
   * small object), else the iterator over what is left.
   */
  private async readHead(body: Body, signal: AbortSignal | undefined, key: string): Promise<{ head: Uint8Array[]; rest?: AsyncIterator<Uint8Array> & AsyncIterable<Uint8Array> }> {
    const it = bodyChunks(body)[Symbol.asyncIterator]();
    const head: Uint8Array[] = [];
    let have = 0;
    while (have < this.threshold) {
      throwIfAborted(signal, { provider: this.provider, key });
      const n = await it.next();
      if (n.done) return { head };
      head.push(n.value);
      have += n.value.byteLength;
    }
    const rest = { next: () => it.next(), [Symbol.asyncIterator]() { return this; } } as AsyncIterator<Uint8Array> & AsyncIterable<Uint8Array>;
    return { head, rest };
  }

  private writerContext(): ChunkWriterContext {
    return {
      inner: this.inner, provider: this.provider, prefix: this.chunkPrefix, sizes: this.sizes, ids: this.ids, index: this.index,
      concurrency: this.concurrency, graceMs: this.graceMs, now: this.now, sha256Pool: this.sha256Pool,
    };
  }

  private readerContext(signal: AbortSignal | undefined): Parameters<typeof readChunks>[0] {
    return { inner: this.inner, provider: this.provider, prefix: this.chunkPrefix, readAhead: this.readAhead, signal };
  }

  /** The id scheme that checks a manifest's chunks: AccessDenied for keyed ids under another key. */
  private idsFor(m: Manifest, key: string): ChunkIdScheme {
    if (m.ids === 'sha256') return plainChunkIds;
    const keyed = this.readIds.find((ids) => ids.algorithm === 'hmac-sha256' && ids.keyCheck === m.keyCheck);
    if (keyed) return keyed;
    throw new AccessDeniedError(`the chunks of ${key} have keyed ids under a key this store does not hold (key check ${m.keyCheck})`, { provider: this.provider, key });
  }

  /** The logical view of a manifest object: its size and digest, the mark hidden. */
  private describe(meta: ObjectMeta, m: Manifest): ObjectMeta {
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries(meta.metadata)) if (k !== MANIFEST_MARK && k !== SHA256_KEY) metadata[k] = v;
    metadata[SHA256_KEY] = m.sha256;
    return { ...meta, size: m.size, metadata, checksums: { sha256: m.sha256 } };
  }

  private async describeStored(key: string, etag: string, signal: AbortSignal | undefined): Promise<ObjectMeta> {
    const r = await this.inner.get(key, { ifMatch: etag, signal });
    if (markedSize(r.meta.metadata) === undefined) {
      r.body.destroy();
      return r.meta;
    }
    return this.describe(r.meta, await readManifest(r, this.provider, key));
  }

  /** After a copy or metadata update: the logical meta of what was written (a later overwrite wins). */
  private async describeAfterWrite(key: string, meta: ObjectMeta, signal: AbortSignal | undefined): Promise<ObjectMeta> {
    if (markedSize(meta.metadata) === undefined) return meta;
    try {
      return await this.describeStored(key, meta.etag, signal);
    } catch (e) {
      if (isCloudmuxError(e, 'PreconditionFailed')) return this.head(key, { signal });
      throw e;
    }
  }
}
redactInspection(ChunkedStore);

function positive(n: number, name: string): number {
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidConfigError(`${name} must be a positive integer, got ${n}`);
  return n;
}

function checkConditions(meta: ObjectMeta, opts: GetOptions, provider: string, key: string): void {
  if (opts.ifMatch !== undefined && opts.ifMatch !== meta.etag) throw new PreconditionFailedError(`etag is ${meta.etag}, not ${opts.ifMatch}`, { provider, key });
  if (opts.ifNoneMatch !== undefined && opts.ifNoneMatch === meta.etag) throw new NotModifiedError(`etag is ${meta.etag}`, { provider, key });
}
