import { createHash, randomInt } from 'node:crypto';

/**
 * The run's seed: `HISTORY_SEED` when set (a replay), else a random one, printed once per process
 * so that any failure can be replayed (`HISTORY_SEED=<seed> npx vitest run test/history/<file>`).
 */
export const RUN_SEED: number = process.env.HISTORY_SEED ? Number(process.env.HISTORY_SEED) : randomInt(1, 2 ** 31 - 1);
if (!Number.isSafeInteger(RUN_SEED)) throw new Error(`HISTORY_SEED must be an integer, got ${process.env.HISTORY_SEED}`);

let printed = false;

/**
 * A case's own seed (an int32), derived from the run's seed and the case's name so that cases do
 * not share random streams and each replays alone. Prints the run seed the first time.
 */
export function historySeed(caseName: string): number {
  if (!printed) {
    printed = true;
    console.log(`history seed ${RUN_SEED}${process.env.HISTORY_SEED ? ' (from HISTORY_SEED)' : ''}; replay: HISTORY_SEED=${RUN_SEED} npx vitest run test/history`);
  }
  return createHash('sha256').update(`${RUN_SEED}:${caseName}`).digest().readInt32LE(0);
}

/** Text for failure messages: how to replay this run. */
export function replayHint(caseName: string): string {
  return `[history seed ${RUN_SEED}, case "${caseName}"; replay: HISTORY_SEED=${RUN_SEED} npx vitest run test/history -t "${caseName}"]`;
}
