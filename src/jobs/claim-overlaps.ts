import type { ClaimInterval } from './job-report.js';

/** Two claims of one key by different workers whose intervals intersect. */
export interface ClaimOverlap {
  key: string;
  first: ClaimInterval;
  second: ClaimInterval;
}

/**
 * The invariant of leased work: no object is held by two workers at once. Reads a job's claim
 * history (each claim's interval: from the claim to its release, or to the end of its last lease
 * when the holder died) and returns every pair of claims of one key that overlap.
 */
export function claimOverlaps(claims: readonly ClaimInterval[]): ClaimOverlap[] {
  const byKey = new Map<string, ClaimInterval[]>();
  for (const c of claims) {
    const list = byKey.get(c.key);
    if (list) list.push(c);
    else byKey.set(c.key, [c]);
  }
  const out: ClaimOverlap[] = [];
  for (const [key, list] of byKey) {
    list.sort((a, b) => a.from - b.from);
    // Compare each claim with the one reaching furthest so far: catches overlaps with any earlier claim.
    let reach = list[0]!;
    for (let i = 1; i < list.length; i++) {
      const c = list[i]!;
      if (c.from < reach.to) out.push({ key, first: reach, second: c });
      if (c.to > reach.to) reach = c;
    }
  }
  return out;
}
