import { performance } from 'node:perf_hooks';

/** Wall time of a measured span, split into the time this process ran and the time it could not. */
export interface RunningSpan {
  wallMs: number;
  /** Time the event loop could not run timers: blocked by our own code or not scheduled by the OS. */
  stalledMs: number;
  /** `wallMs - stalledMs`: the time a remote party really had to answer us. */
  runningMs: number;
}

export interface RunningDeadline {
  /** Disarms the deadline (idempotent); the span so far. */
  cancel(): RunningSpan;
  elapsed(): RunningSpan;
}

export interface RunningDeadlineExpiry extends RunningSpan {
  /**
   * The deadline gave up at `maxWallMs` before `ms` of running time had passed: the process was
   * starved, so the silence says nothing about the other side.
   */
  starved: boolean;
}

/** Heartbeat period: the resolution of stall measurement. */
const TICK_MS = 20;

/**
 * Time as seen by a process that may not be running. A timer that fires late tells how long the
 * event loop was stalled (a synchronous block, GC, or the OS giving the CPU to others on a loaded
 * box); while anything measures, a heartbeat timer adds up that lateness. A request sent before a
 * stall may be answered during it, and Node runs expired timers before it reads sockets, so a
 * plain `setTimeout` deadline blames the other side for our own pause. Deadlines and stopwatches
 * from this clock count only running time.
 *
 * The heartbeat runs only while a deadline or stopwatch is live and never keeps the process alive.
 */
export class RunningClock {
  private users = 0;
  private stalled = 0;
  private lastTick = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Total stall measured so far, including the current overdue of the heartbeat. */
  stalledMs(): number {
    if (this.users === 0) return this.stalled;
    return this.stalled + Math.max(0, this.now() - (this.lastTick + TICK_MS));
  }

  /** Measures a span in running time; `stop()` ends it (and must be called once). */
  stopwatch(): { elapsed(): RunningSpan; stop(): RunningSpan } {
    const release = this.acquire();
    const start = this.now();
    const stall0 = this.stalledMs();
    let final: RunningSpan | undefined;
    const elapsed = (): RunningSpan => {
      if (final) return final;
      const wallMs = this.now() - start;
      const stalledMs = Math.min(wallMs, this.stalledMs() - stall0);
      return { wallMs, stalledMs, runningMs: wallMs - stalledMs };
    };
    return {
      elapsed,
      stop: () => {
        if (!final) {
          final = elapsed();
          release();
        }
        return final;
      },
    };
  }

  /**
   * Calls `onExpire` once `ms` of running time has passed, or once `maxWallMs` (default 10 × ms) of
   * wall time has, whichever comes first. Expiry runs in the check phase (setImmediate), after the
   * event loop has read the sockets once more: an answer that arrived during a stall wins.
   */
  deadline(ms: number, onExpire: (e: RunningDeadlineExpiry) => void, opts: { maxWallMs?: number } = {}): RunningDeadline {
    const maxWallMs = opts.maxWallMs ?? ms * 10;
    const watch = this.stopwatch();
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    const check = (): void => {
      timer = undefined;
      if (done) return;
      const span = watch.elapsed();
      if (span.runningMs < ms && span.wallMs < maxWallMs) {
        timer = setTimeout(check, Math.max(1, Math.min(ms - span.runningMs, maxWallMs - span.wallMs)));
        return;
      }
      setImmediate(() => {
        if (done) return;
        done = true;
        const end = watch.stop();
        onExpire({ ...end, starved: end.runningMs < ms });
      });
    };
    timer = setTimeout(check, ms);
    return {
      elapsed: () => watch.elapsed(),
      cancel: () => {
        if (timer) clearTimeout(timer);
        timer = undefined;
        done = true;
        return watch.stop();
      },
    };
  }

  private acquire(): () => void {
    if (this.users++ === 0) {
      this.lastTick = this.now();
      this.tick();
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (this.users === 1) {
        this.stalled = this.stalledMs();
        if (this.timer) clearTimeout(this.timer);
        this.timer = undefined;
      }
      this.users--;
    };
  }

  private tick(): void {
    this.timer = setTimeout(() => {
      const t = this.now();
      this.stalled += Math.max(0, t - (this.lastTick + TICK_MS));
      this.lastTick = t;
      this.tick();
    }, TICK_MS);
    this.timer.unref();
  }
}

/** The process's clock (one heartbeat for every deadline). */
export const runningClock = new RunningClock();
