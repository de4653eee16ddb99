import { Transform, type TransformCallback } from 'node:stream';
import { TransientError } from '../../src/core/index.js';
import type { BlobStore, Body, GetOptions, GetResult, ListItem, ListOptions, ObjectMeta, PutOptions, SignalOptions } from '../../src/core/index.js';
import { ForwardingStore } from '../../src/layers/forwarding-store.js';

/**
 * Fails a fraction of calls with Transient (before the call, or mid-stream for get bodies), the
 * failure mix a flaky network gives. A stand-in until the resilience engineer's FaultyStore lands.
 */
export class FlakyStore extends ForwardingStore {
  protected readonly layerName = 'Flaky';
  faults = 0;

  constructor(inner: BlobStore, private readonly rate: number, private readonly random: () => number = Math.random) {
    super(inner);
  }

  private maybeFail(op: string, key?: string): void {
    if (this.random() < this.rate) {
      this.faults++;
      throw new TransientError(`injected fault in ${op}`, { provider: this.provider, key });
    }
  }

  override async put(key: string, body: Body, opts?: PutOptions): Promise<ObjectMeta> {
    this.maybeFail('put', key);
    return super.put(key, body, opts);
  }

  override async get(key: string, opts?: GetOptions): Promise<GetResult> {
    this.maybeFail('get', key);
    const r = await super.get(key, opts);
    if (this.random() >= this.rate) return r;
    // Break the body halfway through.
    this.faults++;
    let seen = 0;
    const half = Math.floor(r.meta.size / 2);
    const breaker = new Transform({
      transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback) {
        seen += chunk.byteLength;
        if (seen > half) cb(new TransientError('injected connection reset mid-body', { key }));
        else cb(null, chunk);
      },
    });
    return { ...r, body: r.body.pipe(breaker) };
  }

  override async head(key: string, opts?: SignalOptions): Promise<ObjectMeta> {
    this.maybeFail('head', key);
    return super.head(key, opts);
  }

  override async delete(key: string, opts?: SignalOptions): Promise<void> {
    this.maybeFail('delete', key);
    return super.delete(key, opts);
  }

  override async *list(opts?: ListOptions): AsyncIterable<ListItem> {
    this.maybeFail('list');
    let n = 0;
    for await (const item of super.list(opts)) {
      if (++n % 10 === 0) this.maybeFail('list page');
      yield item;
    }
  }
}
