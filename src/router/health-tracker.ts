import type { BreakerState } from '../layers/breaker.js';
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { collect } from '../core/body.js';
import { TransientError, countsAgainstHealth, describeError, type OpClass } from '../core/errors.js';
import { runningClock, type RunningSpan } from '../core/running-clock.js';
import type { BlobStore } from '../core/types.js';
import type { HealthConfig } from '../config/schema.js';
import { ProbeScheduler } from './probe-scheduler.js';

export type HealthState = 'healthy' | 'degraded' | 'down';

export interface HealthChange {
  provider: string;
  from: HealthState;
  to: HealthState;
  reason: string;
}

export interface ProviderHealth {
  provider: string;
  state: HealthState;
  /** Why the provider is in this state. */
  reason: string;
  since: Date;
  /** EWMA of successful request latency, ms (undefined before the first sample). */
  ewmaMs: number | undefined;
  p50Ms: number | undefined;
  p95Ms: number | undefined;
  /** Failures / requests in the rolling window (0 below `minRequests`). */
  errorRate: number;
  requests: number;
  breaker: BreakerState;
  /** The last conclusive canary probe; latency in running time ({@link runningClock}). */
  lastProbe?: { ok: boolean; at: Date; latencyMs: number; stalledMs: number; error?: string };
  /** Probes that proved nothing because this process was starved of CPU (not counted against the provider). */
  inconclusiveProbes: number;
}

/** What one canary probe found. */
export interface ProbeOutcome {
  provider: string;
  /** `inconclusive`: a request ran out of wall time before it had `timeoutMs` of our running time. */
  result: 'ok' | 'failed' | 'inconclusive';
  /** Running time of the probe's requests, ms. */
  latencyMs: number;
  /** Time the process was stalled while the requests were out, ms (not counted in latencyMs). */
  stalledMs: number;
  error?: string;
}

/** Deadline of each canary request when none is given. */
export const DEFAULT_PROBE_TIMEOUT_MS = 10_000;

/** Anything that emits opossum-style breaker events (`open`, `halfOpen`, `close`). */
export interface BreakerEventSource {
  on(event: 'open' | 'halfOpen' | 'close', listener: (ev: { opClass?: string }) => void): unknown;
  off?(event: 'open' | 'halfOpen' | 'close', listener: (ev: { opClass?: string }) => void): unknown;
}

export interface HealthTrackerOptions extends Partial<HealthConfig> {
  /** Clock for tests. */
  now?: () => number;
  /** Weight of the newest latency sample in the EWMA (default 0.2). */
  ewmaAlpha?: number;
}

const RANK: Record<HealthState, number> = { healthy: 0, degraded: 1, down: 2 };
const SAMPLES = 256;
const BUCKETS = 10;

class ProviderStats {
  state: HealthState = 'healthy';
  reason = 'no data yet';
  since: number;
  ewma: number | undefined;
  samples: number[] = [];
  sampleAt = 0;
  sorted: number[] | undefined;
  buckets: { start: number; ok: number; fail: number }[] = [];
  breaker: BreakerState = 'closed';
  classes = new Map<string, BreakerState>();
  probeFailures = 0;
  inconclusiveProbes = 0;
  lastProbe: ProviderHealth['lastProbe'];
  betterStreak = 0;
  constructor(now: number) {
    this.since = now;
  }
}

/**
 * Health of every provider: EWMA and percentile latency, rolling error rate, breaker state and
 * canary probes, folded into healthy / degraded / down. Getting worse is immediate; getting better
 * takes `recoverAfter` consecutive good evaluations (hysteresis), so a flapping provider does not
 * pull traffic back and forth. Emits `change` ({@link HealthChange}) on every transition.
 */
export class HealthTracker extends EventEmitter<{ change: [HealthChange] }> {
  readonly config: HealthConfig;
  private readonly stats = new Map<string, ProviderStats>();
  private readonly now: () => number;
  private readonly alpha: number;
  private scheduler: ProbeScheduler | undefined;
  private readonly probing = new Map<string, Promise<ProbeOutcome>>();
  private readonly unsubscribe: (() => void)[] = [];

  constructor(providers: Iterable<string>, opts: HealthTrackerOptions = {}) {
    super();
    this.now = opts.now ?? Date.now;
    this.alpha = opts.ewmaAlpha ?? 0.2;
    this.config = {
      probeIntervalMs: opts.probeIntervalMs ?? 15_000,
      probePrefix: opts.probePrefix ?? 'cloudmux-probe',
      windowMs: opts.windowMs ?? 30_000,
      degradedErrorRate: opts.degradedErrorRate ?? 0.1,
      downErrorRate: opts.downErrorRate ?? 0.5,
      minRequests: opts.minRequests ?? 5,
      degradedP95Ms: opts.degradedP95Ms ?? 0,
      recoverAfter: opts.recoverAfter ?? 3,
    };
    for (const p of providers) this.stats.set(p, new ProviderStats(this.now()));
  }

