import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';
import type { Counter, Histogram, Registry } from 'prom-client';
import { AbortedError, bodyBytes, isCloudmuxError, isReplayableBody } from '../core/index.js';
import type {
  BlobStore, Body, CopyOptions, DeleteManyResult, GetOptions, GetResult, ListItem, ListOptions, ObjectMeta, PresignOptions,
  PutOptions, SignalOptions, DeleteOptions, UpdateMetadataOptions,
} from '../core/index.js';
import { ForwardingStore, type StoreOp } from './forwarding-store.js';
import { RelayStream, readerOf } from './relay-stream.js';
import { mapBody } from './reopenable-body.js';

/** Operations as measured: `getBody` is the streaming of a get's body, apart from the request. */
export type MeasuredOp = StoreOp | 'getBody';

/** Latency bucket upper bounds, in milliseconds (the last bucket of the counts is +Inf). */
export const LATENCY_BUCKETS_MS: readonly number[] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000];

/** One finished operation. */
export interface Sample {
  /** Instance name (InstrumentedOptions.name). */
  store: string;
  provider: string;
  op: MeasuredOp;
  /** get: until the response; getBody: the whole body; list: until the first item (or the end). */
  ms: number;
  /** `ok` or the CloudmuxError code (`Error` for anything outside the taxonomy). */
  outcome: string;
  /** Body bytes moved by this operation (put: sent, getBody: received). */
  bytes?: number;
}

export interface OpStats {
  calls: number;
  outcomes: Record<string, number>;
  /** Counts per LATENCY_BUCKETS_MS bucket (not cumulative), with one more for +Inf. */
  latencyCounts: number[];
  latencySumMs: number;
  bytes: number;
}

export interface StatsSnapshot {
  store: string;
  provider: string;
  /** Body bytes received (get bodies). */
  bytesIn: number;
  /** Body bytes sent (put bodies). */
  bytesOut: number;
  ops: Partial<Record<MeasuredOp, OpStats>>;
}

export interface InstrumentedEvents {
  /** Every finished operation, as it finishes: what a health tracker feeds its EWMA from. */
  sample: Sample;
}

export interface InstrumentedOptions {
  /** Names this store in samples and metric labels (two S3 buckets are two stores). Default: the provider. */
  name?: string;
}

/**
 * Measures every operation: latency histogram, outcome by error code, body bytes in and out, per
 * provider and op. The one source the router's health tracker (`on('sample')`, `snapshot()`)
 * and the daemon's /metrics (`bindPrometheus`) read. Measuring never changes a result.
 */
export class InstrumentedStore extends ForwardingStore<InstrumentedEvents> {
  protected readonly layerName = 'Instrumented';
  readonly name: string;
  private readonly ops = new Map<MeasuredOp, OpStats>();
  private bytesIn = 0;
  private bytesOut = 0;

  constructor(inner: BlobStore, options: InstrumentedOptions = {}) {
    super(inner);
    this.name = options.name ?? inner.provider;
  }

  /** A copy of the counters since creation (or the last reset). */
  snapshot(): StatsSnapshot {
    const ops: Partial<Record<MeasuredOp, OpStats>> = {};
    for (const [op, s] of this.ops) ops[op] = { ...s, outcomes: { ...s.outcomes }, latencyCounts: [...s.latencyCounts] };
    return { store: this.name, provider: this.provider, bytesIn: this.bytesIn, bytesOut: this.bytesOut, ops };
  }

  reset(): void {
    this.ops.clear();
    this.bytesIn = 0;
    this.bytesOut = 0;
  }

  /**
   * Exports the samples to a prom-client registry: `<prefix>operation_duration_seconds`
   * (histogram; labels store, provider, op, outcome) and `<prefix>body_bytes_total` (counter;
   * labels store, provider, direction in|out). Several stores may bind to one registry.
   * Returns a function that unbinds.
   */
  bindPrometheus(registry: Registry, options: { prefix?: string } = {}): () => void {
    // Loaded here, by the caller that already has a registry: `import 'cloudmux'` must not load prom-client.
    const prom = createRequire(import.meta.url)('prom-client') as typeof PromClient;
    const prefix = options.prefix ?? 'cloudmux_';
    const durationName = `${prefix}operation_duration_seconds`;
    const bytesName = `${prefix}body_bytes_total`;
    const duration = (registry.getSingleMetric(durationName) as Histogram<string> | undefined) ?? new prom.Histogram({
      name: durationName,
      help: 'Duration of blob store operations (get: until the response; getBody: the whole body).',
      labelNames: ['store', 'provider', 'op', 'outcome'],
      buckets: LATENCY_BUCKETS_MS.map((ms) => ms / 1000),
      registers: [registry],
    });
    const bytes = (registry.getSingleMetric(bytesName) as Counter<string> | undefined) ?? new prom.Counter({
      name: bytesName,
      help: 'Body bytes moved to (out) and from (in) the provider.',
      labelNames: ['store', 'provider', 'direction'],
      registers: [registry],
    });
    const listener = (s: Sample): void => {
      duration.observe({ store: s.store, provider: s.provider, op: s.op, outcome: s.outcome }, s.ms / 1000);
      if (s.bytes) bytes.inc({ store: s.store, provider: s.provider, direction: s.op === 'put' ? 'out' : 'in' }, s.bytes);
    };
    this.on('sample', listener);
    return () => this.off('sample', listener);
  }

