/** Two-way, offline-first sync between a local directory and a store (docs/sync.md). */
export { SyncEngine, defaultDevice, type SyncEngineOptions, type SyncEvent, type RoundReport } from './sync-engine.js';
export { SyncMetrics } from './sync-metrics.js';
export type { ClassBacklog } from './round-backlog.js';
export { syncLoop, probe, type SyncLoopOptions } from './sync-loop.js';
export { offlineFirst, OfflineFirstStore, type OfflineFirstOptions, type OfflineFirstStatus } from './offline-first.js';
export { decide, pairRenames, type DecideContext } from './decide.js';
export { ConflictPolicies, parsePolicy, formatPolicy, POLICY_NAMES } from './conflict-policies.js';
export { SyncProfile, resolveProfile, PROFILE_PRESETS, PRESET_NAMES, type SyncProfileSpec, type PresetName } from './profiles.js';
export { SyncState, SYNC_STATE_VERSION, type QueuedChange, type VersionRecord, type ConflictRecord } from './sync-state.js';
export { VersionsArea, DEFAULT_RETENTION_MS, type KeptVersion } from './versions-area.js';
export { conflictCopyName, isConflictCopy } from './conflict-name.js';
export { VERSIONS_PREFIX, META_HLC, META_DEVICE } from './remote-scan.js';
export { STATE_DIR } from './local-tree.js';
export type { ActionOutcome, ActionResult } from './executor.js';
export { HybridClock, formatHlc, parseHlc, compareHlc, ClockDriftError, type HlcStamp } from './hlc.js';
export { getMerger, mergers, MergerRegistry, type Merger, type MergeInput, type MergeResult } from './merge/index.js';
export type { SyncClock } from './sync-clock.js';
export type * from './types.js';
