import { EventEmitter } from 'node:events';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { abortedError, isCloudmuxError } from '../core/index.js';

export interface AdaptiveConcurrencyOptions {
  /** Name in events, metrics and logs (a provider name). Default `provider`. */
  name?: string;
  /** Lowest limit. Default 1. */
  min?: number;
  /** Highest limit. Default 64. */
  max?: number;
  /** Limit to start from. Default `min(max, max(min, 4))`. */
  initial?: number;
  /** Length of one evaluation window (≈ the RTT of TCP's congestion window). Default 1 000 ms. */
  windowMs?: number;
  /** Added to the limit after a window that used the whole limit, kept its latency and did not lose throughput. Default 1. */
  increase?: number;
  /** The limit is multiplied by this on a throttle or a latency rise (0 < f < 1). Default 0.5. */
  decrease?: number;
  /**
   * Slow start, as TCP's: until the first decrease the limit doubles after each window that would
   * have grown it, instead of adding `increase`; additive from then on. Reaches a fast link's
   * concurrency in a few windows instead of one per window. Default false.
   */
  slowStart?: boolean;
  /**
   * A window whose median cost (latency per work unit, see `bytesPerUnit`) exceeds the baseline
   * (the lowest recent window median) by this factor is a latency rise. Default 2.
   */
  latencyTolerance?: number;
  /** A request of `bytes` counts as `1 + bytes / bytesPerUnit` units of work, so big objects do not look like latency rises. Default 1 MiB. */
  bytesPerUnit?: number;
  /** Fewest completions in a window before its latency or throughput counts. Default 3. */
  minSamples?: number;
  /**
   * Event-loop delay (ms, this process) above which the box, not the provider, is slow: latency
   * rises are not held against the provider and the limit does not grow. Default 100.
   */
  maxEventLoopLagMs?: number;
  /** Clock in ms. Default `performance.now`. */
  now?: () => number;
  /** Current event-loop delay in ms. Default: a shared `monitorEventLoopDelay` histogram (p90 over the last seconds). */
  eventLoopLag?: () => number;
}

/** What one finished request tells the limiter. */
export interface AdaptiveSample {
  /** When the request started (the limiter's clock; `permit.startedAt`). */
  startedAt: number;
  /** `throttled`: the provider asked us to slow down (429/503/SlowDown: CloudmuxError Throttled). */
  outcome: 'ok' | 'throttled' | 'error';
  /** Bytes it moved (weights its latency). */
  bytes?: number;
}



export interface AdaptiveConcurrencyEvents {
  /** The limit grew (additive increase). */
  increase: [{ name: string; from: number; to: number; reason: 'throughput' }];
  /** The limit shrank (multiplicative decrease). */
  decrease: [{ name: string; from: number; to: number; reason: 'throttled' | 'latency' }];
  /** The provider throttled a request (counted even when the limit is already at its floor or was just cut). */
  throttle: [{ name: string }];
  /** A window's signals were not acted on because the event loop was lagging (our box, not the provider). */
  hold: [{ name: string; eventLoopLagMs: number }];
  /** A window closed; its figures. */
  window: [AdaptiveStatus];
}

/** A snapshot for /status, metrics and benches. */
export interface AdaptiveStatus {
  name: string;
  limit: number;
  inFlight: number;
  /** Callers waiting for a slot. */
  waiting: number;
  min: number;
  max: number;
  /** Completions per second in the last closed window. */
  completedPerSec: number;
  /** Bytes per second in the last closed window. */
  bytesPerSec: number;
  /** Median latency (ms) of the last closed window, undefined before one had samples. */
  latencyMs?: number;
  /** Lowest recent window median cost (ms per unit), undefined before the first window. */
  baselineMsPerUnit?: number;
  /** Throttles seen since the limiter was created. */
  throttles: number;
  increases: number;
  decreases: number;
  /** Event-loop delay at the last window close (ms). */
  eventLoopLagMs: number;
}