  /**
   * Records the outcome of one request of class `op` (default read). Errors that do not count
   * against health (`countsAgainstHealth`, the table in src/core/errors.ts: NotFound, …) count as
   * successes without latency.
   */
  record(provider: string, latencyMs: number, error?: unknown, op: OpClass = 'read'): void {
    const s = this.stats.get(provider);
    if (!s) return;
    const failed = error !== undefined && countsAgainstHealth(error, op);
    const b = this.bucket(s);
    if (failed) b.fail++;
    else b.ok++;
    if (!failed && error === undefined) this.addLatency(s, latencyMs);
    this.evaluate(provider, s);
  }

  /**
   * Follows a circuit breaker's events for `provider` (BreakerStore emits them per operation class
   * with `{ opClass }`; the provider counts as open while any class is open).
   */
  observeBreaker(provider: string, breaker: BreakerEventSource): void {
    const on = (state: BreakerState) => (ev?: { opClass?: string }) => this.setBreaker(provider, state, ev?.opClass ?? 'all');
    const handlers = { open: on('open'), halfOpen: on('halfOpen'), close: on('closed') } as const;
    for (const [ev, fn] of Object.entries(handlers)) breaker.on(ev as 'open', fn);
    this.unsubscribe.push(() => {
      for (const [ev, fn] of Object.entries(handlers)) breaker.off?.(ev as 'open', fn);
    });
  }

  /** Sets the breaker state of one operation class (default: the whole provider). */
  setBreaker(provider: string, state: BreakerState, opClass = 'all'): void {
    const s = this.stats.get(provider);
    if (!s) return;
    if (opClass === 'all') s.classes.clear();
    s.classes.set(opClass, state);
    const states = [...s.classes.values()];
    const before = s.breaker;
    s.breaker = states.includes('open') ? 'open' : states.includes('halfOpen') ? 'halfOpen' : 'closed';
    if (s.breaker === 'closed' && before !== 'closed') {
      // A closed breaker has just seen its trial request succeed: old failures no longer describe the provider.
      s.buckets = [];
      s.probeFailures = 0;
      s.betterStreak = this.config.recoverAfter;
    }
    this.evaluate(provider, s);
  }

  /** Current state (re-evaluated, so a quiet provider recovers as its failures age out of the window). */
  state(provider: string): HealthState {
    const s = this.stats.get(provider);
    if (!s) return 'down';
    this.evaluate(provider, s);
    return s.state;
  }

  rank(provider: string): number {
    return RANK[this.state(provider)];
  }

  /** Latency percentile (0–100) of recent successful requests, or undefined without samples. */
  percentile(provider: string, p: number): number | undefined {
    const s = this.stats.get(provider);
    if (!s || s.samples.length === 0) return undefined;
    s.sorted ??= [...s.samples].sort((a, b) => a - b);
    const i = Math.min(s.sorted.length - 1, Math.max(0, Math.ceil((p / 100) * s.sorted.length) - 1));
    return s.sorted[i];
  }

  ewma(provider: string): number | undefined {
    return this.stats.get(provider)?.ewma;
  }

  snapshot(): ProviderHealth[] {
    return [...this.stats.keys()].map((p) => this.health(p)!);
  }

  health(provider: string): ProviderHealth | undefined {
    const s = this.stats.get(provider);
    if (!s) return undefined;
    this.evaluate(provider, s);
    const { rate, total } = this.errorRate(s);
    const h: ProviderHealth = {
      provider, state: s.state, reason: s.reason, since: new Date(s.since), ewmaMs: s.ewma,
      p50Ms: this.percentile(provider, 50), p95Ms: this.percentile(provider, 95), errorRate: rate, requests: total, breaker: s.breaker,
      inconclusiveProbes: s.inconclusiveProbes,
    };
    if (s.lastProbe) h.lastProbe = { ...s.lastProbe };
    return h;
  }

  /**
   * One canary round trip on `store`: put a few random bytes, read them back, delete them. Each
   * request has `timeoutMs` of *running* time to answer ({@link runningClock}): time this process
   * could not run (a blocked event loop, a starved CPU) is not the provider's, and its latency is
   * measured the same way. A failure that is confirmed by the next probe takes the provider down
   * (see {@link ProbeScheduler}); one that only shows the process starved is `inconclusive` and
   * counts for nothing. A probe already running for `provider` is joined, not doubled.
   */
  probe(provider: string, store: BlobStore, opts: { timeoutMs?: number } = {}): Promise<ProbeOutcome> {
    const s = this.stats.get(provider);
    if (!s) return Promise.resolve({ provider, result: 'failed', latencyMs: 0, stalledMs: 0, error: 'not a configured provider' });
    let running = this.probing.get(provider);
    if (!running) {
      running = this.runProbe(provider, s, store, opts.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS).finally(() => this.probing.delete(provider));
      this.probing.set(provider, running);
    }
    return running;
  }

