import { describe, expect, it } from 'vitest';
import { AdaptiveConcurrency, type AdaptiveConcurrencyOptions } from '../../src/layers/adaptive-concurrency.js';
import { isCloudmuxError, ThrottledError } from '../../src/core/index.js';

/**
 * A simulated provider on a simulated clock: every request takes `latencyMs` (more when more than
 * `knee` are in flight: a queue builds), and a request started when `ratePerSec` requests already
 * started in the last second is throttled at once (a 503 SlowDown after `throttleMs`).
 * Discrete events, no timers: the same inputs give the same run.
 */
interface Provider { ratePerSec?: number; latencyMs: number; knee?: number; throttleMs?: number; extraLatencyMs?: (t: number) => number }

function simulate(limiter: AdaptiveConcurrency, clock: { t: number }, p: Provider, durationMs: number): { ok: number; throttled: number; limits: number[] } {
  const starts: number[] = [];
  const running: { at: number; release: (o: 'ok' | 'throttled') => void; outcome: 'ok' | 'throttled' }[] = [];
  let ok = 0;
  let throttled = 0;
  const limits: number[] = [];
  let nextSample = 0;
  while (clock.t < durationMs) {
    for (let permit = limiter.tryAcquire(); permit; permit = limiter.tryAcquire()) {
      while (starts.length && starts[0]! <= clock.t - 1000) starts.shift();
      const over = p.ratePerSec !== undefined && starts.length >= p.ratePerSec;
      let took = p.latencyMs;
      if (p.knee !== undefined && limiter.inFlight > p.knee) took *= limiter.inFlight / p.knee;
      took += p.extraLatencyMs?.(clock.t) ?? 0;
      if (over) running.push({ at: clock.t + (p.throttleMs ?? 5), release: permit.release, outcome: 'throttled' });
      else {
        starts.push(clock.t);
        running.push({ at: clock.t + took, release: permit.release, outcome: 'ok' });
      }
    }
    running.sort((a, b) => a.at - b.at);
    const next = running.shift();
    if (!next) break;
    clock.t = next.at;
    next.release(next.outcome);
    if (next.outcome === 'ok') ok++;
    else throttled++;
    while (clock.t >= nextSample) {
      limits.push(limiter.limit);
      nextSample += 100;
    }
  }
  return { ok, throttled, limits };
}

