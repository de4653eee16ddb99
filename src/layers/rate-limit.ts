import { bodyBytes, isReplayableBody } from '../core/index.js';
import type {
  BlobStore, Body, CopyOptions, DeleteManyResult, GetOptions, GetResult, ListItem, ListOptions, ObjectMeta, PutOptions,
  SignalOptions, DeleteOptions, UpdateMetadataOptions,
} from '../core/index.js';
import { ForwardingStore } from './forwarding-store.js';
import { RelayStream, mapSource, readerOf } from './relay-stream.js';
import { mapBody } from './reopenable-body.js';
import { TokenBucket } from './token-bucket.js';

/** A rate per second, or a bucket to share with other stores (e.g. one NIC budget for all providers). */
export type Rate = number | TokenBucket;

export interface RateLimitOptions {
  /** Provider requests per second (a listing costs one per page, deleteMany one per 1000 keys). */
  opsPerSec?: Rate;
  /** Body bytes per second, uploads and downloads together. */
  bytesPerSec?: Rate;
  /** Download (get body) bytes per second. */
  readBytesPerSec?: Rate;
  /** Upload (put body) bytes per second. */
  writeBytesPerSec?: Rate;
}

/** Bodies are metered in slices this small so a limit paces a stream instead of letting 8 MiB chunks burst. */
const SLICE = 64 * 1024;
const BATCH = 1000;

/**
 * Token buckets for requests/s and bytes/s, shared by every caller of this store.
 *
 * # Contract
 * - Each request waits for an op token before it reaches the inner store.
 * - get bodies are paced as they flow to the reader; put bodies as the driver pulls them. An
 *   in-memory put body (string/Uint8Array) is charged whole before the put starts, which keeps it
 *   replayable for RetryStore; the bucket's debt then delays whoever comes next.
 * - Waiting is abortable with the call's signal (Aborted).
 * - Over a long window the rates hold within one bucket capacity (a tenth of a second by default).
 */
export class RateLimitStore extends ForwardingStore {
  protected readonly layerName = 'RateLimit';
  readonly ops: TokenBucket | undefined;
  private readonly readBuckets: TokenBucket[];
  private readonly writeBuckets: TokenBucket[];
  private readonly label: string;

  constructor(inner: BlobStore, options: RateLimitOptions = {}) {
    super(inner);
    const bucket = (r: Rate | undefined, minCapacity: number): TokenBucket | undefined => {
      if (r === undefined) return undefined;
      if (r instanceof TokenBucket) return r;
      return new TokenBucket({ ratePerSec: r, capacity: Math.max(minCapacity, r / 10) });
    };
    this.ops = bucket(options.opsPerSec, 1);
    const both = bucket(options.bytesPerSec, SLICE);
    const read = bucket(options.readBytesPerSec, SLICE);
    const write = bucket(options.writeBytesPerSec, SLICE);
    this.readBuckets = [both, read].filter((b): b is TokenBucket => b !== undefined);
    this.writeBuckets = [both, write].filter((b): b is TokenBucket => b !== undefined);
    const rate = (r: Rate | undefined, unit: string): string => (r === undefined ? '' : r instanceof TokenBucket ? r.describeRate(unit) : `${r}${unit}`);
    this.label = [rate(options.opsPerSec, ' op/s'), rate(options.bytesPerSec, ' B/s'), rate(options.readBytesPerSec, ' B/s down'), rate(options.writeBytesPerSec, ' B/s up')]
      .filter(Boolean).join(', ');
  }

  protected override describe(): string {
    return this.label ? `${this.label}, ` : '';
  }

  private async op(signal: AbortSignal | undefined, n = 1): Promise<void> {
    await this.ops?.take(n, signal);
  }

  private async bytes(buckets: TokenBucket[], n: number, signal: AbortSignal | undefined): Promise<void> {
    for (const b of buckets) await b.take(n, signal);
  }

  override async put(key: string, body: Body, opts: PutOptions = {}): Promise<ObjectMeta> {
    await this.op(opts.signal);
    if (this.writeBuckets.length === 0) return this.inner.put(key, body, opts);
    if (isReplayableBody(body)) {
      await this.bytes(this.writeBuckets, bodyBytes(body).byteLength, opts.signal);
      return this.inner.put(key, body, opts);
    }
    const buckets = this.writeBuckets;
    const signal = opts.signal;
    const paced = mapBody(body, async function* (chunks) {
      for await (const chunk of chunks) {
        for (let i = 0; i < chunk.byteLength; i += SLICE) {
          const slice = chunk.subarray(i, i + SLICE);
          for (const b of buckets) await b.take(slice.byteLength, signal);
          yield slice;
        }
      }
    });
    return this.inner.put(key, paced, opts);
  }

  override async get(key: string, opts: GetOptions = {}): Promise<GetResult> {
    await this.op(opts.signal);
    const result = await this.inner.get(key, opts);
    if (this.readBuckets.length === 0) return result;
    const source = mapSource(readerOf(result.body), { after: (chunk) => this.bytes(this.readBuckets, chunk.byteLength, opts.signal) });
    return { ...result, body: new RelayStream(source, { highWaterMark: SLICE }) };
  }

  override async head(key: string, opts: SignalOptions = {}): Promise<ObjectMeta> {
    await this.op(opts.signal);
    return this.inner.head(key, opts);
  }

  override async delete(key: string, opts: DeleteOptions = {}): Promise<void> {
    await this.op(opts.signal);
    return this.inner.delete(key, opts);
  }

  override async deleteMany(keys: Iterable<string>, opts: SignalOptions = {}): Promise<DeleteManyResult> {
    const all = [...keys];
    await this.op(opts.signal, Math.max(1, Math.ceil(all.length / BATCH)));
    return this.inner.deleteMany(all, opts);
  }

  override async copy(src: string, dst: string, opts: CopyOptions = {}): Promise<ObjectMeta> {
    await this.op(opts.signal);
    return this.inner.copy(src, dst, opts);
  }

  override async updateMetadata(key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
    await this.op(opts.signal);
    return this.inner.updateMetadata(key, opts);
  }

  override async *list(opts: ListOptions = {}): AsyncGenerator<ListItem> {
    const page = opts.pageSize ?? BATCH;
    await this.op(opts.signal);
    let n = 0;
    for await (const item of this.inner.list(opts)) {
      if (++n % page === 0) await this.op(opts.signal);
      yield item;
    }
  }
}
