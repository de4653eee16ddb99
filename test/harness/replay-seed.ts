import { createHash, randomInt } from 'node:crypto';

/**
 * A case's seed: from `env` (default FEED_SEED) when set (a replay), else random; printed with the
 * command that replays it. The case name is mixed in, so cases sharing a run seed differ.
 */
export function feedSeed(caseName: string, file: string, env = 'FEED_SEED'): number {
  const given = process.env[env];
  const run = given ? Number(given) : randomInt(1, 2 ** 31 - 1);
  if (!Number.isSafeInteger(run)) throw new Error(`${env} must be an integer, got ${given}`);
  console.log(`seed ${run} for "${caseName}"; replay: ${env}=${run} npx vitest run ${file} -t "${caseName}"`);
  return createHash('sha256').update(`${run}:${caseName}`).digest().readUInt32LE(0);
}

/** A small seeded PRNG (mulberry32): the same seed gives the same workload. */
export function prng(seed: number): { next(): number; int(n: number): number; chance(p: number): boolean; pick<T>(xs: readonly T[]): T; shuffle<T>(xs: T[]): T[] } {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return {
    next,
    int,
    chance: (p) => next() < p,
    pick: (xs) => xs[int(xs.length)]!,
    shuffle: (xs) => {
      for (let i = xs.length - 1; i > 0; i--) {
        const j = int(i + 1);
        [xs[i], xs[j]] = [xs[j]!, xs[i]!];
      }
      return xs;
    },
  };
}
