import { InvalidArgumentError } from '../core/errors.js';

/**
 * A hybrid logical clock stamp (Kulkarni et al., "Logical Physical Clocks", 2014): physical time
 * in ms, a counter for events within one ms (or while physical time lags the clock), and the
 * device that made it. Stamps are totally ordered by (wall, counter, device).
 */
export interface HlcStamp {
  /** Milliseconds since the epoch (the clock's l). */
  wall: number;
  /** Events at this `wall` (the clock's c). */
  counter: number;
  /** The device that issued the stamp: 1–64 of `[A-Za-z0-9._-]`. */
  device: string;
}

export interface HybridClockOptions {
  /** This device's id (see {@link HlcStamp.device}). */
  device: string;
  /** Physical clock in ms; default Date.now. */
  now?: () => number;
  /**
   * How far (ms) a stamp may be ahead of this device's physical clock and still be trusted;
   * default 5 minutes. {@link HybridClock.observe} refuses stamps further ahead (ClockDrift), so
   * a device with a wrong clock cannot pull every other device's clock into the future, and a
   * `newest` conflict policy treats such a stamp as untrusted (see {@link HybridClock.admits}).
   */
  maxDriftMs?: number;
  /**
   * The last stamp this device issued before (persisted by the caller, e.g. the sync state):
   * stamps stay monotonic across restarts even if the physical clock went back meanwhile.
   */
  last?: HlcStamp | string;
}

export const DEFAULT_MAX_DRIFT_MS = 5 * 60_000;
/** Largest counter the string form holds; the clock moves `wall` on by 1 ms rather than overflow. */
export const MAX_COUNTER = 0xffffff;
const MAX_WALL = 0xffffffffffff;
const DEVICE = /^[A-Za-z0-9._-]{1,64}$/;
const FORM = /^([0-9a-f]{12})-([0-9a-f]{6})-([A-Za-z0-9._-]{1,64})$/;

/**
 * A stamp further ahead of this device's physical clock than `maxDriftMs`. Its code is
 * InvalidArgument: the stamp, not the call, is at fault; `stamp` and `aheadMs` say by how much.
 */
export class ClockDriftError extends InvalidArgumentError {
  constructor(readonly stamp: HlcStamp, readonly aheadMs: number, maxDriftMs: number) {
    super(`clock stamp of device ${stamp.device} is ${aheadMs} ms ahead of this device's clock (more than the ${maxDriftMs} ms allowed)`);
  }
}

/**
 * The clock of one device. `now()` stamps a local event (a write); `observe(remote)` merges a
 * stamp read from another device (an object's metadata) before acting on it, so that a write
 * made after seeing another is stamped after it, whatever the two physical clocks say.
 *
 * # Contract
 * - Every stamp `now()` or `observe()` returns is greater than every stamp this clock returned or
 *   observed before (monotonic, also across restarts given `last`), and greater than the remote
 *   stamp just observed (causality).
 * - `wall` never runs more than `maxDriftMs` ahead of the highest physical time the clock has
 *   read: it adopts a remote stamp only within that bound (else ClockDrift, and the clock is
 *   unchanged), and its own stamps are physical time or a trusted stamp plus counters. (A
 *   physical clock set back cannot pull `wall` back: monotonicity wins.)
 * - The drift rule for deciding conflicts: a remote stamp is trusted when {@link admits} says so,
 *   i.e. it is at most `maxDriftMs` ahead of this device's physical clock at decision time. An
 *   untrusted stamp must not win a last-writer-wins decision (keep both instead), so a device
 *   whose clock runs ahead cannot win forever; once real time reaches its stamps they are
 *   ordinary stamps again.
 */
export class HybridClock {
  readonly device: string;
  readonly maxDriftMs: number;
  private readonly physical: () => number;
  private wall = 0;
  private counter = 0;

  constructor(opts: HybridClockOptions) {
    if (!DEVICE.test(opts.device)) throw new InvalidArgumentError(`device id must be 1-64 of [A-Za-z0-9._-], got ${JSON.stringify(opts.device)}`);
    const drift = opts.maxDriftMs ?? DEFAULT_MAX_DRIFT_MS;
    if (!Number.isInteger(drift) || drift < 0) throw new InvalidArgumentError(`maxDriftMs must be a non-negative integer, got ${String(opts.maxDriftMs)}`);
    this.device = opts.device;
    this.maxDriftMs = drift;
    this.physical = opts.now ?? Date.now;
    if (opts.last !== undefined) {
      const last = typeof opts.last === 'string' ? parseHlc(opts.last) : checkStamp(opts.last);
      this.wall = last.wall;
      this.counter = last.counter;
    }
  }

