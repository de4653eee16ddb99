import { EventEmitter } from 'node:events';
import { NotSupportedError, PASSES_THROUGH, changeFeed, copyFromStoreOf, resumableUploads } from '../core/index.js';
import type {
  BlobStore, Body, Capabilities, ChangePage, ChecksumAlgorithm, ChangesSinceOptions, CompleteUploadOptions, CopyOptions, DeleteManyResult, GetOptions, GetResult, ListItem, ListOptions,
  ObjectMeta, PresignOptions, PutOptions, ResumableUploads, SignalOptions, DeleteOptions, StartUploadOptions, UpdateMetadataOptions, UploadHandle,
  UploadPartOptions, UploadedPart,
} from '../core/index.js';
import { redactInspection } from '../core/redact.js';

/**
 * Base of every layer: forwards each BlobStore method to `inner` unchanged, so a layer overrides
 * only the methods its concern touches and can never forget one. `toString()` nests:
 * `Retry(Breaker(s3://bucket/prefix))`. `provider` and `capabilities` are the inner store's, so
 * errors and metrics keep naming the real provider whatever wraps it.
 */
export abstract class ForwardingStore<Events extends object = Record<never, never>> implements BlobStore {
  /** The label shown in `toString()`, e.g. `Retry`. */
  protected abstract readonly layerName: string;
  private readonly emitter = new EventEmitter();

  constructor(readonly inner: BlobStore) {}

  /** Every layer built on this one hands bytes, keys and metadata on unchanged (see storeBeneath). */
  get [PASSES_THROUGH](): BlobStore {
    return this.inner;
  }

  /** Observes this layer's events (each layer documents its own). Listeners must not throw. */
  on<E extends keyof Events & string>(event: E, listener: (payload: Events[E]) => void): this {
    this.emitter.on(event, listener);
    return this;
  }

  off<E extends keyof Events & string>(event: E, listener: (payload: Events[E]) => void): this {
    this.emitter.off(event, listener);
    return this;
  }

  protected emit<E extends keyof Events & string>(event: E, payload: Events[E]): void {
    // A throwing observer must not turn a store call into a failure.
    try {
      this.emitter.emit(event, payload);
    } catch {
      /* observers are best-effort */
    }
  }

  get provider(): string {
    return this.inner.provider;
  }

  get capabilities(): Capabilities {
    return this.inner.capabilities;
  }

  put(key: string, body: Body, opts?: PutOptions): Promise<ObjectMeta> {
    return this.inner.put(key, body, opts);
  }

  get(key: string, opts?: GetOptions): Promise<GetResult> {
    return this.inner.get(key, opts);
  }

  head(key: string, opts?: SignalOptions): Promise<ObjectMeta> {
    return this.inner.head(key, opts);
  }

  delete(key: string, opts?: DeleteOptions): Promise<void> {
    return this.inner.delete(key, opts);
  }

  deleteMany(keys: Iterable<string>, opts?: SignalOptions): Promise<DeleteManyResult> {
    return this.inner.deleteMany(keys, opts);
  }

  list(opts?: ListOptions): AsyncIterable<ListItem> {
    return this.inner.list(opts);
  }

  copy(src: string, dst: string, opts?: CopyOptions): Promise<ObjectMeta> {
    return this.inner.copy(src, dst, opts);
  }

  updateMetadata(key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
    return this.inner.updateMetadata(key, opts);
  }

  presign(key: string, opts: PresignOptions): Promise<string> {
    return this.inner.presign(key, opts);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  // Resumable uploads pass straight through: parts are plain bytes every layer here (retry,
  // breaker, timeout, rate limit, instrumentation) may hand on unchanged, and `capabilities` is the
  // inner store's, so `resumableUploads(layer)` finds them exactly when the inner store has them.
  // A layer that transforms bytes must declare `resumableUpload: false` instead.

  private resumable(): ResumableUploads {
    const r = resumableUploads(this.inner);
    if (!r) throw new NotSupportedError(`${this.inner.toString()} has no resumable uploads`, { provider: this.provider });
    return r;
  }

  uploadPartSize(size: number): number {
    return this.resumable().uploadPartSize(size);
  }

  get multipartThreshold(): number {
    return resumableUploads(this.inner)?.multipartThreshold ?? Number.POSITIVE_INFINITY;
  }

  get deferLastPart(): boolean {
    return resumableUploads(this.inner)?.deferLastPart === true;
  }

  get partDigests(): readonly ChecksumAlgorithm[] {
    return resumableUploads(this.inner)?.partDigests ?? [];
  }

  async startUpload(key: string, opts: StartUploadOptions): Promise<UploadHandle> {
    return this.resumable().startUpload(key, opts);
  }

  async uploadPart(handle: UploadHandle, partNumber: number, bytes: Uint8Array, opts?: UploadPartOptions): Promise<UploadedPart> {
    return this.resumable().uploadPart(handle, partNumber, bytes, opts);
  }

  async listParts(handle: UploadHandle, opts?: SignalOptions): Promise<UploadedPart[]> {
    return this.resumable().listParts(handle, opts);
  }

  async completeUpload(handle: UploadHandle, parts: readonly UploadedPart[], opts: CompleteUploadOptions): Promise<ObjectMeta> {
    return this.resumable().completeUpload(handle, parts, opts);
  }

  async abortUpload(handle: UploadHandle, opts?: SignalOptions): Promise<void> {
    await this.resumable().abortUpload(handle, opts);
  }

  // Server-side copy from another store passes through too: the inner store decides whether it can
  // reach the source (looking through the source's own pass-through layers).
  canCopyFrom(source: BlobStore): boolean {
    return copyFromStoreOf(this.inner, source) !== undefined;
  }

  async copyFromStore(source: BlobStore, srcKey: string, dstKey: string, opts?: CopyOptions): Promise<ObjectMeta> {
    const d = copyFromStoreOf(this.inner, source);
    if (!d) throw new NotSupportedError(`${this.inner.toString()} cannot copy from ${source.toString()} server-side`, { provider: this.provider, key: dstKey });
    return d.copyFromStore(source, srcKey, dstKey, opts);
  }

  // The change feed passes through for the same reason (keys, versions and etags are the inner
  // store's); a layer that changes keys or bytes must override it or declare `changeFeed: false`.
  async changesSince(cursor: string | undefined, opts?: ChangesSinceOptions): Promise<ChangePage> {
    return changeFeed(this.inner).changesSince(cursor, opts);
  }

  /** Extra words shown before the inner store, e.g. `10/s, ` in `RateLimit(10/s, memory://)`. */
  protected describe(): string {
    return '';
  }

  toString(): string {
    return `${this.layerName}(${this.describe()}${this.inner.toString()})`;
  }
}
redactInspection(ForwardingStore);

/** The BlobStore operations, as layers name them in events and metrics. */
export type StoreOp = 'put' | 'get' | 'head' | 'delete' | 'deleteMany' | 'list' | 'copy' | 'updateMetadata' | 'presign';
