import { Transform, type TransformCallback } from 'node:stream';
import { abortedError } from '../core/index.js';
import type { Body, CopyOptions, GetOptions, GetResult, ListItem, ListOptions, ObjectMeta, PutOptions, SignalOptions } from '../core/index.js';
import type { BlobStore } from '../core/index.js';
import { ForwardingStore } from '../layers/forwarding-store.js';

/**
 * A token bucket: `rate` tokens per second, bursts up to `burst`. A taker that overdraws waits
 * until the debt is repaid, so the long-run rate holds with any number of concurrent takers.
 */
export class TokenBucket {
  private available: number;
  private last = Date.now();

  constructor(readonly rate: number, readonly burst: number = rate) {
    this.available = burst;
  }

  async take(n: number, signal?: AbortSignal): Promise<void> {
    const now = Date.now();
    this.available = Math.min(this.burst, this.available + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    this.available -= n;
    if (this.available >= 0) return;
    const waitMs = (-this.available / this.rate) * 1000;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(resolve, waitMs);
      signal?.addEventListener('abort', () => {
        clearTimeout(t);
        reject(abortedError(signal));
      }, { once: true });
    });
  }
}

export interface TransferLimits {
  /** Bytes per second read from the store (`--bwlimit`). */
  bytesPerSecond?: number;
  /** Requests per second (`--tpslimit`); a listing counts one per object page of 1000. */
  opsPerSecond?: number;
}

/**
 * Limits a store's request rate and the bandwidth of the bodies read from it. Used by migrate for
 * `--bwlimit` / `--tpslimit`: each byte moved is read from the source exactly once, so limiting
 * source reads limits the transfer.
 */
export class TransferLimitStore extends ForwardingStore {
  protected readonly layerName = 'TransferLimit';
  private readonly bytes: TokenBucket | undefined;
  private readonly ops: TokenBucket | undefined;

  constructor(inner: BlobStore, limits: TransferLimits, shared?: { bytes?: TokenBucket; ops?: TokenBucket }) {
    super(inner);
    this.bytes = shared?.bytes ?? (limits.bytesPerSecond ? new TokenBucket(limits.bytesPerSecond) : undefined);
    this.ops = shared?.ops ?? (limits.opsPerSecond ? new TokenBucket(limits.opsPerSecond) : undefined);
  }

  override async get(key: string, opts?: GetOptions): Promise<GetResult> {
    await this.ops?.take(1, opts?.signal);
    const r = await super.get(key, opts);
    if (!this.bytes) return r;
    const bucket = this.bytes;
    const signal = opts?.signal;
    const throttle = new Transform({
      transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
        bucket.take(chunk.byteLength, signal).then(() => cb(null, chunk), cb);
      },
    });
    r.body.on('error', (e) => throttle.destroy(e));
    throttle.on('close', () => {
      if (!r.body.destroyed) r.body.destroy();
    });
    return { ...r, body: r.body.pipe(throttle) };
  }

  override async put(key: string, body: Body, opts?: PutOptions): Promise<ObjectMeta> {
    await this.ops?.take(1, opts?.signal);
    return super.put(key, body, opts);
  }

  override async head(key: string, opts?: SignalOptions): Promise<ObjectMeta> {
    await this.ops?.take(1, opts?.signal);
    return super.head(key, opts);
  }

  override async delete(key: string, opts?: SignalOptions): Promise<void> {
    await this.ops?.take(1, opts?.signal);
    return super.delete(key, opts);
  }

  override async copy(src: string, dst: string, opts?: CopyOptions): Promise<ObjectMeta> {
    await this.ops?.take(1, opts?.signal);
    return super.copy(src, dst, opts);
  }

  override async *list(opts?: ListOptions): AsyncIterable<ListItem> {
    let n = 0;
    for await (const item of super.list(opts)) {
      if (n++ % 1000 === 0) await this.ops?.take(1, opts?.signal);
      yield item;
    }
  }
}
