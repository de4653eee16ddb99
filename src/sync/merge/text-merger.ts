import { diff3Merge } from 'node-diff3';
import { TEXT_MERGE_MAX_BYTES } from './limits.js';
import type { MergeInput, MergeResult, Merger } from './types.js';

export interface TextMergerOptions {
  /** Largest input merged, in bytes; default TEXT_MERGE_MAX_BYTES (4 MiB). */
  maxBytes?: number;
}


/**
 * Line-based three-way merge (diff3, Khanna–Kunal–Pierce) of UTF-8 text against the base.
 *
 * - Edits to different regions of the file (separated by at least one unchanged line) merge;
 *   edits that overlap or touch, or insertions at the same place, are a conflict, as in git.
 *   The same edit made on both sides is not a conflict.
 * - Lines keep their own terminators: CRLF, LF and a missing final newline come through as each
 *   side wrote them (a side that converted every line ending changed every line).
 * - No base: a conflict unless both sides are identical. Identical sides, or one side equal to
 *   the base, merge trivially (whatever the content).
 * - Content that is not text (a NUL byte, or not valid UTF-8) is a conflict.
 */
export function createTextMerger(opts: TextMergerOptions = {}): Merger {
  const maxBytes = opts.maxBytes ?? TEXT_MERGE_MAX_BYTES;
  return {
    name: 'text',
    maxBytes,
    async merge(input: MergeInput): Promise<MergeResult> {
      const { base, local, remote } = input;
      const trivial = trivialMerge(base, local, remote);
      if (trivial) return trivial;
      if (!base) return { kind: 'conflict', reason: 'both sides changed and there is no base to merge against' };
      if (Math.max(base.byteLength, local.byteLength, remote.byteLength) > maxBytes) {
        return { kind: 'conflict', reason: `larger than the text merger's limit of ${maxBytes} bytes` };
      }
      const texts = [base, local, remote].map(decodeText);
      if (texts.some((t) => t === undefined)) return { kind: 'conflict', reason: 'not UTF-8 text' };
      const [o, a, b] = texts.map((t) => splitLines(t!)) as [string[], string[], string[]];
      const regions = diff3Merge(a, o, b, { excludeFalseConflicts: true });
      const out: string[] = [];
      for (const r of regions) {
        if (r.conflict) return { kind: 'conflict', reason: `overlapping edits near line ${r.conflict.oIndex + 1} of the base` };
        if (r.ok) out.push(...r.ok);
      }
      return { kind: 'merged', bytes: new TextEncoder().encode(out.join('')) };
    },
  };
}

/** Identical sides, or one side unchanged from the base: the answer needs no merging. */
export function trivialMerge(base: Uint8Array | undefined, local: Uint8Array, remote: Uint8Array): MergeResult | undefined {
  if (sameBytes(local, remote)) return { kind: 'merged', bytes: local };
  if (base && sameBytes(base, local)) return { kind: 'merged', bytes: remote };
  if (base && sameBytes(base, remote)) return { kind: 'merged', bytes: local };
  return undefined;
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** The text, or undefined for binary content (a NUL byte or invalid UTF-8). A BOM is kept. */
function decodeText(bytes: Uint8Array): string | undefined {
  if (bytes.includes(0)) return undefined;
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return undefined;
  }
}

/** Lines with their terminators (`\n`, so `\r\n` too); the last one may have none. */
export function splitLines(text: string): string[] {
  return text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
}
