import CircuitBreaker from 'opossum';
import { ProviderUnavailableError, countsAgainstBreaker, isCloudmuxError } from '../core/index.js';
import type {
  BlobStore, Body, CopyOptions, DeleteManyResult, GetOptions, OpClass, GetResult, ListItem, ListOptions, ObjectMeta,
  PutOptions, SignalOptions, DeleteOptions, UpdateMetadataOptions,
} from '../core/index.js';
import { ForwardingStore, type StoreOp } from './forwarding-store.js';


export type BreakerState = 'closed' | 'open' | 'halfOpen';

export interface BreakerEvent {
  provider: string;
  opClass: OpClass;
}

export interface BreakerEvents {
  /** Too many failures: calls of this class now fail at once with ProviderUnavailable. */
  open: BreakerEvent;
  /** The reset time passed: the next call of this class is a trial. */
  halfOpen: BreakerEvent;
  /** A trial succeeded: calls flow again. */
  close: BreakerEvent;
  /** A call was refused because the breaker is open (or a half-open trial is in flight). */
  reject: BreakerEvent & { op: StoreOp; key?: string };
}

export interface BreakerOptions {
  /** Failure percentage in the rolling window above which the breaker opens. Default 50. */
  errorThresholdPercentage?: number;
  /** Calls the rolling window must hold before it may open. Default 5. */
  volumeThreshold?: number;
  /** Time open before a half-open trial. Default 30 000 ms. */
  resetTimeoutMs?: number;
  /** Length of the rolling window. Default 10 000 ms. */
  rollingWindowMs?: number;
  /** Buckets the window is divided into. Default 10. */
  rollingBuckets?: number;
  /** Whether an error counts as a provider failure. Default: `countsAgainstBreaker` (the table in src/core/errors.ts). */
  isFailure?(error: unknown, opClass: OpClass): boolean;
}

const CLASS_OF: Record<Exclude<StoreOp, 'presign'>, OpClass> = {
  get: 'read', head: 'read', put: 'write', copy: 'write', updateMetadata: 'write', delete: 'delete', deleteMany: 'delete', list: 'list',
};

type Action = (fn: () => Promise<unknown>) => Promise<unknown>;

/** An error that says nothing of the provider: it never answered (the caller's abort, a refusal by a layer below). */
function unanswered(error: unknown): boolean {
  return isCloudmuxError(error, 'Aborted') || isCloudmuxError(error, 'ProviderUnavailable');
}

/**
 * One operation class's counts over the breaker's rolling window. cloudmux's own type: opossum's
 * types are a dev dependency, and a consumer's strict type-check must not need them.
 */
export interface BreakerStats {
  fires: number;
  successes: number;
  failures: number;
  /** Calls refused while the breaker was open. */
  rejects: number;
  timeouts: number;
  latencyMeanMs: number;
}

/**
 * A circuit breaker per operation class over one provider (opossum underneath).
 *
 * # Contract
 * - While a class's breaker is open, its calls fail at once with ProviderUnavailable (the inner
 *   store is not called), so a router moves on instead of waiting.
 * - After `resetTimeoutMs` one trial call passes (half-open); its success closes the breaker, its
 *   failure re-opens it, and so does a trial the provider never answered (aborted by the caller,
 *   refused by a layer below): that proves nothing either way. Other calls during the trial are refused.
 * - Only provider failures count (`isFailure`); NotFound, PreconditionFailed, AlreadyExists,
 *   NotModified, InvalidKey/Argument/Range, NotSupported and the caller's aborts never do.
 * - A get body or a listing that fails mid-stream counts as a failure of its class too.
 * - Events `open`, `halfOpen`, `close`, `reject` (see BreakerEvents); `state()` for a snapshot.
 * - presign is not guarded (it signs locally).
 */
export class BreakerStore extends ForwardingStore<BreakerEvents> {
  protected readonly layerName = 'Breaker';
  private readonly breakers: Record<OpClass, CircuitBreaker<[() => Promise<unknown>], unknown>>;
  private readonly isFailure: (error: unknown, opClass: OpClass) => boolean;
  private readonly thresholdPercentage: number;

  constructor(inner: BlobStore, options: BreakerOptions = {}) {
    super(inner);
    this.isFailure = options.isFailure ?? countsAgainstBreaker;
    this.thresholdPercentage = options.errorThresholdPercentage ?? 50;
    const make = (opClass: OpClass): CircuitBreaker<[() => Promise<unknown>], unknown> => {
      const run: Action = (fn) => fn();
      // opossum counts a filtered error as a success, and a success closes a half-open breaker. A
      // trial that ended without the provider answering (the caller aborted it; a layer below
      // refused it) proved nothing: the breaker goes back to open, and no `close` is reported
      // (the health tracker would otherwise forget the failures of a provider that is still down).
      let unansweredTrial = false;
      const breaker: CircuitBreaker<[() => Promise<unknown>], unknown> = new CircuitBreaker(run, {
        name: `${inner.provider}:${opClass}`,
        // Timeouts belong to TimeoutStore, which really cancels the request; opossum's would not.
        timeout: false,
        errorThresholdPercentage: this.thresholdPercentage,
        volumeThreshold: options.volumeThreshold ?? 5,
        resetTimeout: options.resetTimeoutMs ?? 30_000,
        rollingCountTimeout: options.rollingWindowMs ?? 10_000,
        rollingCountBuckets: options.rollingBuckets ?? 10,
        rollingPercentilesEnabled: false,
        errorFilter: (error: unknown) => {
          const filtered = !this.isFailure(error, opClass);
          if (filtered && breaker.halfOpen && unanswered(error)) unansweredTrial = true;
          return filtered;
        },
      });
      const event = { provider: inner.provider, opClass };
      breaker.on('open', () => this.emit('open', event));
      breaker.on('halfOpen', () => this.emit('halfOpen', event));
      breaker.on('close', () => {
        if (unansweredTrial) {
          unansweredTrial = false;
          breaker.open();
          return;
        }
        this.emit('close', event);
      });
      return breaker;
    };
    this.breakers = { read: make('read'), write: make('write'), delete: make('delete'), list: make('list') };
  }

