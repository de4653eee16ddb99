export { Router, routerEtag, type RouterOptions, type RouterProvider, type RouterGetResult, type RouterEvents } from './router.js';
export { HealthTracker, type HealthState, type HealthChange, type ProviderHealth, type BreakerEventSource, type HealthTrackerOptions } from './health-tracker.js';
export { CostModel, BYTES_PER_GB, type CostModelOptions } from './cost-model.js';
export { PolicySet, type PlacementPolicy, type PolicyInput } from './policy.js';
export { KeyLocks } from './key-locks.js';
export { openRouter, openProviderStacks, resilienceOptions, DEFAULT_ATTEMPT_TIMEOUT_MS, type OpenRouterOptions, type ProviderStack } from './open-router.js';
export { ProviderSet, type Placement } from './provider-set.js';
