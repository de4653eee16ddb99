import { abortedError, isCloudmuxError, isRetryable as isRetryableError } from './errors.js';

/**
 * The one backoff of cloudmux. Every loop that waits before trying again (the retry layer, part
 * uploads, listings, the replication worker's schedule, lease polls) asks this module how long to
 * wait, so a reader finds the rule in one place.
 *
 * The rule: the n-th retry (1-based) waits a random time in [0, min(capMs, baseMs·2^(n-1)))
 * ("full jitter", which spreads many clients that failed together), but never less than the
 * Retry-After the error carries (`CloudmuxError.retryAfterMs`, set on Throttled).
 */
export interface BackoffOptions {
  /** Ceiling of the first wait. Default 100 ms. */
  baseMs?: number;
  /** Ceiling of any jittered wait. Default 15 000 ms. */
  capMs?: number;
  /** Attempts in all (the first one included); `retries` = attempts − 1. Default 3. */
  attempts?: number;
  /** Longest Retry-After honoured; an error asking for more is not retried. Default 60 000 ms. */
  maxRetryAfterMs?: number;
  /** Random source in [0, 1), for reproducible tests. Default Math.random. */
  random?: () => number;
}

export class Backoff {
  readonly baseMs: number;
  readonly capMs: number;
  readonly attempts: number;
  readonly maxRetryAfterMs: number;
  private readonly random: () => number;

  constructor(opts: BackoffOptions = {}) {
    this.baseMs = Math.max(0, opts.baseMs ?? 100);
    this.capMs = Math.max(0, opts.capMs ?? 15_000);
    this.attempts = Math.max(1, Math.floor(opts.attempts ?? 3));
    this.maxRetryAfterMs = opts.maxRetryAfterMs ?? 60_000;
    this.random = opts.random ?? Math.random;
  }

  /** The wait before retry `n` (1-based) after `error`. */
  delay(n: number, error?: unknown): number {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** Math.min(60, Math.max(0, n - 1)));
    const jitter = Math.floor(this.random() * ceiling);
    const asked = retryAfterOf(error);
    return asked === undefined ? jitter : Math.max(jitter, asked);
  }

  /**
   * True when attempt `n` (1-based) failed with `error` and another may follow: the error is
   * retryable, attempts are left, and any Retry-After it carries is within `maxRetryAfterMs`.
   */
  allows(n: number, error: unknown, isRetryable: (e: unknown) => boolean = isRetryableError): boolean {
    if (n >= this.attempts || !isRetryable(error)) return false;
    const asked = retryAfterOf(error);
    return asked === undefined || asked <= this.maxRetryAfterMs;
  }

  /** Waits the delay before retry `n`; rejects with Aborted as soon as `signal` fires. */
  wait(n: number, error: unknown, signal?: AbortSignal): Promise<void> {
    return sleep(this.delay(n, error), signal);
  }
}

/** The Retry-After an error carries, in ms (Throttled errors mapped from 429/503 with the header). */
export function retryAfterOf(error: unknown): number | undefined {
  return isCloudmuxError(error) ? error.retryAfterMs : undefined;
}

export interface RetryInPlaceOptions {
  backoff: Backoff;
  signal?: AbortSignal;
  /** Which errors a retry may cure. Default: `isRetryable` (Throttled, Transient). */
  isRetryable?(error: unknown): boolean;
  /** Called before each wait, with the attempt that failed (1-based) and the wait. */
  onRetry?(info: { attempt: number; error: unknown; delayMs: number }): void;
}

/**
 * Runs `attempt` until it succeeds, fails with an error that is not retryable, or `backoff`'s
 * attempts are spent; the last error is thrown as it is. For work that is safe to repeat as a
 * whole (a part whose bytes are in memory). The caller's abort ends it with Aborted.
 */
export async function retryInPlace<T>(attempt: (n: number) => Promise<T>, opts: RetryInPlaceOptions): Promise<T> {
  const retryable = opts.isRetryable ?? isRetryableError;
  for (let n = 1; ; n++) {
    if (opts.signal?.aborted) throw abortedError(opts.signal);
    try {
      return await attempt(n);
    } catch (e) {
      if (opts.signal?.aborted) throw abortedError(opts.signal);
      if (!opts.backoff.allows(n, e, retryable)) throw e;
      const delayMs = opts.backoff.delay(n, e);
      opts.onRetry?.({ attempt: n, error: e, delayMs });
      await sleep(delayMs, opts.signal);
    }
  }
}

/**
 * Resolves after `ms`, or rejects with Aborted as soon as the signal fires. The abort listener is
 * removed when the wait ends either way (one left per wait on a run-wide signal piles up).
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortedError(signal));
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortedError(signal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