export interface AdaptivePermit {
  /** On the limiter's clock: pass back in the sample. */
  readonly startedAt: number;
  /** Gives the slot back and reports how the request went. Idempotent. */
  release(outcome: AdaptiveSample['outcome'], bytes?: number): void;
}

/** The baseline cost rises this much per window so that a link that really got slower is re-learnt (as BBR expires its min RTT). */
const BASELINE_DRIFT = 1.01;

/**
 * Adaptive concurrency for one provider: AIMD as TCP does it. The limit grows by `increase` after
 * each window in which the limit was fully used, latency held and throughput did not fall, and is
 * multiplied by `decrease` when the provider throttles (CloudmuxError `Throttled`: 429, 503,
 * SlowDown) or latency rises past `latencyTolerance` × baseline. Stays within [min, max].
 *
 * Two guards keep it honest:
 * - one cut per round: a throttle of a request that started before the last cut does not cut
 *   again (those requests were sent at the old limit), so a burst of 503s halves once, not to 1;
 * - the box, not the provider: latency measured while this process's event loop lags is partly
 *   ours; the lag is subtracted from the window's latency, and above `maxEventLoopLagMs` the window
 *   changes nothing (`hold`).
 *
 * No timers: windows close when a request starts or finishes, so it runs on any clock (tests use
 * a simulated one) and costs nothing while idle.
 */
export class AdaptiveConcurrency extends EventEmitter<AdaptiveConcurrencyEvents> {
  readonly name: string;
  readonly min: number;
  readonly max: number;
  private readonly windowMs: number;
  private readonly increaseBy: number;
  private readonly decreaseBy: number;
  private readonly tolerance: number;
  private readonly bytesPerUnit: number;
  private readonly minSamples: number;
  private readonly maxLagMs: number;
  private readonly now: () => number;
  private readonly lag: () => number;
  private current: number;
  private active = 0;
  private readonly queue: { resolve: () => void; reject: (e: unknown) => void; signal?: AbortSignal; onAbort?: () => void }[] = [];
  private windowStart: number;
  private samples: { ms: number; units: number; bytes: number }[] = [];
  private saturated = false;
  private lastCutAt = -Infinity;
  private baseline: number | undefined;
  private lastWindow: { completedPerSec: number; bytesPerSec: number; latencyMs?: number; lagMs: number } = { completedPerSec: 0, bytesPerSec: 0, lagMs: 0 };
  private prevThroughput: number | undefined;
  private counts = { throttles: 0, increases: 0, decreases: 0 };
  /** Slow start: doubling until the first cut. */
  private doubling: boolean;

  constructor(options: AdaptiveConcurrencyOptions = {}) {
    super();
    this.name = options.name ?? 'provider';
    this.min = Math.max(1, Math.floor(options.min ?? 1));
    this.max = Math.max(this.min, Math.floor(options.max ?? 64));
    const initial = options.initial ?? Math.min(this.max, Math.max(this.min, 4));
    this.current = clamp(Math.floor(initial), this.min, this.max);
    this.windowMs = options.windowMs ?? 1_000;
    this.increaseBy = options.increase ?? 1;
    this.decreaseBy = options.decrease ?? 0.5;
    this.doubling = options.slowStart === true;
    if (!(this.decreaseBy > 0 && this.decreaseBy < 1)) throw new RangeError(`decrease must be in (0, 1), got ${this.decreaseBy}`);
    if (!(this.increaseBy > 0)) throw new RangeError(`increase must be > 0, got ${this.increaseBy}`);
    this.tolerance = options.latencyTolerance ?? 2;
    this.bytesPerUnit = options.bytesPerUnit ?? 1024 * 1024;
    this.minSamples = options.minSamples ?? 3;
    this.maxLagMs = options.maxEventLoopLagMs ?? 100;
    this.now = options.now ?? (() => performance.now());
    this.lag = options.eventLoopLag ?? sharedEventLoopLag;
    this.windowStart = this.now();
  }

  /** The current limit (requests in flight allowed). */
  get limit(): number {
    return this.current;
  }

