// The built-in mergers load yjs and node-diff3 on first use; import text-merger.js or
// yjs-merger.js directly for a merger with other options.
export type { MergeInput, MergeResult, Merger } from './types.js';
export { MergerRegistry, getMerger, mergers } from './registry.js';
export { DEFAULT_MERGE_MAX_BYTES, TEXT_MERGE_MAX_BYTES } from './limits.js';
