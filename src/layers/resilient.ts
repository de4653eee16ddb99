import type { BlobStore } from '../core/index.js';
import { BreakerStore, type BreakerOptions } from './breaker.js';
import { InstrumentedStore, type InstrumentedOptions } from './instrumented.js';
import { RateLimitStore, type RateLimitOptions } from './rate-limit.js';
import { RetryStore, type RetryOptions } from './retry.js';
import { TimeoutStore, type TimeoutOptions } from './timeout.js';

export interface ResilienceOptions {
  /** Whole-operation deadline (retries and waits included), in ms. Default: none. */
  operationTimeoutMs?: number;
  retry?: RetryOptions | false;
  breaker?: BreakerOptions | false;
  rateLimit?: RateLimitOptions;
  /** Per-attempt deadline and body stall detection. */
  attemptTimeout?: TimeoutOptions;
  instrument?: InstrumentedOptions | false;
}

/** The composed store and handles on the layers that have something to observe. */
export interface ResilientStack {
  store: BlobStore;
  retry?: RetryStore;
  breaker?: BreakerStore;
  rateLimit?: RateLimitStore;
  instrumented?: InstrumentedStore;
}

/**
 * The recommended stack around one driver:
 * `Timeout(operation) → Retry → Breaker → RateLimit → Instrumented → Timeout(attempt) → driver`.
 * Instrumentation and the breaker sit inside retry so both see every attempt, and outside the
 * attempt deadline so a timed-out attempt reaches them as Transient (a driver may report the
 * cancelled request as Aborted, which neither counts). The rate limit is inside the breaker so
 * refused calls spend no tokens, and outside the attempt deadline so waiting for a token never
 * times an attempt out.
 */
export function resilient(driver: BlobStore, options: ResilienceOptions = {}): ResilientStack {
  const stack: ResilientStack = { store: driver };
  let store: BlobStore = driver;
  if (options.attemptTimeout) store = new TimeoutStore(store, options.attemptTimeout);
  if (options.instrument !== false) store = stack.instrumented = new InstrumentedStore(store, options.instrument || {});
  if (options.rateLimit) store = stack.rateLimit = new RateLimitStore(store, options.rateLimit);
  if (options.breaker !== false) store = stack.breaker = new BreakerStore(store, options.breaker || {});
  if (options.retry !== false) store = stack.retry = new RetryStore(store, options.retry || {});
  if (options.operationTimeoutMs !== undefined) store = new TimeoutStore(store, { timeoutMs: options.operationTimeoutMs });
  stack.store = store;
  return stack;
}
