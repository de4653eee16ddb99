import { EventEmitter } from 'node:events';
import { collectGarbage, type CollectableStore, type GcReport } from '../layers/chunked/gc.js';

/** One store whose unreferenced chunks the daemon collects (config `daemon.chunkGc[]`). */
export interface ChunkGcJob {
  /** The provider's configured name (labels, /status). */
  name: string;
  store: CollectableStore;
  /** One collection every this many ms (after the previous one ended). */
  intervalMs: number;
}

/** The last collection of one store, for /status. */
export interface ChunkGcStatus {
  name: string;
  intervalMs: number;
  graceMs: number;
  running: boolean;
  last: { at: Date; report: Omit<GcReport, 'missing'> & { missing: number; firstMissing?: string } } | { at: Date; error: string } | null;
}

export interface ChunkGcScheduleEvents {
  /** A collection finished (deleted may be 0). */
  collected: [name: string, report: GcReport];
  /** A collection failed; nothing after the failure was deleted. */
  failed: [name: string, error: unknown];
}

/**
 * Garbage collection of chunked stores (src/layers/chunked/gc.ts) as a singleton job of the
 * daemons sharing a state: each store is collected every `intervalMs`, by the leader only
 * (`isLeader` is asked at each due time, so a follower that becomes leader takes over at its next
 * tick, and a leader that loses the lease starts no new collection). Collection itself is safe
 * against concurrent writers (grace period, second mark, head re-check before each delete); the
 * leader rule only keeps N daemons from listing the same store N times.
 *
 * Events: `collected` (name, report), `failed` (name, error). `stop()` aborts a running collection
 * (a partial sweep deletes nothing it has not re-checked) and waits for it.
 */
export class ChunkGcSchedule extends EventEmitter<ChunkGcScheduleEvents> {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** The collection in progress per store (settled promises are removed when they end). */
  private readonly running = new Map<string, Promise<GcReport>>();
  private readonly last = new Map<string, ChunkGcStatus['last']>();
  private abort = new AbortController();
  private stopped = true;

  constructor(private readonly jobs: readonly ChunkGcJob[], private readonly isLeader: () => boolean) {
    super();
  }

  get size(): number {
    return this.jobs.length;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.abort = new AbortController();
    for (const job of this.jobs) this.schedule(job);
  }

  /** Collects `name` now if this daemon leads (joining a collection already running); resolves with the report (undefined when it does not lead). */
  async runNow(name: string): Promise<GcReport | undefined> {
    const job = this.jobs.find((j) => j.name === name);
    if (!job) throw new Error(`no chunk GC job for ${JSON.stringify(name)}`);
    if (!this.isLeader()) return undefined;
    return this.running.get(name) ?? this.collect(job);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.abort.abort();
    await Promise.allSettled([...this.running.values()]);
  }

  status(): ChunkGcStatus[] {
    return this.jobs.map((j) => ({
      name: j.name, intervalMs: j.intervalMs, graceMs: j.store.graceMs, running: this.running.has(j.name), last: this.last.get(j.name) ?? null,
    }));
  }

  private schedule(job: ChunkGcJob): void {
    const tick = (): void => {
      if (this.stopped) return;
      const due = this.isLeader() && !this.running.has(job.name) ? this.collect(job).catch(() => undefined) : Promise.resolve();
      void due.finally(() => {
        if (!this.stopped) this.timers.set(job.name, setTimeout(tick, job.intervalMs).unref());
      });
    };
    this.timers.set(job.name, setTimeout(tick, job.intervalMs).unref());
  }

  private collect(job: ChunkGcJob): Promise<GcReport> {
    const run = this.collectOnce(job).finally(() => this.running.delete(job.name));
    this.running.set(job.name, run);
    return run;
  }

  private async collectOnce(job: ChunkGcJob): Promise<GcReport> {
    try {
      const report = await collectGarbage(job.store, { signal: this.abort.signal });
      const { missing, ...rest } = report;
      this.last.set(job.name, { at: new Date(), report: { ...rest, missing: missing.length, ...(missing[0] ? { firstMissing: missing[0] } : {}) } });
      this.emit('collected', job.name, report);
      return report;
    } catch (e) {
      if (!this.abort.signal.aborted) {
        this.last.set(job.name, { at: new Date(), error: e instanceof Error ? e.message.split('\n')[0]!.slice(0, 300) : String(e) });
        this.emit('failed', job.name, e);
      }
      throw e;
    }
  }
}
