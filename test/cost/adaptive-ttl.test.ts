import { describe, expect, it } from 'vitest';
import { AdaptiveTtl, PendingWindow, type TtlPricing } from '../../src/cost/adaptive-ttl.js';
import { SeededRandom } from '../../src/cost/random.js';
import { BYTES_PER_GB, SECONDS_PER_MONTH } from '../../src/router/cost-model.js';

const GRID = [0, 0.25, 0.5, 1, 2];

describe('adaptive TTL learner', () => {
  it('pending decisions: the storage not yet spent equals a pass over every decision (seeded)', () => {
    const seed = Number(process.env.COST_SEED ?? 2202);
    const rng = new SeededRandom(seed);
    const win = new PendingWindow(GRID);
    const live = new Map<number, { at: number; w: number }>();
    let now = 0;
    for (let step = 0; step < 20_000; step++) {
      now += rng.exponential(0.01);
      const r = rng.next();
      if (r < 0.6) {
        const w = rng.next() * 3;
        live.set(win.add(now, w), { at: now, w });
      } else if (r < 0.9 && live.size > 0) {
        const slots = [...live.keys()];
        const slot = slots[rng.int(slots.length)]!;
        win.remove(slot);
        live.delete(slot);
      } else {
        const got = new Float64Array(GRID.length);
        win.unspent(now, got);
        for (let k = 1; k < GRID.length; k++) {
          let want = 0;
          for (const d of live.values()) want += d.w * Math.max(0, GRID[k]! - (now - d.at));
          expect(got[k], `step ${step}, candidate ${k} (COST_SEED=${seed})`).toBeCloseTo(want, 6);
        }
      }
    }
  });

  it('learns to keep copies as long as the reads come back, and not to keep those never read again', () => {
    // Source 0 at one place, cache 1 at another; egress $0.1/GB, storage $0.02/GB-month: T_even = 5 months.
    const pricing: TtlPricing = {
      egressBetween: (s, c) => (s === c ? 0 : 0.1),
      storagePerByteSecond: [0.02 / BYTES_PER_GB / SECONDS_PER_MONTH, 0.02 / BYTES_PER_GB / SECONDS_PER_MONTH],
      readRequest: [0, 0],
      writeRequest: [0, 0.000_01],
      retrievalPerGb: [0, 0],
    };
    const tEven = 5 * SECONDS_PER_MONTH;
    const day = 86_400;
    // Every object is read twice at the cache, 20 days apart; one object starts every hour for 60 days.
    const twice = new AdaptiveTtl(pricing, { grid: GRID, minSamples: 50, recomputeEvery: 8 });
    expect(twice.tEven(0, 1)).toBeCloseTo(tEven, 3);
    const reads: [number, number][] = [];
    for (let i = 0; i < 60 * 24; i++) reads.push([i * 3600, i], [i * 3600 + 20 * day, i]);
    reads.sort((a, b) => a[0] - b[0]);
    for (const [t, obj] of reads) twice.observe(obj, 1, 0, 1, 2 ** 20, t);
    expect(twice.ttl(0, 1)).toBeGreaterThanOrEqual(20 * day);
    // Every object is read once: after a T_even of one-off reads, copying on a first read does not pay.
    const once = new AdaptiveTtl(pricing, { grid: GRID, minSamples: 50, recomputeEvery: 8 });
    for (let i = 0; i < 400 * 24; i++) once.observe(i, 1, 0, 1, 2 ** 20, i * 3600);
    expect(once.ttl(0, 1)).toBe(0);
  });
});
