import {
  AbortedError, AccessDeniedError, AlreadyExistsError, AuthFailedError, CloudmuxError, IntegrityError, InvalidArgumentError,
  NotFoundError, PreconditionFailedError, ProviderError, ProviderUnavailableError, ThrottledError, TransientError,
} from '../../src/core/index.js';
import type {
  BlobStore, Body, CopyOptions, DeleteManyResult, ErrorCode, GetOptions, GetResult, ListItem, ListOptions, ObjectMeta,
  PutOptions, SignalOptions, UpdateMetadataOptions,
} from '../../src/core/index.js';
import { ForwardingStore, type StoreOp } from '../../src/layers/forwarding-store.js';
import { RelayStream, readerOf } from '../../src/layers/relay-stream.js';
import { seededRandom } from './random.js';

/**
 * What a FaultyStore injects. Everything is optional and off by default; probabilities are per
 * call (or per body / per listed item) and drawn from one seeded PRNG, so a seed replays exactly.
 */
export interface FaultPlan {
  /** PRNG seed. Default 1. */
  seed?: number;
  /** Operations faults apply to (others pass through untouched and uncounted). Default: all but close/presign. */
  ops?: StoreOp[];
  /** Fail these calls (1-based, counted over the matching calls) with these codes, before the inner store runs. */
  failCalls?: Record<number, ErrorCode>;
  /** Probability per call of failing with each code, before the inner store runs. */
  errorRates?: Partial<Record<ErrorCode, number>>;
  /**
   * Probability per call that the inner call runs (and succeeds) but its answer is "lost": the
   * caller gets a Transient error although the write landed. The ambiguous failure retries must cope with.
   */
  lostResponse?: number;
  /**
   * Probability per call that the inner call runs (the write lands) but its answer is held back
   * for `slowResponseMs`: a stall after the fact. A caller that aborts meanwhile gets Aborted
   * although the call did run (a caller giving up while the provider finishes).
   */
  slowResponse?: number;
  /** How long a slow response is held, in ms: fixed, or uniform in [min, max]. Default [50, 500]. */
  slowResponseMs?: number | [number, number];
  /** `retryAfterMs` of injected Throttled errors. Default 0. */
  retryAfterMs?: number;
  /** Added latency per call in ms: fixed, or uniform in [min, max]. Honours the call's signal. */
  latencyMs?: number | [number, number];
  /** Probability that a get body breaks at a random byte with a Transient error (a connection reset). */
  resetBody?: number;
  /** Probability that a get body ends cleanly at a random byte (silent truncation). */
  truncateBody?: number;
  /** Probability that one random byte of a get body is flipped. */
  corruptBody?: number;
  /** Probability per listed item that the listing breaks there with a Transient error. */
  resetListing?: number;
  /** Stop injecting after this many faults (the store heals itself). Default: unlimited. */
  maxFaults?: number;
}

/** One call as the FaultyStore saw it, for assertions. */
export interface FaultRecord {
  /** 1-based number among matching calls. */
  n: number;
  op: StoreOp;
  key?: string;
  range?: GetOptions['range'];
  ifMatch?: string;
  /** What was injected: an ErrorCode, `lostResponse`, `slowResponse@<ms>`, `outage`, `resetBody@<byte>`, `truncateBody@<byte>`, `corruptBody@<byte>`, `resetListing@<item>`. */
  fault?: string;
}

const ERRORS: Record<ErrorCode, new (message: string, opts?: ConstructorParameters<typeof TransientError>[1]) => CloudmuxError> = {
  NotFound: NotFoundError, PreconditionFailed: PreconditionFailedError, AlreadyExists: AlreadyExistsError,
  Throttled: ThrottledError, Transient: TransientError, ProviderUnavailable: ProviderUnavailableError,
  IntegrityError, Aborted: AbortedError, AuthFailed: AuthFailedError, AccessDenied: AccessDeniedError,
  InvalidArgument: InvalidArgumentError, ProviderError,
  NotModified: class extends CloudmuxError { constructor(m: string, o?: object) { super('NotModified', m, o); } },
  InvalidKey: class extends CloudmuxError { constructor(m: string, o?: object) { super('InvalidKey', m, o); } },
  InvalidRange: class extends CloudmuxError { constructor(m: string, o?: object) { super('InvalidRange', m, o); } },
  InvalidConfig: class extends CloudmuxError { constructor(m: string, o?: object) { super('InvalidConfig', m, o); } },
  NotSupported: class extends CloudmuxError { constructor(m: string, o?: object) { super('NotSupported', m, o); } },
};

