import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { Backoff, retryInPlace, sleep } from '../../src/core/backoff.js';
import { CloudmuxError, ThrottledError, TransientError, isRetryable, type ErrorCode } from '../../src/core/errors.js';
import { seededRandom } from '../faults/random.js';

const transient = (): CloudmuxError => new TransientError('reset');
const throttled = (ms: number): CloudmuxError => new ThrottledError('slow down', { retryAfterMs: ms });

describe('Backoff.delay: full jitter under min(cap, base·2^(n-1)), never under Retry-After', () => {
  const cases: { n: number; random: number; error?: CloudmuxError; want: number }[] = [
    { n: 1, random: 0.999, want: 99 },
    { n: 1, random: 0, want: 0 },
    { n: 2, random: 0.5, want: 100 },
    { n: 4, random: 0.5, want: 400 },
    { n: 8, random: 0.5, want: 500 }, // capped at 1000
    { n: 1000, random: 0.5, want: 500 }, // no overflow
    { n: 1, random: 0.5, error: throttled(700), want: 700 }, // Retry-After is a floor
    { n: 8, random: 0.9, error: throttled(100), want: 900 }, // the jitter may be longer
    { n: 1, random: 0.5, error: transient(), want: 50 },
  ];
  for (const c of cases) {
    it(`n=${c.n} random=${c.random}${c.error ? ` after ${c.error.code}${c.error.retryAfterMs ? ` (${c.error.retryAfterMs} ms asked)` : ''}` : ''} → ${c.want} ms`, () => {
      const b = new Backoff({ baseMs: 100, capMs: 1000, random: () => c.random });
      expect(b.delay(c.n, c.error)).toBe(c.want);
    });
  }
});

describe('Backoff.allows: retryable, attempts left, Retry-After within bounds', () => {
  const b = new Backoff({ attempts: 3, maxRetryAfterMs: 1000 });
  const cases: { n: number; error: unknown; want: boolean }[] = [
    { n: 1, error: transient(), want: true },
    { n: 2, error: transient(), want: true },
    { n: 3, error: transient(), want: false }, // the third attempt was the last
    { n: 1, error: new CloudmuxError('NotFound', 'gone'), want: false },
    { n: 1, error: new Error('plain'), want: false },
    { n: 1, error: throttled(1000), want: true },
    { n: 1, error: throttled(1001), want: false }, // asks for more than we wait
  ];
  for (const c of cases) {
    it(`attempt ${c.n} failed with ${(c.error as { code?: ErrorCode }).code ?? 'a plain Error'} → ${c.want ? 'retry' : 'stop'}`, () => {
      expect(b.allows(c.n, c.error)).toBe(c.want);
    });
  }
});

describe('sleep', () => {
  it('rejects with Aborted at once when the signal fires, and leaves no listener behind', async () => {
    const ac = new AbortController();
    const p = sleep(60_000, ac.signal);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(1);
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: 'Aborted' });
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  });

  it('removes its listener when the wait ends normally (a run-wide signal must not pile them up)', async () => {
    const ac = new AbortController();
    for (let i = 0; i < 20; i++) await sleep(1, ac.signal);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  });

  it('keeps a CloudmuxError given as the abort reason', async () => {
    const ac = new AbortController();
    ac.abort(new TransientError('timed out'));
    await expect(sleep(10, ac.signal)).rejects.toMatchObject({ code: 'Transient', message: 'timed out' });
  });
});

/** One run of retryInPlace as observed from outside: what each attempt threw and what was waited. */
interface RetryHistory {
  attempts: number;
  config: { baseMs: number; capMs: number; attempts: number; maxRetryAfterMs: number };
  /** Outcome of each attempt: 'ok' or the error thrown. */
  outcomes: ('ok' | CloudmuxError)[];
  waits: number[];
  result: 'ok' | CloudmuxError;
}

/**
 * The invariants of one backoff run. Returns the violations (empty = fine):
 * - no attempt after a success, a non-retryable error, or the configured last attempt;
 * - one wait between two attempts, within [retryAfter, max(retryAfter, ceiling)) where ceiling = min(cap, base·2^(n-1));
 * - the result is the last outcome; a failure stops only when it had to.
 */
