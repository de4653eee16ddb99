import { compareKeys, throwIfAborted } from '../core/index.js';
import type { BlobStore } from '../core/index.js';
import { sampledMidpoint } from './key-ranges.js';

export interface RangeProbeOptions {
  /** Both halves of a split must hold at least this many keys (else no split). Default 1000 (one S3 listing page). */
  minKeys?: number;
  /** Rounds of bisection after the prefix search (each: up to 7 listing requests at once). Default 2. */
  bisections?: number;
  signal?: AbortSignal;
}

export interface RangeProbe {
  /** Where to split: `(from, at]` stays with the lister, `(at, end]` becomes a new range. Undefined: not worth splitting. */
  at: string | undefined;
  /** Listing requests spent. */
  requests: number;
  /** Rounds of requests (those of one round run at once): the probe's latency in listing round trips. */
  rounds: number;
}

/** Prefix lengths probed at once, at most (evenly spread over a longer key). */
const MAX_PREFIXES = 24;

/**
 * Finds where to split the unlisted rest `(from, end]` of a key range from what the store really
 * holds there, with small listing requests sent a round at a time (a worker with nothing to list
 * spends them, not the lister):
 *
 * 1. one page of `minKeys` keys after `from`: fewer, and the rest is too small to split; else its
 *    last key `near` bounds the lister's next page;
 * 2. the last key of the range, bracketed: for each prefix of `near`, whether keys lie after the
 *    prefix's successor (prefix + next code point), all at once, one 1-key listing each; then
 *    rounds of bisection between the largest key seen and the nearest bound with nothing after it;
 * 3. the split point about halfway between `near` and the largest key seen, kept only when a page
 *    after it holds `minKeys` keys of the range.
 *
 * So on dense keys (`k000000`…`k099999`) the split lands inside them, never in the empty key space
 * above them, and a range too small to be worth a second lister is left alone. The probe takes
 * about 3 + `bisections` listing round trips, while the lister moves on a page per round trip: its
 * split is refused when the lister passed it meanwhile, so ranges shorter than about twice that many
 * pages are not split. The listing must honour `startAfter` cheaply (S3, GCS, memory, fs; Azure
 * emulates it by paging from the prefix).
 */
export async function probeSplit(store: BlobStore, from: string | undefined, end: string | undefined, opts: RangeProbeOptions = {}): Promise<RangeProbe> {
  const minKeys = Math.max(1, opts.minKeys ?? 1000);
  let requests = 0;
  let rounds = 0;
  const keysAfter = async (after: string | undefined, n: number): Promise<string[]> => {
    throwIfAborted(opts.signal);
    requests++;
    const out: string[] = [];
    for await (const item of store.list({ startAfter: after, pageSize: n, signal: opts.signal })) {
      if (item.type !== 'object') continue;
      if (end !== undefined && compareKeys(item.key, end) > 0) break;
      out.push(item.key);
      if (out.length >= n) break;
    }
    return out;
  };
  const firstAfter = async (after: string): Promise<string | undefined> => {
    if (end !== undefined && compareKeys(after, end) >= 0) return undefined;
    return (await keysAfter(after, 1))[0];
  };

  rounds++;
  const head = await keysAfter(from, minKeys);
  if (head.length < minKeys) return { at: undefined, requests, rounds };
  const near = head.at(-1)!;

  // The range's keys after `near` lie in (lo, hi]: lo is a key seen, nothing lies after hi.
  let lo = near;
  let hi = end;
  /** Probes the first key after each candidate at once and narrows (lo, hi] with the answers. */
  const probe = async (candidates: string[]): Promise<void> => {
    if (candidates.length === 0) return;
    rounds++;
    const found = await Promise.all(candidates.map((c) => firstAfter(c)));
    candidates.forEach((c, i) => {
      const k = found[i];
      if (k !== undefined) {
        if (compareKeys(k, lo) > 0) lo = k;
      } else if (hi === undefined || compareKeys(c, hi) < 0) {
        hi = c;
      }
    });
  };
  // Successors of `near`'s prefixes: keys after the successor of a length-L prefix exist for
  // every L from some L* on; the first hit is a key far along, the last miss a close bound.
  const cps = [...near].map((c) => c.codePointAt(0)!);
  const lengths = cps.length <= MAX_PREFIXES ? cps.map((_, i) => i) : Array.from({ length: MAX_PREFIXES }, (_, i) => Math.floor((i * cps.length) / MAX_PREFIXES));
  await probe(lengths.map((n) => successor(cps, n)).filter((c): c is string => c !== undefined));
  // Bisect between the largest key seen and the bound until they share a longer prefix than
  // `near` and that key do: the split point halfway to either would then be about the same.
  for (let b = opts.bisections ?? 2; b > 0 && (hi === undefined || commonPrefix(lo, hi) <= commonPrefix(near, lo)); b--) {
    await probe(bisect(lo, hi, 3, head));
  }
  const at = sampledMidpoint(near, lo, head);
  if (at === undefined) return { at: undefined, requests, rounds };
  rounds++;
  const tail = await keysAfter(at, minKeys);
  return { at: tail.length >= minKeys ? at : undefined, requests, rounds };
}

/** Up to 2^depth - 1 keys strictly between `lo` and `hi` (undefined: the end), in order, by repeated bisection. */
function bisect(lo: string, hi: string | undefined, depth: number, sample: readonly string[]): string[] {
  if (depth === 0) return [];
  const m = sampledMidpoint(lo, hi, sample);
  if (m === undefined) return [];
  return [...bisect(lo, m, depth - 1, sample), m, ...bisect(m, hi, depth - 1, sample)];
}

/** The length-`n` prefix of a key (code points) followed by the code point after its n-th; undefined past the key or the last code point. */
function successor(cps: number[], n: number): string | undefined {
  if (n >= cps.length) return undefined;
  let c = cps[n]! + 1;
  if (c === 0xd800) c = 0xe000;
  if (c > 0x10ffff) return undefined;
  return String.fromCodePoint(...cps.slice(0, n), c);
}

/** How many leading code points two keys share. */
function commonPrefix(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  let i = 0;
  while (i < x.length && i < y.length && x[i] === y[i]) i++;
  return i;
}
