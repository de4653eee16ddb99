/**
 * Resilience layers: each a BlobStore over another BlobStore, forwarding every method, composable
 * in any order (see `resilient` for the recommended one). Encryption lives in ./encryption.
 */
export { ForwardingStore, type StoreOp } from './forwarding-store.js';
export { RetryStore, type RetryOptions, type RetryEvent, type ResumeEvent, type RetryEvents } from './retry.js';
export {
  BreakerStore, type BreakerEvent, type BreakerEvents, type BreakerOptions, type BreakerState, type BreakerStats,
} from './breaker.js';
export { TimeoutStore, type TimeoutOptions } from './timeout.js';
export { RateLimitStore, type Rate, type RateLimitOptions } from './rate-limit.js';
export { TokenBucket, type TokenBucketOptions } from './token-bucket.js';
export {
  InstrumentedStore, LATENCY_BUCKETS_MS, type InstrumentedEvents, type InstrumentedOptions, type MeasuredOp, type OpStats, type Sample,
  type StatsSnapshot,
} from './instrumented.js';
export { ReopenableBody, isReopenable, reopenable } from './reopenable-body.js';
export { resilient, type ResilienceOptions, type ResilientStack } from './resilient.js';
export {
  AdaptiveConcurrency, sharedEventLoopLag, type AdaptiveConcurrencyEvents, type AdaptiveConcurrencyOptions, type AdaptivePermit, type AdaptiveSample,
  type AdaptiveStatus,
} from './adaptive-concurrency.js';
export { BandwidthTimetable, ScheduledTokenBucket, type BandwidthLimit, type BandwidthSlot } from './bandwidth-timetable.js';
