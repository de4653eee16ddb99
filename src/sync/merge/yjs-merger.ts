import * as Y from 'yjs';
import { DEFAULT_MERGE_MAX_BYTES } from './limits.js';
import { trivialMerge } from './text-merger.js';
import type { MergeInput, MergeResult, Merger } from './types.js';

export interface YjsMergerOptions {
  /** Largest input merged, in bytes; default 16 MiB. */
  maxBytes?: number;
}

/**
 * Merges files whose content is a Yjs document saved as one update (`Y.encodeStateAsUpdate(doc)`,
 * format v1). Yjs is a CRDT: both sides' edits are kept whatever they touched, so concurrent
 * offline edits merge with no conflict, and the result does not depend on which side is local.
 *
 * - The base is not needed and not used: each side's update already holds everything it saw,
 *   deletions included (applying the base again could bring back what a side replaced).
 * - A side that is not a Yjs update, or an incremental update whose earlier changes are in
 *   neither file, is a conflict (nothing is guessed, nothing dropped).
 * - The result is the merged document's full state as one v1 update.
 */
export function createYjsMerger(opts: YjsMergerOptions = {}): Merger {
  const maxBytes = opts.maxBytes ?? DEFAULT_MERGE_MAX_BYTES;
  return {
    name: 'yjs',
    maxBytes,
    async merge(input: MergeInput): Promise<MergeResult> {
      const { local, remote } = input;
      const trivial = trivialMerge(input.base, local, remote);
      if (trivial) return trivial;
      if (Math.max(local.byteLength, remote.byteLength) > maxBytes) {
        return { kind: 'conflict', reason: `larger than the yjs merger's limit of ${maxBytes} bytes` };
      }
      const doc = new Y.Doc({ gc: true });
      try {
        for (const [side, update] of [['local', local], ['remote', remote]] as const) {
          try {
            Y.applyUpdate(doc, update);
          } catch (e) {
            return { kind: 'conflict', reason: `${side} is not a Yjs update (${(e as Error).message})` };
          }
        }
        if (doc.store.pendingStructs !== null || doc.store.pendingDs !== null) {
          return { kind: 'conflict', reason: 'a Yjs update depends on changes that are in neither version' };
        }
        return { kind: 'merged', bytes: Y.encodeStateAsUpdate(doc) };
      } finally {
        doc.destroy();
      }
    },
  };
}
