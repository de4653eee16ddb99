import { isCloudmuxError } from '../core/errors.js';
import { HybridClock, compareHlc, formatHlc, parseHlc, type HlcStamp } from './hlc.js';

/**
 * What the sync engine needs of the hybrid logical clock (src/sync/hlc.ts), over its string form
 * (`018c3f2a9b10-000003-laptop`), which is what the state and object metadata (`sync_hlc`) hold.
 * An empty stamp means "none" (an object no cloudmux device wrote).
 */
export interface SyncClock {
  /** A stamp greater than every stamp issued or observed before. */
  now(): string;
  /** Moves the clock past a stamp seen from another device. Stamps that are malformed or too far ahead are not adopted. */
  observe(stamp: string): void;
  /** Total order of stamps. */
  compare(a: string, b: string): number;
  /** True when `stamp` may win a last-writer-wins decision: well-formed and not too far ahead of this device's clock. */
  trusts(stamp: string): boolean;
  /** The last stamp, to persist for the next start. */
  last(): string;
}

function parse(stamp: string): HlcStamp | undefined {
  try {
    return parseHlc(stamp);
  } catch {
    return undefined;
  }
}

/** A clock for `device`, resuming after `last` (the stamp persisted by the previous run). */
export function createSyncClock(device: string, opts: { now?: () => number; last?: string; maxDriftMs?: number } = {}): SyncClock {
  const last = opts.last !== undefined ? parse(opts.last) : undefined;
  const clock = new HybridClock({ device, now: opts.now, maxDriftMs: opts.maxDriftMs, last });
  return {
    now: () => formatHlc(clock.now()),
    observe(stamp) {
      const s = parse(stamp);
      if (!s) return;
      try {
        clock.observe(s);
      } catch (e) {
        // A stamp from a clock far ahead is not adopted; it cannot win a decision either (trusts).
        if (!isCloudmuxError(e, 'InvalidArgument')) throw e;
      }
    },
    compare(a, b) {
      const x = parse(a);
      const y = parse(b);
      if (x && y) return compareHlc(x, y);
      return x ? 1 : y ? -1 : 0;
    },
    trusts(stamp) {
      const s = parse(stamp);
      return s !== undefined && clock.admits(s);
    },
    last: () => formatHlc(clock.last()),
  };
}
