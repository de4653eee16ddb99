/** What a merger is given: one path's three versions, as bytes. */
export interface MergeInput {
  /** The path being merged (for messages and for mergers that care about the file type). */
  path: string;
  /** The content both sides last agreed on (the sync base), when known. */
  base?: Uint8Array;
  local: Uint8Array;
  remote: Uint8Array;
}

/** Merged bytes to write to both sides, or a conflict the policy resolves another way (keep-both). */
export type MergeResult = { kind: 'merged'; bytes: Uint8Array } | { kind: 'conflict'; reason: string };

/**
 * Combines concurrent edits of one file.
 *
 * # Contract
 * - Deterministic: the same input gives the same result on every device (both devices of a
 *   conflict may merge it, and must agree).
 * - Content it cannot merge (not its format, overlapping edits, too large) is a `conflict` with a
 *   reason, never a thrown error and never a guess: the caller then keeps both versions.
 * - Inputs larger than `maxBytes` (each) are a conflict; a caller should not even read files
 *   larger than that into memory.
 * - Never modifies its input arrays.
 */
export interface Merger {
  /** The name policies use (`merge:<name>`), e.g. `yjs`, `text`. */
  readonly name: string;
  /** Largest input (each of base, local, remote) it merges, in bytes. */
  readonly maxBytes: number;
  merge(input: MergeInput): Promise<MergeResult>;
}
