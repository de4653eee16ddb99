import { EventEmitter } from 'node:events';
import { TimerSet } from '../core/timer-set.js';
import type { BlobStore } from '../core/types.js';
import type { HealthTracker, ProbeOutcome } from './health-tracker.js';

export interface ProbeSchedulerOptions {
  /** A round every this many ms, counted from the end of the previous one; 0: no rounds. */
  intervalMs: number;
  /** Running-time deadline of each canary request (see {@link HealthTracker.probe}). */
  timeoutMs: number;
  /**
   * Delay before a probe that did not succeed is repeated to confirm it (default: a fifth of the
   * interval, between 50 ms and 5 s). The provider goes down only on the confirmed failure.
   */
  confirmAfterMs?: number;
}

/** One probe's outcome; `followUp` when it confirmed (or retried) an earlier one. */
export interface ProbeEvent extends ProbeOutcome {
  followUp: boolean;
}

/**
 * When canary probes run, for the router and the daemon alike: each provider is probed every
 * interval (counted from the end of its previous probe, so a hanging provider delays only its own
 * probes), and a failed or inconclusive probe is followed up promptly, so a provider that went
 * away is down within about one interval (two failures in a row), while a single lost probe, or
 * one our own stalled process could not judge, takes nothing down. Timers never keep the process
 * alive; `stop()` clears them.
 */
export class ProbeScheduler extends EventEmitter<{ probe: [ProbeEvent]; firstRound: [] }> {
  private readonly timers = new TimerSet();
  private readonly followUps = new Set<string>();
  private readonly inFlight = new Map<string, Promise<ProbeOutcome>>();
  private readonly unprobed: Set<string>;
  private readonly confirmAfterMs: number;
  private stopped = false;

  constructor(private readonly health: HealthTracker, private readonly stores: Record<string, BlobStore>, private readonly opts: ProbeSchedulerOptions) {
    super();
    this.confirmAfterMs = opts.confirmAfterMs ?? Math.min(5_000, Math.max(50, Math.round(opts.intervalMs / 5)));
    this.unprobed = new Set(Object.keys(stores));
  }

  /** Whether every provider has been probed at least once (emitted once as `firstRound`). */
  get firstRoundDone(): boolean {
    return this.unprobed.size === 0;
  }

  /** Starts each provider's probes: the first now (default) or one interval later. */
  start(opts: { firstRound?: 'now' | 'after-interval' } = {}): void {
    if (this.opts.intervalMs <= 0) return;
    for (const [name, store] of Object.entries(this.stores)) {
      const tick = (): void => {
        if (this.stopped) return;
        void this.probe(name, store, false).finally(() => this.timers.after(this.opts.intervalMs, tick));
      };
      if (opts.firstRound === 'after-interval') this.timers.after(this.opts.intervalMs, tick);
      else tick();
    }
  }

  /** Probes every store now, concurrently (follow-ups are scheduled as usual). */
  round(): Promise<ProbeOutcome[]> {
    return Promise.all(Object.entries(this.stores).map(([name, store]) => this.probe(name, store, false)));
  }

  stop(): void {
    this.stopped = true;
    this.timers.clear();
  }

  /** Probes `name` unless a probe of it is running already (then that one's outcome is shared, not reported twice). */
  private probe(name: string, store: BlobStore, followUp: boolean): Promise<ProbeOutcome> {
    let running = this.inFlight.get(name);
    if (!running) {
      running = this.probeNow(name, store, followUp).finally(() => this.inFlight.delete(name));
      this.inFlight.set(name, running);
    }
    return running;
  }

  private async probeNow(name: string, store: BlobStore, followUp: boolean): Promise<ProbeOutcome> {
    const outcome = await this.health.probe(name, store, { timeoutMs: this.opts.timeoutMs });
    if (this.stopped) return outcome;
    this.emit('probe', { ...outcome, followUp });
    if (this.unprobed.delete(name) && this.unprobed.size === 0) this.emit('firstRound');
    if (outcome.result !== 'ok' && !this.followUps.has(name) && this.health.state(name) !== 'down') {
      this.followUps.add(name);
      this.timers.after(this.confirmAfterMs, () => {
        this.followUps.delete(name);
        void this.probe(name, store, true);
      });
    }
    return outcome;
  }
}