  /** The last stamp issued or adopted, to persist for the next start. */
  last(): HlcStamp {
    return { wall: this.wall, counter: this.counter, device: this.device };
  }

  /** A stamp for a local event (send): later than everything this clock has seen. */
  now(): HlcStamp {
    return this.advance(this.physicalMs(), -1, 0);
  }

  /**
   * Merges a remote stamp (receive) and returns a stamp for the local event that follows it.
   * Errors: ClockDrift (InvalidArgument) when `remote` is more than `maxDriftMs` ahead of the
   * physical clock; the clock is then unchanged.
   */
  observe(remote: HlcStamp | string): HlcStamp {
    const r = typeof remote === 'string' ? parseHlc(remote) : checkStamp(remote);
    const pt = this.physicalMs();
    if (r.wall - pt > this.maxDriftMs) throw new ClockDriftError(r, r.wall - pt, this.maxDriftMs);
    return this.advance(pt, r.wall, r.counter);
  }

  /** True when `stamp` is trusted: at most `maxDriftMs` ahead of this device's physical clock now. */
  admits(stamp: HlcStamp | string): boolean {
    const s = typeof stamp === 'string' ? parseHlc(stamp) : checkStamp(stamp);
    return s.wall - this.physicalMs() <= this.maxDriftMs;
  }

  private physicalMs(): number {
    const pt = Math.floor(this.physical());
    if (!Number.isSafeInteger(pt) || pt < 0 || pt > MAX_WALL) throw new InvalidArgumentError(`physical clock gave ${pt}, not a time in ms`);
    return pt;
  }

  /** The HLC update rule: l' = max(l, l_m, pt); c' counts events at l'. */
  private advance(pt: number, remoteWall: number, remoteCounter: number): HlcStamp {
    const wall = Math.max(this.wall, remoteWall, pt);
    let counter: number;
    if (wall === this.wall && wall === remoteWall) counter = Math.max(this.counter, remoteCounter) + 1;
    else if (wall === this.wall) counter = this.counter + 1;
    else if (wall === remoteWall) counter = remoteCounter + 1;
    else counter = 0;
    if (counter > MAX_COUNTER) {
      // A million events in one ms, or a clock stuck far behind: move logical time on instead.
      this.wall = wall + 1;
      this.counter = 0;
    } else {
      this.wall = wall;
      this.counter = counter;
    }
    return this.last();
  }
}

/**
 * The string form for object metadata: `<wall: 12 hex>-<counter: 6 hex>-<device>`, e.g.
 * `018c3f2a9b10-000000-laptop`. Plain string order (also byte order: it is ASCII) is
 * {@link compareHlc}'s order.
 */
export function formatHlc(s: HlcStamp): string {
  const c = checkStamp(s);
  return `${c.wall.toString(16).padStart(12, '0')}-${c.counter.toString(16).padStart(6, '0')}-${c.device}`;
}

/** Parses {@link formatHlc}'s form; InvalidArgument for anything else. */
export function parseHlc(text: string): HlcStamp {
  const m = typeof text === 'string' ? FORM.exec(text) : null;
  if (!m) throw new InvalidArgumentError(`not a clock stamp: ${JSON.stringify(String(text).slice(0, 100))}`);
  return { wall: parseInt(m[1]!, 16), counter: parseInt(m[2]!, 16), device: m[3]! };
}

/** Total order: wall, then counter, then device id (byte order). -1, 0 or 1. */
export function compareHlc(a: HlcStamp, b: HlcStamp): -1 | 0 | 1 {
  if (a.wall !== b.wall) return a.wall < b.wall ? -1 : 1;
  if (a.counter !== b.counter) return a.counter < b.counter ? -1 : 1;
  if (a.device === b.device) return 0;
  return a.device < b.device ? -1 : 1;
}

function checkStamp(s: HlcStamp): HlcStamp {
  const ok = s !== null && typeof s === 'object' && Number.isSafeInteger(s.wall) && s.wall >= 0 && s.wall <= MAX_WALL
    && Number.isSafeInteger(s.counter) && s.counter >= 0 && s.counter <= MAX_COUNTER && typeof s.device === 'string' && DEVICE.test(s.device);
  if (!ok) throw new InvalidArgumentError(`not a clock stamp: ${JSON.stringify(s)}`);
  return s;
}