  private record(op: MeasuredOp, ms: number, error: unknown, bytes?: number): void {
    const outcome = error === undefined ? 'ok' : isCloudmuxError(error) ? error.code : 'Error';
    let s = this.ops.get(op);
    if (!s) {
      s = { calls: 0, outcomes: {}, latencyCounts: new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0), latencySumMs: 0, bytes: 0 };
      this.ops.set(op, s);
    }
    s.calls++;
    s.outcomes[outcome] = (s.outcomes[outcome] ?? 0) + 1;
    const i = LATENCY_BUCKETS_MS.findIndex((b) => ms <= b);
    s.latencyCounts[i < 0 ? LATENCY_BUCKETS_MS.length : i]!++;
    s.latencySumMs += ms;
    if (bytes) {
      s.bytes += bytes;
      if (op === 'put') this.bytesOut += bytes;
      else this.bytesIn += bytes;
    }
    this.emit('sample', { store: this.name, provider: this.provider, op, ms, outcome, ...(bytes === undefined ? {} : { bytes }) });
  }

  private async measure<T>(op: StoreOp, fn: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      const value = await fn();
      this.record(op, performance.now() - started, undefined);
      return value;
    } catch (e) {
      this.record(op, performance.now() - started, e ?? new Error('undefined was thrown'));
      throw e;
    }
  }

  override async put(key: string, body: Body, opts?: PutOptions): Promise<ObjectMeta> {
    const started = performance.now();
    let sent = 0;
    let counted: Body;
    if (isReplayableBody(body)) {
      counted = body;
      sent = bodyBytes(body).byteLength;
    } else {
      counted = mapBody(body, async function* (chunks) {
        for await (const chunk of chunks) {
          sent += chunk.byteLength;
          yield chunk;
        }
      });
    }
    try {
      const meta = await this.inner.put(key, counted, opts);
      this.record('put', performance.now() - started, undefined, sent);
      return meta;
    } catch (e) {
      this.record('put', performance.now() - started, e ?? new Error('undefined was thrown'), sent);
      throw e;
    }
  }

  override async get(key: string, opts?: GetOptions): Promise<GetResult> {
    const result = await this.measure('get', () => this.inner.get(key, opts));
    const started = performance.now();
    let received = 0;
    let done = false;
    const finish = (error: unknown): void => {
      if (done) return;
      done = true;
      this.record('getBody', performance.now() - started, error, received);
    };
    const source = readerOf(result.body);
    const body = new RelayStream({
      read: async () => {
        try {
          const chunk = await source.read();
          if (chunk === null) finish(undefined);
          else received += chunk.byteLength;
          return chunk;
        } catch (e) {
          finish(e ?? new Error('undefined was thrown'));
          throw e;
        }
      },
      destroy: (error) => {
        // A reader that stops early cancelled the body; that says nothing bad about the provider.
        finish(error ?? new AbortedError('reader closed the body before its end', { provider: this.provider, key }));
        source.destroy(error);
      },
    });
    return { ...result, body };
  }

  override head(key: string, opts?: SignalOptions): Promise<ObjectMeta> {
    return this.measure('head', () => this.inner.head(key, opts));
  }

  override delete(key: string, opts?: DeleteOptions): Promise<void> {
    return this.measure('delete', () => this.inner.delete(key, opts));
  }

  override deleteMany(keys: Iterable<string>, opts?: SignalOptions): Promise<DeleteManyResult> {
    return this.measure('deleteMany', () => this.inner.deleteMany(keys, opts));
  }

  override copy(src: string, dst: string, opts?: CopyOptions): Promise<ObjectMeta> {
    return this.measure('copy', () => this.inner.copy(src, dst, opts));
  }

  override updateMetadata(key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
    return this.measure('updateMetadata', () => this.inner.updateMetadata(key, opts));
  }

  override presign(key: string, opts: PresignOptions): Promise<string> {
    return this.measure('presign', () => this.inner.presign(key, opts));
  }

  override async *list(opts?: ListOptions): AsyncGenerator<ListItem> {
    const started = performance.now();
    let firstMs: number | undefined;
    let outcome: unknown;
    try {
      for await (const item of this.inner.list(opts)) {
        firstMs ??= performance.now() - started;
        yield item;
      }
    } catch (e) {
      outcome = e ?? new Error('undefined was thrown');
      throw e;
    } finally {
      // Latency is time to the first page, so a long listing does not look like a slow provider.
      this.record('list', firstMs ?? performance.now() - started, outcome);
    }
  }
}