const ALL_OPS: StoreOp[] = ['put', 'get', 'head', 'delete', 'deleteMany', 'list', 'copy', 'updateMetadata'];

/**
 * A BlobStore wrapper that injects faults by a seeded plan, for testing layers, the router and
 * the replication worker against the memory store (no network needed).
 *
 * @example
 * const faulty = new FaultyStore(new MemoryStore(), { seed: 7, errorRates: { Transient: 0.2 }, resetBody: 0.3 });
 * const store = new RetryStore(faulty, { baseDelayMs: 1 });
 * …
 * expect(faulty.log.filter((r) => r.fault)).toHaveLength(…);
 * faulty.heal(); // no more faults
 */
export class FaultyStore extends ForwardingStore {
  protected readonly layerName = 'Faulty';
  /** Every matching call, in order. */
  readonly log: FaultRecord[] = [];
  private plan: FaultPlan = {};
  private random: () => number = seededRandom(1);
  private calls = 0;
  private faults = 0;
  private down: ErrorCode | undefined;

  constructor(inner: BlobStore, plan: FaultPlan = {}) {
    super(inner);
    this.setPlan(plan);
  }

  /** Replaces the plan (and re-seeds); call numbers keep counting. */
  setPlan(plan: FaultPlan): this {
    this.plan = plan;
    this.random = seededRandom(plan.seed ?? 1);
    return this;
  }

  /** Stops injecting anything. */
  heal(): this {
    return this.setPlan({});
  }

  /**
   * A whole-provider outage: from now until `outage(false)`, every call (whatever the plan's `ops`)
   * fails with `code` before reaching the inner store. The plan and its PRNG are left as they are.
   */
  outage(on: boolean, code: ErrorCode = 'Transient'): this {
    this.down = on ? code : undefined;
    return this;
  }

  /** Faults injected so far. */
  get injected(): number {
    return this.faults;
  }

  private chance(p: number | undefined): boolean {
    if (!p || (this.plan.maxFaults !== undefined && this.faults >= this.plan.maxFaults)) return false;
    return this.random() < p;
  }

  private error(code: ErrorCode, rec: FaultRecord): CloudmuxError {
    this.faults++;
    rec.fault = code;
    const retryAfterMs = code === 'Throttled' ? (this.plan.retryAfterMs ?? 0) : undefined;
    return new ERRORS[code](`injected ${code} (call ${rec.n}, ${rec.op})`, { provider: this.provider, key: rec.key, retryAfterMs });
  }

  /** Records the call, waits the added latency, and throws the fault due before the inner call, if any. */
  private async before(op: StoreOp, key: string | undefined, signal: AbortSignal | undefined, extra: Partial<FaultRecord> = {}): Promise<FaultRecord | undefined> {
    if (this.down) {
      const rec: FaultRecord = { n: ++this.calls, op, ...(key === undefined ? {} : { key }), ...extra };
      this.log.push(rec);
      const e = this.error(this.down, rec);
      rec.fault = 'outage';
      throw e;
    }
    if (!(this.plan.ops ?? ALL_OPS).includes(op)) return undefined;
    const rec: FaultRecord = { n: ++this.calls, op, ...(key === undefined ? {} : { key }), ...extra };
    this.log.push(rec);
    const latency = this.plan.latencyMs;
    if (latency !== undefined) await this.sleep(this.draw(latency), signal, key, 'aborted during injected latency');
    const scripted = this.plan.failCalls?.[rec.n];
    if (scripted && (this.plan.maxFaults === undefined || this.faults < this.plan.maxFaults)) throw this.error(scripted, rec);
    for (const [code, p] of Object.entries(this.plan.errorRates ?? {}) as [ErrorCode, number][]) {
      if (this.chance(p)) throw this.error(code, rec);
    }
    return rec;
  }

  private draw(ms: number | [number, number]): number {
    return typeof ms === 'number' ? ms : ms[0] + this.random() * (ms[1] - ms[0]);
  }