  get inFlight(): number {
    return this.active;
  }

  /** True when a slot is free now (a caller that dispatches by polling, like migrate). */
  get hasRoom(): boolean {
    return this.active < this.current;
  }

  /** Waits for a slot (first come, first served). Rejects with Aborted if the signal fires first. */
  async acquire(signal?: AbortSignal): Promise<AdaptivePermit> {
    this.tick();
    if (signal?.aborted) throw abortedError(signal);
    if (this.active >= this.current || this.queue.length > 0) {
      this.saturated = true;
      await new Promise<void>((resolve, reject) => {
        const waiter: (typeof this.queue)[number] = { resolve, reject, signal };
        if (signal) {
          waiter.onAbort = () => {
            const i = this.queue.indexOf(waiter);
            if (i >= 0) this.queue.splice(i, 1);
            reject(abortedError(signal));
          };
          signal.addEventListener('abort', waiter.onAbort, { once: true });
        }
        this.queue.push(waiter);
      });
    }
    return this.take();
  }

  /** Takes a slot now if one is free (else undefined). */
  tryAcquire(): AdaptivePermit | undefined {
    this.tick();
    if (this.active >= this.current || this.queue.length > 0) {
      this.saturated = true;
      return undefined;
    }
    return this.take();
  }

  /** Runs `fn` in a slot, timing it and reading a Throttled error as the provider's signal. */
  async run<T>(fn: () => Promise<T>, opts: { signal?: AbortSignal; bytes?: number | ((result: T) => number) } = {}): Promise<T> {
    const permit = await this.acquire(opts.signal);
    try {
      const result = await fn();
      permit.release('ok', typeof opts.bytes === 'function' ? opts.bytes(result) : opts.bytes);
      return result;
    } catch (e) {
      permit.release(isCloudmuxError(e, 'Throttled') ? 'throttled' : 'error');
      throw e;
    }
  }

  /**
   * A throttle seen outside a permit's outcome (a retry inside the request, another layer). Cuts
   * the limit unless it was already cut after `startedAt` (default: now, which always cuts once per round).
   */
  throttled(startedAt?: number): void {
    this.counts.throttles++;
    this.emit('throttle', { name: this.name });
    const at = startedAt ?? this.now();
    if (at >= this.lastCutAt) this.cut('throttled');
    this.tick();
  }

  status(): AdaptiveStatus {
    const s: AdaptiveStatus = {
      name: this.name, limit: this.current, inFlight: this.active, waiting: this.queue.length, min: this.min, max: this.max,
      completedPerSec: this.lastWindow.completedPerSec, bytesPerSec: this.lastWindow.bytesPerSec,
      throttles: this.counts.throttles, increases: this.counts.increases, decreases: this.counts.decreases, eventLoopLagMs: this.lastWindow.lagMs,
    };
    if (this.lastWindow.latencyMs !== undefined) s.latencyMs = this.lastWindow.latencyMs;
    if (this.baseline !== undefined) s.baselineMsPerUnit = this.baseline;
    return s;
  }

  override toString(): string {
    return `AdaptiveConcurrency(${this.name}, ${this.current} in [${this.min}, ${this.max}])`;
  }

  private take(): AdaptivePermit {
    this.active++;
    if (this.active >= this.current) this.saturated = true;
    const startedAt = this.now();
    let released = false;
    return {
      startedAt,
      release: (outcome, bytes = 0) => {
        if (released) return;
        released = true;
        this.active--;
        this.finish({ startedAt, outcome, bytes });
      },
    };
  }

  private finish(s: AdaptiveSample): void {
    if (s.outcome === 'throttled') {
      this.throttled(s.startedAt);
    } else {
      if (s.outcome === 'ok') {
        const bytes = s.bytes ?? 0;
        const ms = Math.max(0, this.now() - s.startedAt);
        this.samples.push({ ms, units: 1 + bytes / this.bytesPerUnit, bytes });
      }
      this.tick();
    }
    this.wakeWaiters();
  }