function make(clock: { t: number }, opts: AdaptiveConcurrencyOptions = {}, lag = (): number => 0): AdaptiveConcurrency {
  return new AdaptiveConcurrency({ now: () => clock.t, eventLoopLag: lag, ...opts });
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('AdaptiveConcurrency', () => {
  it('has documented defaults and a status snapshot', () => {
    const clock = { t: 0 };
    const a = make(clock);
    expect(a.status()).toMatchObject({ name: 'provider', limit: 4, min: 1, max: 64, inFlight: 0, waiting: 0, throttles: 0 });
    expect(String(a)).toBe('AdaptiveConcurrency(provider, 4 in [1, 64])');
    expect(() => make(clock, { decrease: 1 })).toThrow(RangeError);
  });

  it('grows additively while latency holds, up to max and never past it', () => {
    const clock = { t: 0 };
    const a = make(clock, { max: 12 });
    const increases: number[] = [];
    a.on('increase', (e) => increases.push(e.to));
    const run = simulate(a, clock, { latencyMs: 50 }, 20_000);
    expect(a.limit).toBe(12);
    expect(increases).toEqual([5, 6, 7, 8, 9, 10, 11, 12]);
    expect(Math.max(...run.limits)).toBe(12);
    expect(run.throttled).toBe(0);
  });

  it('slow start: doubles per window until the first cut, then grows additively', () => {
    const clock = { t: 0 };
    const a = make(clock, { slowStart: true, max: 64 });
    const changes: string[] = [];
    a.on('increase', (e) => changes.push(`+${e.to}`));
    a.on('decrease', (e) => changes.push(`-${e.to}`));
    // 50 ms requests, throttled above 400/s: the right limit is about 20.
    const run = simulate(a, clock, { latencyMs: 50, ratePerSec: 400 }, 30_000);
    expect(changes.slice(0, 4)).toEqual(['+8', '+16', '+32', '-16']);
    const afterCut = changes.slice(changes.findIndex((c) => c.startsWith('-')) + 1).filter((c) => c.startsWith('+'));
    expect(afterCut.length).toBeGreaterThan(0);
    for (let i = 1; i < afterCut.length; i++) expect(Number(afterCut[i]) - Number(afterCut[i - 1])).toBeLessThanOrEqual(1);
    expect(mean(run.limits.slice(run.limits.length / 2))).toBeLessThan(30);
    // Without it, the same start adds one per window.
    const b = make({ t: 0 }, { max: 64 });
    expect(b.limit).toBe(4);
  });

  it('settles near the provider rate R with few throttles (503 above R)', () => {
    // R = 100 req/s at 50 ms: the right limit is about R × latency = 5.
    const clock = { t: 0 };
    const a = make(clock, { max: 64, initial: 32 });
    const run = simulate(a, clock, { latencyMs: 50, ratePerSec: 100 }, 120_000);
    const late = run.limits.slice(run.limits.length / 2);
    expect(mean(late)).toBeGreaterThan(2.5);
    expect(mean(late)).toBeLessThan(10);
    // Goodput near R over the run, and throttles a small fraction of requests.
    expect(run.ok / 120).toBeGreaterThan(70);
    expect(run.throttled / (run.ok + run.throttled)).toBeLessThan(0.05);
  });

  it('cuts once per round: throttles of requests sent before the cut do not cut again', () => {
    const clock = { t: 0 };
    const a = make(clock, { initial: 32 });
    const permits = Array.from({ length: 32 }, () => a.tryAcquire()!);
    clock.t = 10;
    for (const p of permits) p.release('throttled');
    expect(a.limit).toBe(16);
    expect(a.status()).toMatchObject({ throttles: 32, decreases: 1 });
    // A request sent after the cut that is throttled cuts again.
    const later = a.tryAcquire()!;
    clock.t = 20;
    later.release('throttled');
    expect(a.limit).toBe(8);
  });

  it('respects min under sustained throttling', () => {
    const clock = { t: 0 };
    const a = make(clock, { min: 3, initial: 8 });
    simulate(a, clock, { latencyMs: 50, ratePerSec: 1 }, 10_000);
    expect(a.limit).toBe(3);
  });

  it('backs off when latency rises past the tolerance (a queue at the provider)', () => {
    // The provider serves 6 at once at 40 ms; past that, latency grows with what is in flight.
    const clock = { t: 0 };
    const a = make(clock, { initial: 4, max: 64 });
    const decreases: string[] = [];
    a.on('decrease', (e) => decreases.push(e.reason));
    const run = simulate(a, clock, { latencyMs: 40, knee: 6 }, 120_000);
    expect(decreases).toContain('latency');
    expect(mean(run.limits.slice(run.limits.length / 2))).toBeLessThan(16);
    expect(run.throttled).toBe(0);
  });

  it('does not blame the provider for event-loop lag: holds instead of cutting', () => {
    const clock = { t: 0 };
    // From 10 s on, the box is slow: every completion is seen 300 ms late and the loop lags 300 ms.
    const lagFrom = 10_000;
    const a = make(clock, { initial: 8, max: 8 }, () => (clock.t >= lagFrom ? 300 : 0));
    const held: number[] = [];
    a.on('hold', (e) => held.push(e.eventLoopLagMs));
    const cuts: string[] = [];
    a.on('decrease', (e) => cuts.push(e.reason));
    simulate(a, clock, { latencyMs: 50, extraLatencyMs: (t) => (t >= lagFrom ? 300 : 0) }, 30_000);
    expect(cuts).toEqual([]);
    expect(held.length).toBeGreaterThan(5);
    expect(a.limit).toBe(8);
  });

  it('subtracts a small lag from latency before comparing', () => {
    const clock = { t: 0 };
    // 60 ms of lag (below maxEventLoopLagMs) on 40 ms requests: 2.5× the latency, but not the provider's doing.
    const a = make(clock, { initial: 6, max: 6 }, () => (clock.t >= 5_000 ? 60 : 0));
    const cuts: string[] = [];
    a.on('decrease', (e) => cuts.push(e.reason));
    simulate(a, clock, { latencyMs: 40, extraLatencyMs: (t) => (t >= 5_000 ? 60 : 0) }, 20_000);
    expect(cuts).toEqual([]);
  });

  it('weighs latency by bytes: big objects are not a latency rise', () => {
    const clock = { t: 0 };
    const a = make(clock, { initial: 4, max: 4 });
    const cuts: string[] = [];
    a.on('decrease', (e) => cuts.push(e.reason));
    // 10 s of 1 KiB objects at 20 ms, then 64 MiB objects at 20 ms + 10 ms/MiB.
    for (let i = 0; i < 4000; i++) {
      const big = clock.t >= 10_000;
      const p = a.tryAcquire()!;
      clock.t += big ? 20 + 640 : 20;
      p.release('ok', big ? 64 * 1024 * 1024 : 1024);
    }
    expect(cuts).toEqual([]);
  });

  it('run() reads a Throttled error as the signal; acquire waits for a slot and aborts with Aborted', async () => {
    const clock = { t: 0 };
    const a = make(clock, { initial: 2 });
    await expect(a.run(async () => { throw new ThrottledError('slow down'); })).rejects.toThrow('slow down');
    expect(a.status()).toMatchObject({ throttles: 1, limit: 1 });
    const held = await a.acquire();
    const ctl = new AbortController();
    const waiting = a.acquire(ctl.signal);
    expect(a.status().waiting).toBe(1);
    ctl.abort();
    const err = await waiting.catch((e: unknown) => e);
    expect(isCloudmuxError(err, 'Aborted')).toBe(true);
    const next = a.acquire();
    held.release('ok');
    (await next).release('ok');
    expect(a.inFlight).toBe(0);
  });
});
