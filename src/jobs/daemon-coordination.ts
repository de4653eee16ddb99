import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { AntiEntropyScanner, ScanReport } from '../replication/anti-entropy.js';
import type { StateStore } from '../state/types.js';
import type { PostgresStateStore } from '../state/postgres.js';
import { ChunkGcSchedule, type ChunkGcJob, type ChunkGcStatus } from './chunk-gc-schedule.js';
import { LeaderElection, type LeaderStatus } from './leader-election.js';
import { SharedScan, type ScanRangeStatus } from './shared-scan.js';

/** One name per daemon process, kept across config reloads (a reloaded runtime keeps its leases). */
const PROCESS_OWNER = `${hostname()}-${process.pid}-${randomBytes(2).toString('hex')}`;

export interface DaemonCoordinationOptions {
  state: StateStore;
  scanner: AntiEntropyScanner;
  /** This daemon's name (default host-pid-random). */
  owner?: string;
  scan: { ranges: number; leaseMs: number };
  tombstones: { pruneIntervalMs: number; retainMs: number; leaderCheckMs: number };
  /** Chunked stores whose unreferenced chunks the leader collects (config `daemon.chunkGc`). */
  chunkGc?: readonly ChunkGcJob[];
  /** Told about each prune (count) and each failure. */
  onPrune?(removed: number): void;
  onError?(what: string, e: unknown): void;
}

/**
 * What a daemon does in concert with the others sharing its state. With PostgreSQL: the
 * anti-entropy scan is divided (SharedScan), and singleton jobs (tombstone pruning, chunk garbage
 * collection) run on the leader only (LeaderElection). With SQLite there is one process: it scans alone and is its own leader.
 */
export class DaemonCoordination {
  readonly owner: string;
  private readonly shared: SharedScan | undefined;
  private readonly leader: LeaderElection | undefined;
  /** Chunk garbage collection of the configured chunked stores, on the leader. */
  readonly chunkGc: ChunkGcSchedule;
  private pruneTimer: NodeJS.Timeout | undefined;
  private pruning: Promise<void> | undefined;
  private stopped = false;
  lastPrune: { at: Date; removed: number } | undefined;

  constructor(private readonly opts: DaemonCoordinationOptions) {
    this.owner = opts.owner ?? PROCESS_OWNER;
    if (opts.state.kind === 'postgres') {
      const state = opts.state as PostgresStateStore;
      this.shared = new SharedScan({ state, scanner: opts.scanner, owner: this.owner, ranges: opts.scan.ranges, leaseMs: opts.scan.leaseMs });
      this.leader = new LeaderElection({ state, role: 'tombstone-pruner', owner: this.owner, checkMs: opts.tombstones.leaderCheckMs });
    }
    this.chunkGc = new ChunkGcSchedule(opts.chunkGc ?? [], () => this.isLeader);
  }

  /** True when this daemon runs the singleton jobs now. */
  get isLeader(): boolean {
    return this.leader ? this.leader.isLeader : true;
  }

  /** One scheduled scan step: a slice of a shared range (undefined: nothing due for this daemon), or of this daemon's own pass. */
  scanTick(signal?: AbortSignal): Promise<ScanReport | undefined> {
    return this.shared ? this.shared.tick(signal) : this.opts.scanner.scanSlice(signal);
  }

  /** Starts the leader election and the pruning schedule. */
  start(): void {
    this.stopped = false;
    this.leader?.start();
    this.chunkGc.start();
    const every = this.opts.tombstones.pruneIntervalMs;
    if (every <= 0) return;
    const tick = (): void => {
      if (this.stopped) return;
      this.pruning = this.pruneNow().then(() => {}, (e: unknown) => this.opts.onError?.('tombstone prune', e)).finally(() => {
        this.pruning = undefined;
        if (!this.stopped) this.pruneTimer = setTimeout(tick, every).unref();
      });
    };
    this.pruneTimer = setTimeout(tick, every).unref();
  }

  /** Prunes tombstones now if this daemon leads (returns how many, or undefined when it does not lead). */
  async pruneNow(): Promise<number | undefined> {
    if (!this.isLeader) return undefined;
    const removed = await this.opts.state.pruneTombstones(this.opts.tombstones.retainMs);
    this.lastPrune = { at: new Date(), removed };
    this.opts.onPrune?.(removed);
    return removed;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.pruneTimer) clearTimeout(this.pruneTimer);
    await this.pruning;
    await this.chunkGc.stop();
    await this.leader?.stop();
  }

  /** For /status: who this daemon is, who leads, and who holds which scan range. */
  async status(): Promise<{ daemon: string; leader: LeaderStatus | { owner: string } | null; isLeader: boolean; lastPrune: { at: Date; removed: number } | null; chunkGc: ChunkGcStatus[]; scanRanges: ScanRangeStatus[] | null }> {
    return {
      daemon: this.owner,
      isLeader: this.isLeader,
      leader: this.leader ? (await this.leader.current()) ?? null : { owner: this.owner },
      lastPrune: this.lastPrune ?? null,
      chunkGc: this.chunkGc.status(),
      scanRanges: this.shared ? await this.shared.ranges() : null,
    };
  }
}