  private wakeWaiters(): void {
    while (this.queue.length > 0 && this.active + this.pendingWakes < this.current) {
      const w = this.queue.shift()!;
      if (w.signal && w.onAbort) w.signal.removeEventListener('abort', w.onAbort);
      // take() runs when the waiter resumes; count it now so a burst of releases wakes no more than the limit.
      this.pendingWakes++;
      w.resolve();
      queueMicrotask(() => this.pendingWakes--);
    }
  }

  private pendingWakes = 0;

  /** Closes every window that has ended by now. */
  private tick(): void {
    const now = this.now();
    if (now - this.windowStart < this.windowMs) return;
    this.closeWindow(now);
  }

  private closeWindow(now: number): void {
    const elapsed = Math.max(1, now - this.windowStart);
    const samples = this.samples;
    const lagMs = Math.max(0, this.lag());
    const completedPerSec = (samples.length * 1000) / elapsed;
    const bytesPerSec = (samples.reduce((n, s) => n + s.bytes, 0) * 1000) / elapsed;
    const units = samples.reduce((n, s) => n + s.units, 0);
    const throughput = (units * 1000) / elapsed;
    this.lastWindow = { completedPerSec, bytesPerSec, lagMs };
    const enough = samples.length >= this.minSamples;
    if (enough) {
      this.lastWindow.latencyMs = median(samples.map((s) => s.ms));
      // Our own lag delays every completion we observe by about that much: not the provider's.
      const cost = median(samples.map((s) => Math.max(0, s.ms - lagMs) / s.units));
      if (lagMs > this.maxLagMs) {
        this.emit('hold', { name: this.name, eventLoopLagMs: lagMs });
      } else if (this.baseline !== undefined && cost > this.baseline * this.tolerance) {
        this.cut('latency');
      } else if (this.saturated && (this.prevThroughput === undefined || throughput >= this.prevThroughput * 0.9)) {
        this.grow();
      }
      // The baseline is learnt from calm windows only: under lag the subtraction above is a guess.
      if (lagMs <= this.maxLagMs / 4) this.baseline = this.baseline === undefined ? cost : Math.min(this.baseline * BASELINE_DRIFT, cost);
      this.prevThroughput = throughput;
    }
    this.samples = [];
    this.saturated = this.active >= this.current;
    this.windowStart = now;
    this.emit('window', this.status());
  }

  private grow(): void {
    const from = this.current;
    const to = Math.min(this.max, this.doubling ? from * 2 : Math.floor(from + this.increaseBy));
    if (to === from) return;
    this.current = to;
    this.counts.increases++;
    this.emit('increase', { name: this.name, from, to, reason: 'throughput' });
    this.wakeWaiters();
  }

  private cut(reason: 'throttled' | 'latency'): void {
    const from = this.current;
    this.lastCutAt = this.now();
    const to = Math.max(this.min, Math.floor(from * this.decreaseBy));
    this.doubling = false;
    // A new round starts after a cut: the throughput compared against is the one to come.
    this.prevThroughput = undefined;
    if (to === from) return;
    this.current = to;
    this.counts.decreases++;
    this.emit('decrease', { name: this.name, from, to, reason });
  }
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, n));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

let monitor: { h: IntervalHistogram; resetAt: number } | undefined;

/** p90 event-loop delay (ms) over the last few seconds, from one histogram shared by every limiter of the process. */
export function sharedEventLoopLag(): number {
  if (!monitor) {
    const h = monitorEventLoopDelay({ resolution: 20 });
    h.enable();
    monitor = { h, resetAt: performance.now() };
  }
  // The histogram counts the timer's resolution into every sample.
  const ms = Math.max(0, monitor.h.percentile(90) / 1e6 - 20);
  if (performance.now() - monitor.resetAt > 5_000) {
    monitor.h.reset();
    monitor.resetAt = performance.now();
  }
  return Number.isFinite(ms) ? ms : 0;
}