function checkRetryHistory(h: RetryHistory): string[] {
  const v: string[] = [];
  const { baseMs, capMs, attempts, maxRetryAfterMs } = h.config;
  if (h.outcomes.length > attempts) v.push(`${h.outcomes.length} attempts, configured ${attempts}`);
  if (h.waits.length !== Math.max(0, h.outcomes.length - 1)) v.push(`${h.waits.length} waits for ${h.outcomes.length} attempts`);
  h.outcomes.forEach((o, i) => {
    const last = i === h.outcomes.length - 1;
    if (o === 'ok') {
      if (!last) v.push(`attempt ${i + 1} succeeded but another followed`);
      return;
    }
    const tooLong = o.retryAfterMs !== undefined && o.retryAfterMs > maxRetryAfterMs;
    const mayRetry = o.retryable && i + 1 < attempts && !tooLong;
    if (!last && !mayRetry) v.push(`attempt ${i + 1} failed with ${o.code} (retry not allowed) but another followed`);
    if (last && mayRetry) v.push(`gave up after attempt ${i + 1} (${o.code}) though a retry was allowed`);
    if (!last) {
      const w = h.waits[i] ?? -1;
      const ceiling = Math.min(capMs, baseMs * 2 ** i);
      const floor = o.retryAfterMs ?? 0;
      if (w < floor) v.push(`wait ${i + 1} was ${w} ms, the error asked for ${floor}`);
      if (w >= Math.max(ceiling, floor + 1)) v.push(`wait ${i + 1} was ${w} ms, over the ceiling ${ceiling}`);
    }
  });
  if (h.outcomes.length > 0 && h.result !== h.outcomes[h.outcomes.length - 1]) v.push('the result is not the last outcome');
  return v;
}

describe('retryInPlace under a seeded adversary', () => {
  const seed = Number(process.env.CLOUDMUX_BACKOFF_SEED ?? Math.floor(Math.random() * 2 ** 31));

  it(`keeps every backoff invariant over 300 random runs (seed ${seed}; replay with CLOUDMUX_BACKOFF_SEED=${seed})`, async () => {
    console.log(`backoff adversary seed ${seed} (CLOUDMUX_BACKOFF_SEED=${seed} replays it)`);
    const random = seededRandom(seed);
    const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)]!;
    for (let run = 0; run < 300; run++) {
      const config = { baseMs: pick([0, 1, 3]), capMs: pick([0, 2, 8]), attempts: pick([1, 2, 3, 5]), maxRetryAfterMs: pick([0, 4]) };
      const waits: number[] = [];
      const outcomes: ('ok' | CloudmuxError)[] = [];
      const backoff = new Backoff({ ...config, random });
      let result: 'ok' | CloudmuxError;
      try {
        result = await retryInPlace(async () => {
          const r = random();
          const o: 'ok' | CloudmuxError = r < 0.3 ? 'ok' : r < 0.6 ? transient() : r < 0.8 ? throttled(pick([0, 2, 5])) : new CloudmuxError(pick(['NotFound', 'AccessDenied', 'IntegrityError'] as const), 'no');
          outcomes.push(o);
          if (o !== 'ok') throw o;
          return o;
        }, { backoff, onRetry: ({ delayMs }) => waits.push(delayMs) });
      } catch (e) {
        result = e as CloudmuxError;
      }
      const violations = checkRetryHistory({ attempts: outcomes.length, config, outcomes, waits, result });
      expect(violations, `run ${run} (seed ${seed})`).toEqual([]);
    }
  });

  it('the checker catches a known-bad history (retrying a NotFound, a wait under Retry-After, one attempt too many)', () => {
    const config = { baseMs: 10, capMs: 100, attempts: 2, maxRetryAfterMs: 1000 };
    const notFound = new CloudmuxError('NotFound', 'gone');
    expect(checkRetryHistory({ attempts: 2, config, outcomes: [notFound, 'ok'], waits: [1], result: 'ok' })).toEqual([
      'attempt 1 failed with NotFound (retry not allowed) but another followed',
    ]);
    const slow = throttled(50);
    expect(checkRetryHistory({ attempts: 2, config, outcomes: [slow, 'ok'], waits: [5], result: 'ok' })).toEqual([
      'wait 1 was 5 ms, the error asked for 50',
    ]);
    const t = transient();
    expect(checkRetryHistory({ attempts: 3, config, outcomes: [t, t, 'ok'], waits: [1, 1], result: 'ok' })).toContain('3 attempts, configured 2');
    expect(checkRetryHistory({ attempts: 1, config, outcomes: [t], waits: [], result: t })).toEqual(['gave up after attempt 1 (Transient) though a retry was allowed']);
    expect(isRetryable(t)).toBe(true);
  });

  it('stops with Aborted when the caller aborts during a wait', async () => {
    const ac = new AbortController();
    const backoff = new Backoff({ baseMs: 60_000, capMs: 60_000, attempts: 5, random: () => 0.5 });
    let calls = 0;
    const p = retryInPlace(async () => {
      calls++;
      throw transient();
    }, { backoff, signal: ac.signal, onRetry: () => queueMicrotask(() => ac.abort()) });
    await expect(p).rejects.toMatchObject({ code: 'Aborted' });
    expect(calls).toBe(1);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  });
});
