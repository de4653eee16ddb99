import type { Logger } from 'pino';
import { TimerSet } from '../core/timer-set.js';
import type { BlobStore } from '../core/types.js';
import type { CloudmuxConfig } from '../config/schema.js';
import type { Router } from '../router/router.js';
import { ProbeScheduler } from '../router/probe-scheduler.js';
import { openProviderStacks, openRouter, type ProviderStack } from '../router/open-router.js';
import { ReplicationWorker } from '../replication/worker.js';
import { AntiEntropyScanner, type ScanReport } from '../replication/anti-entropy.js';
import { DaemonCoordination } from '../jobs/daemon-coordination.js';
import { DEFAULT_CHUNK_PREFIX } from '../layers/chunked/manifest.js';
import type { StateStore } from '../state/types.js';
import { describeError } from './logger.js';

/**
 * Everything the daemon runs for one config: providers, router, canary probes, replication worker
 * and anti-entropy scan. A reload builds a new runtime beside the old one and swaps it in.
 */
export class DaemonRuntime {
  /** Undone by {@link stop}: listeners added by whoever observes this runtime. */
  readonly cleanup: (() => void)[] = [];
  /** Set once a probe round (or the pre-probe of a reload) has finished, or when probes are off. */
  firstProbeDone: boolean;
  private readonly timers = new TimerSet();
  private readonly scanAbort = new AbortController();
  private scanning: Promise<unknown> | undefined;
  private stopped = false;

  private constructor(
    readonly config: CloudmuxConfig,
    readonly stacks: ProviderStack[],
    readonly router: Router,
    readonly worker: ReplicationWorker,
    readonly scanner: AntiEntropyScanner,
    readonly probes: ProbeScheduler,
    /** The scan divided with the other daemons on the state, and the leader's singleton jobs. */
    readonly coordination: DaemonCoordination,
  ) {
    this.firstProbeDone = config.health.probeIntervalMs <= 0;
    probes.on('firstRound', () => (this.firstProbeDone = true));
  }

  /** Opens the config's providers and a router on `state` (the daemon's, not closed by the runtime). */
  static async build(config: CloudmuxConfig, state: StateStore): Promise<DaemonRuntime> {
    const stacks = await openProviderStacks(config);
    let router: Router;
    try {
      router = await openRouter(config, { state, stacks, closeResources: false });
    } catch (e) {
      await Promise.allSettled(stacks.map((s) => s.store.close()));
      throw e;
    }
    const worker = ReplicationWorker.forRouter(router, {
      ...config.replication, metered: config.transfers?.metered ?? false, priorityWeights: config.transfers?.priority?.weights, bwlimit: config.transfers?.bwlimit,
    });
    const scanner = new AntiEntropyScanner({ router, ...config.daemon.scan });
    // Probes go below the retry layer (a probe must fail fast, not be retried into looking
    // healthy) and through the breaker (a probe is the half-open trial that closes it again).
    const probeStores: Record<string, BlobStore> = {};
    for (const s of stacks) probeStores[s.name] = s.breaker ?? s.rateLimit ?? s.instrumented ?? s.driver;
    const probes = new ProbeScheduler(router.health, probeStores, { intervalMs: config.health.probeIntervalMs, timeoutMs: config.daemon.probeTimeoutMs });
    const chunkGc = config.daemon.chunkGc.map((g) => ({
      name: g.provider,
      store: { inner: stacks.find((s) => s.name === g.provider)!.store, chunkPrefix: g.chunkPrefix ?? DEFAULT_CHUNK_PREFIX, graceMs: g.graceMs },
      intervalMs: g.intervalMs,
    }));
    const coordination = new DaemonCoordination({ state, scanner, scan: config.daemon.scan, tombstones: config.daemon.tombstones, chunkGc });
    return new DaemonRuntime(config, stacks, router, worker, scanner, probes, coordination);
  }

  /**
   * One probe round before this runtime takes over (a reload), so readiness does not start from
   * "no data"; waits at most about the probe deadline.
   */
  async probeFirst(): Promise<void> {
    const bound = new Promise((resolve) => setTimeout(resolve, this.config.daemon.probeTimeoutMs).unref());
    await Promise.race([this.probes.round(), bound]);
    this.firstProbeDone = true;
  }

  /** Starts probes, the worker and the scan schedule. */
  start(log: Logger): void {
    if (this.stopped) return;
    this.probes.start({ firstRound: this.firstProbeDone ? 'after-interval' : 'now' });
    this.worker.start();
    this.scheduleScan(log);
    this.coordination.start();
  }

  /** Runs the next anti-entropy slice now (also what the schedule calls). */
  scanNow(): Promise<ScanReport> {
    const p = this.scanner.scanSlice(this.scanAbort.signal);
    this.scanning = p.catch(() => undefined);
    return p;
  }

  private scheduledScan(): Promise<ScanReport | undefined> {
    const p = this.coordination.scanTick(this.scanAbort.signal);
    this.scanning = p.catch(() => undefined);
    return p;
  }

  /** Stops taking work: probes, scan, then the worker (in-flight copies get `graceMs`). */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    this.probes.stop();
    this.timers.clear();
    this.scanAbort.abort();
    await this.coordination.stop();
    // A copy that ignores its abort must not hold the stop forever; its entry stays leased and is retried after the lease.
    const bound = new Promise<void>((resolve) => setTimeout(resolve, graceMs + 5_000).unref());
    await Promise.race([this.worker.stop(graceMs), bound]);
    await Promise.race([this.scanning ?? Promise.resolve(), bound]);
    for (const c of this.cleanup.splice(0)) c();
  }

  /** Closes the router and providers (not the shared state store). */
  async dispose(): Promise<void> {
    this.stopped = true;
    this.probes.stop();
    await this.router.close();
    await Promise.allSettled(this.stacks.map((s) => s.store.close()));
  }

  private scheduleScan(log: Logger): void {
    const interval = this.config.daemon.scan.intervalMs;
    if (interval <= 0) return;
    const tick = (): void => {
      if (this.stopped) return;
      // One step of the scan shared with the daemons on the same state (or of this daemon's own pass).
      const p = this.scheduledScan().catch((e: unknown) => {
        if (!this.scanAbort.signal.aborted) log.error({ event: 'scan.failed', err: e }, `anti-entropy slice failed: ${describeError(e)}`);
      });
      void p.finally(() => this.timers.after(interval, tick));
    };
    this.timers.after(interval, tick);
  }
}