  /** Each class's breaker state. */
  state(): Record<OpClass, BreakerState> {
    const of = (b: CircuitBreaker<[() => Promise<unknown>], unknown>): BreakerState => (b.opened ? 'open' : b.halfOpen ? 'halfOpen' : 'closed');
    return { read: of(this.breakers.read), write: of(this.breakers.write), delete: of(this.breakers.delete), list: of(this.breakers.list) };
  }

  /** Rolling-window counts of one class, for health and metrics. */
  stats(opClass: OpClass): BreakerStats {
    const s = this.breakers[opClass].stats;
    return { fires: s.fires, successes: s.successes, failures: s.failures, rejects: s.rejects, timeouts: s.timeouts, latencyMeanMs: s.latencyMean };
  }

  private async guard<T>(op: Exclude<StoreOp, 'presign'>, key: string | undefined, fn: () => Promise<T>): Promise<T> {
    const opClass = CLASS_OF[op];
    const breaker = this.breakers[opClass];
    try {
      return (await breaker.fire(fn)) as T;
    } catch (e) {
      if (e instanceof Error && CircuitBreaker.isOurError(e)) {
        this.emit('reject', { provider: this.provider, opClass, op, key });
        throw new ProviderUnavailableError(`${this.provider} ${opClass} breaker is open; not calling the provider`, { provider: this.provider, key, cause: e });
      }
      throw e;
    }
  }

  /**
   * Counts a failure that surfaced after the call returned (a body or listing breaking mid-way).
   * opossum only counts settled calls, so this mirrors its own rule: record, then open when the
   * window's failure rate is over the threshold (or a trial is what failed).
   */
  private streamFailed(opClass: OpClass, error: unknown): void {
    if (!this.isFailure(error, opClass)) return;
    const breaker = this.breakers[opClass];
    if (breaker.opened) return;
    breaker.emit('failure', error, 0, []);
    const { fires, failures } = breaker.stats;
    if (breaker.halfOpen || (fires >= breaker.volumeThreshold && (failures / Math.max(1, fires)) * 100 > this.thresholdPercentage)) breaker.open();
  }

  override put(key: string, body: Body, opts?: PutOptions): Promise<ObjectMeta> {
    return this.guard('put', key, () => this.inner.put(key, body, opts));
  }

  override async get(key: string, opts?: GetOptions): Promise<GetResult> {
    const result = await this.guard('get', key, () => this.inner.get(key, opts));
    // A listener, not a wrapper: observing errors must not change the body's flow or add a copy.
    result.body.once('error', (e) => this.streamFailed('read', e));
    return result;
  }

  override head(key: string, opts?: SignalOptions): Promise<ObjectMeta> {
    return this.guard('head', key, () => this.inner.head(key, opts));
  }

  override delete(key: string, opts?: DeleteOptions): Promise<void> {
    return this.guard('delete', key, () => this.inner.delete(key, opts));
  }

  override deleteMany(keys: Iterable<string>, opts?: SignalOptions): Promise<DeleteManyResult> {
    return this.guard('deleteMany', undefined, () => this.inner.deleteMany(keys, opts));
  }

  override copy(src: string, dst: string, opts?: CopyOptions): Promise<ObjectMeta> {
    return this.guard('copy', dst, () => this.inner.copy(src, dst, opts));
  }

  override updateMetadata(key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
    return this.guard('updateMetadata', key, () => this.inner.updateMetadata(key, opts));
  }

  /** The first page is one guarded call; a failure on a later page counts as a stream failure. */
  override async *list(opts?: ListOptions): AsyncGenerator<ListItem> {
    const it = this.inner.list(opts)[Symbol.asyncIterator]();
    let done = false;
    try {
      const first = await this.guard('list', undefined, () => it.next());
      if (first.done) {
        done = true;
        return;
      }
      yield first.value;
      for (;;) {
        let r: IteratorResult<ListItem>;
        try {
          r = await it.next();
        } catch (e) {
          done = true;
          this.streamFailed('list', e);
          throw e;
        }
        if (r.done) {
          done = true;
          return;
        }
        yield r.value;
      }
    } catch (e) {
      done = true;
      throw e;
    } finally {
      if (!done) await it.return?.();
    }
  }

  override async close(): Promise<void> {
    for (const b of Object.values(this.breakers)) b.shutdown();
    await this.inner.close();
  }
}
