import { describe, expect, it } from 'vitest';
import { optimalSchedule, type ScheduleInput } from '../../src/cost/optimum.js';
import { SeededRandom } from '../../src/cost/random.js';

const input = (times: number[], fetch: number, create: number, hit: number, s: number, d: number): ScheduleInput => ({
  times, fetch: times.map(() => fetch), create: times.map(() => create), hit: times.map(() => hit), storagePerSecond: s, minSeconds: d,
});

/** Every subset of runs, by recursion over the reads: the definition the DP must match. */
function bruteForce(x: ScheduleInput): number {
  const k = x.times.length;
  const go = (i: number): number => {
    if (i === k) return 0;
    let best = x.fetch[i]! + go(i + 1);
    let hits = 0;
    for (let j = i; j < k; j++) {
      if (j > i) hits += x.hit[j]!;
      const run = x.create[i]! + hits + x.storagePerSecond * Math.max(x.times[j]! - x.times[i]!, x.minSeconds);
      best = Math.min(best, run + go(j + 1));
    }
    return best;
  };
  return go(0);
}

describe('optimalSchedule (offline optimum per object and location)', () => {
  it('keeps a copy across a short gap and re-fetches after a long one', () => {
    // s = $1/s, no minimum. Reads at 0, 10, 100; fetch $20, fetch-and-keep $21, local hit $0.5.
    // best[1] = 20 (fetch; keeping alone costs 21).
    // best[2] = min(20 + 20 = 40, run 0..1: 21 + 0.5 + 10·1 = 31.5) = 31.5
    // best[3] = min(31.5 + 20 = 51.5, run 0..2: 21 + 0.5 + 0.5 + 100 = 122, run 1..2: 20 + 21 + 0.5 + 90 = 131.5,
    //               run 2..2: 31.5 + 21 = 52.5) = 51.5
    const s = optimalSchedule(input([0, 10, 100], 20, 21, 0.5, 1, 0));
    expect(s.cost).toBeCloseTo(51.5, 9);
    expect(s.runs).toEqual([[0, 1]]);
  });

  it('bills a minimum storage duration and still keeps when three reads share it', () => {
    // s = $1/s, minimum 50 s. Reads at 0, 10, 20; fetch $30, keep $31, hit $1.
    // best[1] = 30; best[2] = min(60, 31 + 1 + max(10, 50) = 82) = 60
    // best[3] = min(90, run 0..2: 31 + 1 + 1 + max(20, 50) = 83, run 1..2: 30 + 31 + 1 + 50 = 112, run 2..2: 60 + 31 + 50 = 141) = 83
    const s = optimalSchedule(input([0, 10, 20], 30, 31, 1, 1, 50));
    expect(s.cost).toBeCloseTo(83, 9);
    expect(s.runs).toEqual([[0, 2]]);
  });

  it('mixes runs inside and beyond the minimum duration', () => {
    // s = $1/s, minimum 15 s. Reads at 0, 10, 40, 45; fetch $20, keep $21, hit $0.
    // best[1] = 20; best[2] = min(40, run 0..1: 21 + max(10, 15) = 36) = 36
    // best[3] = min(56, run 0..2: 21 + 40 = 61, run 1..2: 20 + 21 + 30 = 71, run 2..2: 36 + 21 + 15 = 72) = 56
    // best[4] = min(76, run 0..3: 21 + 45 = 66, run 1..3: 20 + 21 + 35 = 76, run 2..3: 36 + 21 + 15 = 72, run 3..3: 56 + 36 = 92) = 66
    const s = optimalSchedule(input([0, 10, 40, 45], 20, 21, 0, 1, 15));
    expect(s.cost).toBeCloseTo(66, 9);
    expect(s.runs).toEqual([[0, 3]]);
  });

  it('fetches every read when storage is dear, and handles no reads', () => {
    const s = optimalSchedule(input([0, 1000, 2000], 5, 6, 0, 1, 0));
    expect(s.cost).toBeCloseTo(15, 9);
    expect(s.runs).toEqual([]);
    expect(optimalSchedule(input([], 5, 6, 0, 1, 0))).toEqual({ cost: 0, runs: [] });
  });

  it('equals the brute-force definition on seeded random instances', () => {
    const seed = Number(process.env.COST_SEED ?? 22);
    const rng = new SeededRandom(seed);
    for (let c = 0; c < 400; c++) {
      const k = 1 + rng.int(9);
      let t = 0;
      const times = Array.from({ length: k }, () => (t += rng.int(4) === 0 ? 0 : rng.exponential(50)));
      const fetch = times.map(() => 1 + rng.next() * 20);
      const x: ScheduleInput = {
        times, fetch, create: fetch.map((f) => f + rng.next() * 3), hit: times.map(() => rng.next()),
        storagePerSecond: rng.next() * 0.5, minSeconds: rng.int(3) === 0 ? 0 : rng.exponential(80),
      };
      const s = optimalSchedule(x);
      expect(s.cost, `case ${c} (COST_SEED=${seed})`).toBeCloseTo(bruteForce(x), 7);
      // The runs it reports cost what it says.
      let billed = 0;
      let next = 0;
      for (const [i, j] of s.runs) {
        for (; next < i; next++) billed += x.fetch[next]!;
        billed += x.create[i]! + x.storagePerSecond * Math.max(x.times[j]! - x.times[i]!, x.minSeconds);
        for (let m = i + 1; m <= j; m++) billed += x.hit[m]!;
        next = j + 1;
      }
      for (; next < k; next++) billed += x.fetch[next]!;
      expect(billed).toBeCloseTo(s.cost, 7);
    }
  });
});
