/** The reads of one object version at one location, and what each way of serving them costs. */
export interface ScheduleInput {
  /** Read times in seconds, ascending. */
  times: ArrayLike<number>;
  /** $ to serve read j from a remote copy, leaving nothing behind. */
  fetch: ArrayLike<number>;
  /** $ to serve read j from a remote copy and write a local copy (a run of kept reads starts here). */
  create: ArrayLike<number>;
  /** $ to serve read j from the local copy. */
  hit: ArrayLike<number>;
  /** $ per second of keeping the local copy. */
  storagePerSecond: number;
  /** A copy is billed at least this many seconds (the provider's minimum storage duration). */
  minSeconds: number;
}

/** The cheapest way to serve the reads: `runs` are [i, j] (0-based, inclusive): a copy written at read i, kept through read j, deleted right after it. Reads outside runs are fetched. */
export interface Schedule {
  cost: number;
  runs: [number, number][];
}

/**
 * The offline optimum for one object version at one location, by dynamic programming over its
 * reads. Knowing every future read, each read is served either by a fetch, or as part of a run:
 * a copy created at read i (cost `create[i]`), every later read up to j served from it (`hit`),
 * storage for max(t_j − t_i, minSeconds), deleted right after read j (keeping it longer only adds
 * storage; a copy across a write is void, so callers split reads at writes).
 *
 *   best[j] = min( best[j−1] + fetch[j],
 *                  min over i ≤ j of best[i−1] + create[i] + hit[i+1..j] + s·max(t_j − t_i, D) )
 *
 * The inner minimum splits on whether t_j − t_i ≥ D: for those i the term is linear in t_j
 * (a running minimum as i leaves the window), for the rest it is constant (a sliding-window
 * minimum with a monotone deque). So the whole programme is O(k) for k reads, not O(k²).
 */
export function optimalSchedule(input: ScheduleInput): Schedule {
  const { times: t, fetch, create, hit, storagePerSecond: s, minSeconds: d } = input;
  const k = t.length;
  const best = new Float64Array(k + 1);
  const choice = new Int32Array(k + 1); // -1: fetched; else the run's first read (0-based)
  const prefixHit = new Float64Array(k + 1); // P[j] = hit[0..j-1]
  const keyA = new Float64Array(k); // best[i] + create[i] − P[i+1]
  const deque = new Int32Array(k);
  let head = 0;
  let tail = 0;
  let far = 0; // reads [0, far) have t_j − t_i ≥ d
  let farMin = Infinity;
  let farArg = -1;
  for (let j = 0; j < k; j++) {
    prefixHit[j + 1] = prefixHit[j]! + hit[j]!;
    keyA[j] = best[j]! + create[j]! - prefixHit[j + 1]!;
    while (tail > head && keyA[deque[tail - 1]!]! >= keyA[j]!) tail--;
    deque[tail++] = j;
    while (far <= j && t[j]! - t[far]! >= d) {
      const keyB = keyA[far]! - s * t[far]!;
      if (keyB < farMin) {
        farMin = keyB;
        farArg = far;
      }
      far++;
    }
    while (tail > head && deque[head]! < far) head++;
    let value = best[j]! + fetch[j]!;
    let from = -1;
    if (farArg >= 0) {
      const v = farMin + s * t[j]! + prefixHit[j + 1]!;
      if (v < value) {
        value = v;
        from = farArg;
      }
    }
    if (tail > head) {
      const i = deque[head]!;
      const v = keyA[i]! + s * d + prefixHit[j + 1]!;
      if (v < value) {
        value = v;
        from = i;
      }
    }
    best[j + 1] = value;
    choice[j + 1] = from;
  }
  const runs: [number, number][] = [];
  for (let j = k; j > 0;) {
    const from = choice[j]!;
    if (from < 0) j--;
    else {
      runs.push([from, j - 1]);
      j = from;
    }
  }
  return { cost: best[k]!, runs: runs.reverse() };
}