  private async runProbe(provider: string, s: ProviderStats, store: BlobStore, timeoutMs: number): Promise<ProbeOutcome> {
    const key = `${this.config.probePrefix}/${hostname().replace(/[^A-Za-z0-9._-]/g, '_')}-${process.pid}-${randomBytes(4).toString('hex')}`;
    const payload = randomBytes(32);
    const spans: RunningSpan[] = [];
    let current = 'put';
    const step = <T>(op: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> => {
      current = op;
      return timed(op, timeoutMs, fn, spans);
    };
    let outcome: ProbeOutcome;
    try {
      await step('put', (signal) => store.put(key, payload, { contentType: 'application/octet-stream', signal }));
      const back = await step('get', async (signal) => collect((await store.get(key, { signal })).body));
      await step('delete', (signal) => store.delete(key, { signal }));
      current = 'compare';
      if (!back.equals(payload)) throw new Error('canary read back different bytes');
      outcome = { provider, result: 'ok', ...sum(spans) };
    } catch (e) {
      const starved = e instanceof ProbeDeadline && e.starved;
      const error = e instanceof ProbeDeadline ? e.message : `${current}: ${describeError(e, { where: false })}`;
      outcome = { provider, result: starved ? 'inconclusive' : 'failed', ...sum(spans), error: error.slice(0, 300) };
    }
    const at = new Date();
    if (outcome.result === 'ok') {
      s.probeFailures = 0;
      s.lastProbe = { ok: true, at, latencyMs: outcome.latencyMs, stalledMs: outcome.stalledMs };
      this.addLatency(s, outcome.latencyMs / 3);
    } else if (outcome.result === 'failed') {
      s.probeFailures++;
      s.lastProbe = { ok: false, at, latencyMs: outcome.latencyMs, stalledMs: outcome.stalledMs, error: outcome.error };
    } else {
      s.inconclusiveProbes++;
    }
    this.evaluate(provider, s);
    return outcome;
  }

  /** Probes every given store now, concurrently. */
  async probeAll(stores: Record<string, BlobStore>, opts: { timeoutMs?: number } = {}): Promise<ProbeOutcome[]> {
    return Promise.all(Object.entries(stores).filter(([p]) => this.stats.has(p)).map(([p, st]) => this.probe(p, st, opts)));
  }

  /**
   * Probes on `probeIntervalMs` (failures confirmed promptly) until {@link stop}, through a
   * {@link ProbeScheduler}. The timers do not keep the process alive.
   */
  startProbes(stores: Record<string, BlobStore>, opts: { timeoutMs?: number } = {}): void {
    this.stopProbes();
    if (this.config.probeIntervalMs <= 0) return;
    this.scheduler = new ProbeScheduler(this, stores, { intervalMs: this.config.probeIntervalMs, timeoutMs: opts.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS });
    this.scheduler.start({ firstRound: 'after-interval' });
  }

  stopProbes(): void {
    this.scheduler?.stop();
    this.scheduler = undefined;
  }

  /** Stops probes and detaches from breakers. */
  stop(): void {
    this.stopProbes();
    for (const u of this.unsubscribe.splice(0)) u();
  }

  private addLatency(s: ProviderStats, ms: number): void {
    s.ewma = s.ewma === undefined ? ms : s.ewma + this.alpha * (ms - s.ewma);
    if (s.samples.length < SAMPLES) s.samples.push(ms);
    else s.samples[s.sampleAt] = ms;
    s.sampleAt = (s.sampleAt + 1) % SAMPLES;
    s.sorted = undefined;
  }

  private bucket(s: ProviderStats): { start: number; ok: number; fail: number } {
    const width = this.config.windowMs / BUCKETS;
    const start = Math.floor(this.now() / width) * width;
    let last = s.buckets[s.buckets.length - 1];
    if (!last || last.start !== start) {
      last = { start, ok: 0, fail: 0 };
      s.buckets.push(last);
      this.trim(s);
    }
    return last;
  }

  private trim(s: ProviderStats): void {
    const cutoff = this.now() - this.config.windowMs;
    while (s.buckets.length > 0 && s.buckets[0]!.start + this.config.windowMs / BUCKETS <= cutoff) s.buckets.shift();
  }

  private errorRate(s: ProviderStats): { rate: number; total: number } {
    this.trim(s);
    let ok = 0;
    let fail = 0;
    for (const b of s.buckets) {
      ok += b.ok;
      fail += b.fail;
    }
    const total = ok + fail;
    return { rate: total >= this.config.minRequests ? fail / total : 0, total };
  }

  private target(s: ProviderStats): { state: HealthState; reason: string } {
    if (s.breaker === 'open') return { state: 'down', reason: 'circuit breaker open' };
    if (s.probeFailures >= 2) return { state: 'down', reason: `${s.probeFailures} canary probes failed in a row; last: ${s.lastProbe?.error ?? 'unknown'}` };
    const { rate } = this.errorRate(s);
    if (rate >= this.config.downErrorRate) return { state: 'down', reason: `error rate ${(rate * 100).toFixed(0)}%` };
    if (s.breaker === 'halfOpen') return { state: 'degraded', reason: 'circuit breaker half-open' };
    if (rate >= this.config.degradedErrorRate) return { state: 'degraded', reason: `error rate ${(rate * 100).toFixed(0)}%` };
    if (s.probeFailures === 1) return { state: 'degraded', reason: `last canary probe failed: ${s.lastProbe?.error ?? 'unknown'}` };
    const p95 = s.samples.length >= this.config.minRequests ? this.percentileOf(s, 95) : undefined;
    if (this.config.degradedP95Ms > 0 && p95 !== undefined && p95 > this.config.degradedP95Ms) {
      return { state: 'degraded', reason: `p95 latency ${p95.toFixed(0)} ms` };
    }
    return { state: 'healthy', reason: 'ok' };
  }

  private percentileOf(s: ProviderStats, p: number): number | undefined {
    s.sorted ??= [...s.samples].sort((a, b) => a - b);
    return s.sorted[Math.min(s.sorted.length - 1, Math.max(0, Math.ceil((p / 100) * s.sorted.length) - 1))];
  }

  private evaluate(provider: string, s: ProviderStats): void {
    const t = this.target(s);
    if (RANK[t.state] > RANK[s.state]) {
      this.transition(provider, s, t.state, t.reason);
    } else if (RANK[t.state] < RANK[s.state]) {
      s.betterStreak++;
      if (s.betterStreak >= this.config.recoverAfter) this.transition(provider, s, t.state, t.reason);
    } else {
      s.betterStreak = 0;
      s.reason = t.reason;
    }
  }

  private transition(provider: string, s: ProviderStats, to: HealthState, reason: string): void {
    const from = s.state;
    s.state = to;
    s.reason = reason;
    s.since = this.now();
    s.betterStreak = 0;
    this.emit('change', { provider, from, to, reason });
  }
}

/** A canary request ran out of running time (or, `starved`, of wall time while the process barely ran). */
class ProbeDeadline extends TransientError {
  constructor(message: string, readonly starved: boolean) {
    super(message);
  }
}

/** Runs one canary request under a running-time deadline, recording its span. */
async function timed<T>(op: string, timeoutMs: number, fn: (signal: AbortSignal) => Promise<T>, spans: RunningSpan[]): Promise<T> {
  const ac = new AbortController();
  let expired: (e: ProbeDeadline) => void = () => {};
  const expiry = new Promise<never>((_, reject) => (expired = reject));
  const deadline = runningClock.deadline(timeoutMs, (x) => {
    const e = x.starved
      ? new ProbeDeadline(`${op}: no answer in ${Math.round(x.wallMs)} ms, but this process ran only ${Math.round(x.runningMs)} ms of it (stalled ${Math.round(x.stalledMs)} ms)`, true)
      : new ProbeDeadline(`${op}: no answer within ${timeoutMs} ms (${Math.round(x.wallMs)} ms wall, ${Math.round(x.stalledMs)} ms of it this process was stalled)`, false);
    ac.abort(e);
    expired(e);
  });
  expiry.catch(() => undefined);
  try {
    return await Promise.race([fn(ac.signal), expiry]);
  } catch (e) {
    // A driver may report the abort as its own error: the deadline is the reason.
    throw ac.signal.aborted ? ac.signal.reason : e;
  } finally {
    spans.push(deadline.cancel());
  }
}

function sum(spans: RunningSpan[]): { latencyMs: number; stalledMs: number } {
  return { latencyMs: Math.round(spans.reduce((n, s) => n + s.runningMs, 0)), stalledMs: Math.round(spans.reduce((n, s) => n + s.stalledMs, 0)) };
}

/** The nearest layer in a store stack that emits breaker events (duck-typed: `on` + `state()`). */
export function findBreaker(store: BlobStore): BreakerEventSource | undefined {
  let s: unknown = store;
  for (let depth = 0; s && depth < 16; depth++) {
    const c = s as { on?: unknown; state?: unknown; inner?: unknown; constructor?: { name?: string } };
    if (typeof c.on === 'function' && typeof c.state === 'function' && c.constructor?.name === 'BreakerStore') return c as BreakerEventSource;
    s = c.inner;
  }
  return undefined;
}