  private sleep(ms: number, signal: AbortSignal | undefined, key: string | undefined, why: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const aborted = (): void => {
        clearTimeout(t);
        reject(new AbortedError(why, { provider: this.provider, key }));
      };
      const t = setTimeout(() => {
        signal?.removeEventListener('abort', aborted);
        resolve();
      }, ms);
      if (signal?.aborted) aborted();
      else signal?.addEventListener('abort', aborted, { once: true });
    });
  }

  private async around<T>(op: StoreOp, key: string | undefined, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    const rec = await this.before(op, key, signal);
    const value = await fn();
    if (rec && this.chance(this.plan.slowResponse)) {
      this.faults++;
      const ms = this.draw(this.plan.slowResponseMs ?? [50, 500]);
      rec.fault = `slowResponse@${Math.round(ms)}`;
      await this.sleep(ms, signal, key, `aborted while the response was held back (call ${rec.n}, ${op}): the call did run`);
    }
    if (rec && this.chance(this.plan.lostResponse)) {
      this.faults++;
      rec.fault = 'lostResponse';
      throw new TransientError(`injected lost response (call ${rec.n}, ${op}): the call did run`, { provider: this.provider, key });
    }
    return value;
  }

  override put(key: string, body: Body, opts?: PutOptions): Promise<ObjectMeta> {
    return this.around('put', key, opts?.signal, () => this.inner.put(key, body, opts));
  }

  override async get(key: string, opts?: GetOptions): Promise<GetResult> {
    const rec = await this.before('get', key, opts?.signal, { ...(opts?.range ? { range: opts.range } : {}), ...(opts?.ifMatch ? { ifMatch: opts.ifMatch } : {}) });
    const result = await this.inner.get(key, opts);
    if (!rec) return result;
    const length = result.range?.length ?? result.meta.size;
    if (length === 0) return result;
    let kind: 'resetBody' | 'truncateBody' | 'corruptBody' | undefined;
    if (this.chance(this.plan.resetBody)) kind = 'resetBody';
    else if (this.chance(this.plan.truncateBody)) kind = 'truncateBody';
    else if (this.chance(this.plan.corruptBody)) kind = 'corruptBody';
    if (!kind) return result;
    this.faults++;
    const at = Math.floor(this.random() * length);
    rec.fault = `${kind}@${at}`;
    const source = readerOf(result.body);
    const reset = (): CloudmuxError => new TransientError(`injected connection reset at byte ${at}`, { provider: this.provider, key });
    let pos = 0;
    let after: 'end' | 'reset' | undefined;
    const body = new RelayStream({
      read: async () => {
        if (after === 'end') return null;
        if (after === 'reset') throw reset();
        const chunk = await source.read();
        if (chunk === null) return null;
        const startPos = pos;
        pos += chunk.byteLength;
        if (pos <= at) return chunk;
        const i = at - startPos;
        if (kind === 'corruptBody') {
          if (i < 0) return chunk;
          const copy = Buffer.from(chunk);
          copy[i] = copy[i]! ^ 0x01;
          return copy;
        }
        source.destroy();
        after = kind === 'truncateBody' ? 'end' : 'reset';
        // Deliver what came before the break; the end (or the reset) follows on the next read.
        if (i > 0) return chunk.subarray(0, i);
        if (after === 'end') return null;
        throw reset();
      },
      destroy: (error) => source.destroy(error),
    });
    return { ...result, body };
  }

  override head(key: string, opts?: SignalOptions): Promise<ObjectMeta> {
    return this.around('head', key, opts?.signal, () => this.inner.head(key, opts));
  }

  override delete(key: string, opts?: SignalOptions): Promise<void> {
    return this.around('delete', key, opts?.signal, () => this.inner.delete(key, opts));
  }

  override deleteMany(keys: Iterable<string>, opts?: SignalOptions): Promise<DeleteManyResult> {
    return this.around('deleteMany', undefined, opts?.signal, () => this.inner.deleteMany(keys, opts));
  }

  override copy(src: string, dst: string, opts?: CopyOptions): Promise<ObjectMeta> {
    return this.around('copy', dst, opts?.signal, () => this.inner.copy(src, dst, opts));
  }

  override updateMetadata(key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
    return this.around('updateMetadata', key, opts.signal, () => this.inner.updateMetadata(key, opts));
  }

  override async *list(opts?: ListOptions): AsyncGenerator<ListItem> {
    const rec = await this.before('list', opts?.startAfter, opts?.signal);
    let n = 0;
    for await (const item of this.inner.list(opts)) {
      if (rec && this.chance(this.plan.resetListing)) {
        this.faults++;
        rec.fault = `resetListing@${n}`;
        throw new TransientError(`injected listing reset at item ${n}`, { provider: this.provider });
      }
      n++;
      yield item;
    }
  }
}
