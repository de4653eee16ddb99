import { EventEmitter, setMaxListeners } from 'node:events';
import { randomBytes } from 'node:crypto';
import { Backoff, IntegrityError, TransientError, describeError, isCloudmuxError } from '../core/index.js';
import { carriedMetadata } from '../core/system-metadata.js';
import type { BlobStore } from '../core/index.js';
import type { ReplicationConfig } from '../config/schema.js';
import type { CostModel } from '../router/cost-model.js';
import type { HealthTracker } from '../router/health-tracker.js';
import { KeyLocks } from '../router/key-locks.js';
import { reconcileHolder } from '../router/reconcile.js';
import type { Router } from '../router/router.js';
import { WriteLeases, isLeaseBusy, type HeldLease } from '../router/write-leases.js';
import type { BacklogStats, OutboxEntry, StateStore } from '../state/types.js';
import { copyObject, type ChecksumMode } from './copier.js';
import { AdaptiveConcurrency, type AdaptiveConcurrencyOptions, type AdaptiveStatus } from '../layers/adaptive-concurrency.js';
import { DEFAULT_PRIORITY_WEIGHTS, PRIORITY_CLASSES, WeightedClassPicker, type PriorityClass } from '../core/priority.js';
import { BandwidthTimetable, ScheduledTokenBucket } from '../layers/bandwidth-timetable.js';
import { RateLimitStore } from '../layers/rate-limit.js';

export interface ReplicationWorkerOptions extends Partial<Omit<ReplicationConfig, 'verify' | 'adaptive'>> {
  /**
   * Adaptive concurrency (AIMD) per destination provider, within `concurrency` in all: a provider
   * that throttles gets fewer copies in flight, without slowing the others. Default: off (a fixed
   * `concurrency` shared by all).
   */
  adaptive?: AdaptiveConcurrencyOptions | false;
  /** Claim shares of the priority classes (default critical 16, normal 4, bulk 1: bulk is never starved). */
  priorityWeights?: Partial<Record<PriorityClass, number>>;
  /** A metered link: only critical entries are claimed; the rest wait (nothing is dropped). */
  metered?: boolean;
  /**
   * Bandwidth of this worker (`transfers.bwlimit`): a rate (`10M`), `UP:DOWN`, `off`, or a
   * timetable (`"08:00,1M 19:00,off"`, local time; see BandwidthTimetable). Down paces what copies
   * read from sources, up what they write to destinations, all copies together; the limit switches
   * at each window boundary while copies run. A string that does not parse throws InvalidArgument.
   */
  bwlimit?: BandwidthTimetable | string;
  /** The clock the timetable reads (tests). Default: the system clock. */
  now?: () => Date;
  state: StateStore;
  /** Provider stores by the names the catalog uses. */
  providers: Record<string, BlobStore>;
  /** Health to consult: down destinations are deferred (not counted as attempts), down sources skipped. */
  health?: HealthTracker;
  /** Picks the cheapest source for each copy. */
  cost?: CostModel;
  /** Share the router's locks when both run in one process (see KeyLocks). */
  locks?: KeyLocks;
  /** Share the router's write leases when both run in one process (default: the worker's own, over `locks`). */
  leases?: WriteLeases;
  /** Write lease duration for the worker's own leases (ms, default 30 000). */
  writeLeaseMs?: number;
  /** How copies are verified (default `sha256`: the destination's digest must equal the catalog's). */
  verify?: ChecksumMode;
  /** Lease owner name (default: random per worker). */
  owner?: string;
  /** Delay before retrying an entry whose destination is down (default pollIntervalMs × 2). */
  deferMs?: number;
  /** Copies left by reads to evict when they expire (the router's {@link Router.copyOnRead}). */
  evictor?: { evictExpired(): Promise<number> };
  /** How often the worker looks for expired copies (ms, default 10 000). */
  evictIntervalMs?: number;
}

export type EntryOutcome = 'copied' | 'deleted' | 'obsolete' | 'already-done';

export interface WorkerEvents {
  done: [{ entry: OutboxEntry; outcome: EntryOutcome; source?: string; bytes?: number; verifiedBy?: string }];
  retry: [{ entry: OutboxEntry; error: string; at: Date; counted: boolean }];
  dead: [{ entry: OutboxEntry; reason: string }];
  error: [unknown];
}

export interface WorkerCounters {
  copied: number;
  bytesCopied: number;
  deleted: number;
  obsolete: number;
  retries: number;
  deferred: number;
  dead: number;
}

/**
 * Drains the outbox: copies each owed replica from a healthy holder (verified against the
 * catalog's SHA-256) and performs each owed delete, with bounded concurrency, exponential backoff
 * per entry and a dead-letter state after `maxAttempts`.
 *
 * # Contract
 * - Idempotent: an entry replayed after a crash (its lease expired) re-checks the catalog first;
 *   a replica already in place or a version since replaced is discarded, a copy is simply redone.
 * - A replicate entry only ever writes the catalog's current version, proven by its digest; a
 *   source whose bytes differ is reported for repair and the next holder is tried.
 * - A delete entry never removes the current version from a provider that holds or is owed it.
 * - A destination that is down is deferred without spending an attempt.
 */
export class ReplicationWorker extends EventEmitter<WorkerEvents> {
  readonly owner: string;
  readonly counters: WorkerCounters = { copied: 0, bytesCopied: 0, deleted: 0, obsolete: 0, retries: 0, deferred: 0, dead: 0 };
  private readonly state: StateStore;
  private readonly providers: Map<string, BlobStore>;
  private readonly health: HealthTracker | undefined;
  private readonly cost: CostModel | undefined;
  private readonly leases: WriteLeases;
  private readonly concurrency: number;
  private readonly maxAttempts: number;
  private readonly backoff: Backoff;
  private readonly leaseMs: number;
  private readonly pollIntervalMs: number;
  private readonly deferMs: number;
  private readonly verify: ChecksumMode;
  private readonly picker: WeightedClassPicker;
  private readonly classes: readonly PriorityClass[] | undefined;
  /** Per destination provider, with `adaptive`. */
  readonly limiters = new Map<string, AdaptiveConcurrency>();
  private readonly inflightBy = new Map<string, number>();
  private running = false;
  private loopDone: Promise<void> | undefined;
  private readonly inflight = new Set<Promise<void>>();
  private wake: (() => void) | undefined;
  private readonly evictor: { evictExpired(): Promise<number> } | undefined;
  private readonly evictIntervalMs: number;
  private lastEviction = -Infinity;
  private readonly bandwidth: { up: ScheduledTokenBucket; down: ScheduledTokenBucket } | undefined;
  /** Shared by every copy in flight, each of which listens to it: no listener limit applies. */
  private readonly abort = ((c: AbortController) => (setMaxListeners(0, c.signal), c))(new AbortController());

  constructor(opts: ReplicationWorkerOptions) {
    super();
    this.state = opts.state;
    const table = typeof opts.bwlimit === 'string' ? BandwidthTimetable.parse(opts.bwlimit) : opts.bwlimit;
    if (table && !table.unlimited) {
      this.bandwidth = { up: new ScheduledTokenBucket(table, 'up', { now: opts.now }), down: new ScheduledTokenBucket(table, 'down', { now: opts.now }) };
    }
    // Every provider is a source for some copies and a destination for others: reads take from the
    // one down bucket, writes from the one up bucket (the worker's link, whichever cloud is at the other end).
    const bw = this.bandwidth;
    this.providers = new Map(Object.entries(opts.providers).map(([name, store]) => [name, bw ? new RateLimitStore(store, { readBytesPerSec: bw.down, writeBytesPerSec: bw.up }) : store]));
    this.health = opts.health;
    this.cost = opts.cost;
    this.concurrency = opts.concurrency ?? 4;
    this.maxAttempts = opts.maxAttempts ?? 8;
    this.backoff = new Backoff({ baseMs: opts.backoffBaseMs ?? 1_000, capMs: opts.backoffMaxMs ?? 5 * 60_000, attempts: this.maxAttempts });
    this.leaseMs = opts.leaseMs ?? 5 * 60_000;
    this.pollIntervalMs = opts.pollIntervalMs ?? 1_000;
    this.deferMs = opts.deferMs ?? this.pollIntervalMs * 2;
    this.verify = opts.verify ?? 'sha256';
    this.evictor = opts.evictor;
    this.evictIntervalMs = opts.evictIntervalMs ?? 10_000;
    this.owner = opts.owner ?? `worker-${process.pid}-${randomBytes(4).toString('hex')}`;
    this.classes = opts.metered ? ['critical'] : undefined;
    this.picker = new WeightedClassPicker({ ...DEFAULT_PRIORITY_WEIGHTS, ...opts.priorityWeights }, this.classes ?? PRIORITY_CLASSES);
    if (opts.adaptive) {
      for (const name of this.providers.keys()) {
        this.limiters.set(name, new AdaptiveConcurrency({ max: this.concurrency, ...opts.adaptive, name }));
      }
    }
    this.leases = opts.leases ?? new WriteLeases(this.state, this.owner, { locks: opts.locks ?? new KeyLocks(), leaseMs: opts.writeLeaseMs });
  }

  /** A worker over a router's state, providers, health, costs and locks, woken by its `owed` events. */
  static forRouter(router: Router, opts: Omit<ReplicationWorkerOptions, 'state' | 'providers' | 'health' | 'cost' | 'locks' | 'leases'> = {}): ReplicationWorker {
    const worker = new ReplicationWorker({
      ...opts, state: router.state, providers: router.providerStores(), health: router.health, cost: router.cost, leases: router.leases,
      ...(router.copyOnRead ? { evictor: router.copyOnRead } : {}),
    });
    router.events.on('owed', () => worker.notify());
    return worker;
  }

  /** Runs in the background until {@link stop}. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.loopDone = this.loop();
  }

  /** Stops claiming work and waits for what is in flight (aborting copies after `graceMs`). */
  async stop(graceMs = 10_000): Promise<void> {
    this.running = false;
    this.notify();
    await this.loopDone;
    const timer = setTimeout(() => this.abort.abort(new TransientError('replication worker stopping')), graceMs);
    timer.unref();
    await Promise.allSettled([...this.inflight]);
    clearTimeout(timer);
  }

  /** Wakes an idle loop (new work was owed). */
  notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  backlog(): Promise<BacklogStats> {
    return this.state.backlog();
  }

  /** The bandwidth limit in force now (bytes/s each way; absent: none that way), or undefined without `bwlimit`. */
  bandwidthStatus(): { bwlimit: string; up?: number; down?: number } | undefined {
    if (!this.bandwidth) return undefined;
    const up = this.bandwidth.up.rateNow();
    const down = this.bandwidth.down.rateNow();
    return { bwlimit: String(this.bandwidth.up.timetable), ...(up !== undefined ? { up } : {}), ...(down !== undefined ? { down } : {}) };
  }

  /** The adaptive limiters' snapshots (empty without `adaptive`). */
  adaptiveStatus(): AdaptiveStatus[] {
    return [...this.limiters.values()].map((l) => l.status());
  }

  /** A claim of `n` slots: weighted quotas per class (bulk keeps its share), only critical on a metered link. */
  private claimSlots(n: number, providers?: string[]): Promise<OutboxEntry[]> {
    return this.state.claim(this.owner, n, this.leaseMs, { quota: this.picker.quota(n), classes: this.classes, providers });
  }

  /** Claims up to `concurrency` due entries and processes them. Returns how many it processed. */
  async runOnce(): Promise<number> {
    await this.evict(true);
    const batch = await this.claimSlots(this.concurrency);
    await Promise.all(batch.map((e) => this.processInSlot(e)));
    return batch.length;
  }

  /**
   * Processes entries until the backlog is empty (dead letters excepted), waiting out backoffs and
   * outages, or fails with Transient after `timeoutMs` saying what is left.
   */
  async drain(opts: { timeoutMs?: number } = {}): Promise<BacklogStats> {
    const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
    for (;;) {
      const processed = await this.runOnce();
      const stats = await this.state.backlog();
      if (stats.count === 0) return stats;
      if (Date.now() > deadline) {
        throw new TransientError(`outbox not drained: ${stats.count} entries (${stats.bytes} bytes) left, oldest ${Math.round(stats.oldestAgeMs / 1000)} s; by provider ${JSON.stringify(stats.byProvider)}`);
      }
      if (processed === 0) await new Promise((r) => setTimeout(r, Math.min(this.pollIntervalMs, 100)));
    }
  }

  /** Evicts expired copies left by reads (at most every evictIntervalMs unless `now`); never throws. */
  private async evict(now = false): Promise<number> {
    if (!this.evictor || (!now && Date.now() - this.lastEviction < this.evictIntervalMs)) return 0;
    this.lastEviction = Date.now();
    try {
      return await this.evictor.evictExpired();
    } catch (e) {
      this.emit('error', e);
      return 0;
    }
  }

  private async loop(): Promise<void> {
    while (this.running) {
      await this.evict();
      const free = this.concurrency - this.inflight.size;
      if (free > 0) {
        let batch: OutboxEntry[] = [];
        try {
          batch = await this.claimFree(free);
        } catch (e) {
          this.emit('error', e);
        }
        for (const entry of batch) {
          const p = this.processInSlot(entry).finally(() => {
            this.inflight.delete(p);
            this.notify();
          });
          this.inflight.add(p);
        }
        if (batch.length > 0) continue;
      }
      if (!this.running) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.pollIntervalMs);
        timer.unref();
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Without `adaptive`: one claim of `free`. With it: per destination, no more than its limiter has room for. */
  private async claimFree(free: number): Promise<OutboxEntry[]> {
    if (this.limiters.size === 0) return this.claimSlots(free);
    const out: OutboxEntry[] = [];
    for (const [name, limiter] of this.limiters) {
      const room = Math.min(free - out.length, limiter.limit - (this.inflightBy.get(name) ?? 0));
      if (room > 0) out.push(...await this.claimSlots(room, [name]));
    }
    return out;
  }

  /** Processes an entry in its destination's adaptive slot (when there is one), reporting how it went. */
  private async processInSlot(entry: OutboxEntry): Promise<void> {
    const limiter = this.limiters.get(entry.provider);
    if (!limiter) {
      await this.process(entry);
      return;
    }
    this.inflightBy.set(entry.provider, (this.inflightBy.get(entry.provider) ?? 0) + 1);
    const permit = limiter.tryAcquire() ?? await limiter.acquire(this.abort.signal).catch(() => undefined);
    try {
      const outcome = await this.process(entry);
      permit?.release(outcome, entry.size);
    } finally {
      this.inflightBy.set(entry.provider, (this.inflightBy.get(entry.provider) ?? 1) - 1);
    }
  }

  /**
   * Handles one claimed entry; never throws (failures are recorded on the entry). Says how it went
   * for the adaptive limiter: `throttled` when the destination answered Throttled.
   */
  private async process(entry: OutboxEntry): Promise<'ok' | 'throttled' | 'error'> {
    try {
      const store = this.providers.get(entry.provider);
      if (!store) {
        await this.giveUp(entry, `provider ${entry.provider} is not configured`);
        return 'error';
      }
      if (this.health?.state(entry.provider) === 'down') {
        await this.defer(entry, `${entry.provider} is down`);
        return 'error';
      }
      // Under the key's write lease: a copy or delete never lands on top of a put of the key made by
      // any router or worker sharing the state, and a put never lands on top of a copy in flight.
      await this.leases.with(entry.key, this.abort.signal, (held) => (entry.kind === 'replicate' ? this.replicate(entry, store, held) : this.remove(entry, store, held)));
      return 'ok';
    } catch (e) {
      if (isLeaseBusy(e)) {
        await this.defer(entry, (e as Error).message).catch((err: unknown) => this.emit('error', err));
        return 'error';
      }
      await this.failed(entry, e).catch((err: unknown) => this.emit('error', err));
      return isCloudmuxError(e, 'Throttled') && (e.provider === undefined || e.provider === this.providers.get(entry.provider)?.provider) ? 'throttled' : 'error';
    }
  }

  private async replicate(entry: OutboxEntry, dst: BlobStore, held: HeldLease): Promise<void> {
    const found = await this.state.lookup(entry.key);
    if (found.state !== 'live' || found.object.version !== entry.version) {
      await this.state.discard(entry.id);
      // An earlier attempt (one that failed: attempts, or a last error, kept when a dead letter is
      // requeued) may have landed with its answer lost. A commit that superseded the entry while it
      // was pending owed that copy a delete; one that found it dead-lettered did not.
      if ((entry.attempts > 0 || entry.lastError !== undefined) && !(found.state === 'live' && found.holders.some((h) => h.provider === entry.provider))) {
        const owed = await this.state.repairReplica(entry.key, entry.provider);
        if (owed) this.notify();
      }
      this.counters.obsolete++;
      this.emit('done', { entry, outcome: 'obsolete' });
      return;
    }
    if (found.holders.some((h) => h.provider === entry.provider)) {
      await this.state.discard(entry.id);
      this.emit('done', { entry, outcome: 'already-done' });
      return;
    }
    const { object } = found;
    const sources = found.holders
      .filter((h) => this.providers.has(h.provider))
      .sort((a, b) => this.sourceRank(a.provider, entry.provider, object.size) - this.sourceRank(b.provider, entry.provider, object.size));
    if (sources.length === 0) {
      await this.giveUp(entry, `no provider holds version ${entry.version} of ${entry.key} any more`);
      return;
    }
    const live = sources.filter((s) => this.health?.state(s.provider) !== 'down');
    if (live.length === 0) {
      await this.defer(entry, `every holder (${sources.map((s) => s.provider).join(', ')}) is down`);
      return;
    }
    let failure: unknown;
    for (const src of live) {
      try {
        const res = await copyObject(this.providers.get(src.provider)!, entry.key, dst, entry.key, {
          signal: held.signal,
          sourceEtag: src.etag,
          verify: this.verify,
          metadata: carriedMetadata(object.metadata),
          contentType: object.contentType,
        });
        const sha = res.sha256 ?? res.meta.checksums.sha256;
        if (object.sha256 && sha !== undefined && sha !== object.sha256) {
          throw new IntegrityError(`${src.provider} served bytes whose sha256 is not version ${entry.version}'s`, { provider: src.provider, key: entry.key });
        }
        if (res.bytes !== object.size) throw new IntegrityError(`copied ${res.bytes} bytes, version ${entry.version} has ${object.size}`, { provider: src.provider, key: entry.key });
        const current = await this.state.completeReplicate(entry, res.meta.etag);
        if (current) {
          this.counters.copied++;
          this.counters.bytesCopied += res.bytes;
        } else this.counters.obsolete++;
        this.emit('done', { entry, outcome: current ? 'copied' : 'obsolete', source: src.provider, bytes: res.bytes, verifiedBy: res.verifiedBy });
        return;
      } catch (e) {
        failure = e;
        // The source no longer has what the catalog says it has: have it repaired, try the next holder.
        if (isCloudmuxError(e) && (e.code === 'NotFound' || e.code === 'PreconditionFailed' || (e.code === 'IntegrityError' && e.provider === src.provider))) {
          const res = await reconcileHolder(this.state, this.providers.get(src.provider), entry.key, src.provider, held);
          if (res.outcome === 'adopted') {
            // The source's bytes became a new version: this entry is obsolete, the adoption owes its own.
            await this.state.discard(entry.id);
            this.counters.obsolete++;
            this.emit('done', { entry, outcome: 'obsolete' });
            return;
          }
        }
        if (isCloudmuxError(e, 'Aborted')) break;
      }
    }
    throw failure;
  }

  private async remove(entry: OutboxEntry, store: BlobStore, held: HeldLease): Promise<void> {
    const found = await this.state.lookup(entry.key);
    if (found.state === 'live') {
      const holds = found.holders.some((h) => h.provider === entry.provider);
      const owed = !holds && (await this.state.entries({ key: entry.key, state: 'pending' })).some((e) => e.kind === 'replicate' && e.provider === entry.provider);
      if (holds || owed) {
        await this.state.discard(entry.id);
        this.counters.obsolete++;
        this.emit('done', { entry, outcome: 'obsolete' });
        return;
      }
    }
    await store.delete(entry.key, { signal: held.signal });
    await this.state.completeDelete(entry);
    this.counters.deleted++;
    this.emit('done', { entry, outcome: 'deleted' });
  }

  private sourceRank(src: string, dst: string, size: number): number {
    const health = this.health ? this.health.rank(src) * 1e6 : 0;
    return health + (this.cost?.transferCost(src, dst, size) ?? 0);
  }

  private async failed(entry: OutboxEntry, e: unknown): Promise<void> {
    const reason = describeError(e);
    if (entry.attempts + 1 >= this.maxAttempts) {
      await this.giveUp(entry, `after ${entry.attempts + 1} attempts: ${reason}`);
      return;
    }
    const at = new Date(Date.now() + this.backoff.delay(entry.attempts + 1, e));
    await this.state.retryLater(entry.id, reason, at, true);
    this.counters.retries++;
    this.emit('retry', { entry, error: reason, at, counted: true });
  }

  private async defer(entry: OutboxEntry, reason: string): Promise<void> {
    const at = new Date(Date.now() + this.deferMs);
    await this.state.retryLater(entry.id, reason, at, false);
    this.counters.deferred++;
    this.emit('retry', { entry, error: reason, at, counted: false });
  }

  private async giveUp(entry: OutboxEntry, reason: string): Promise<void> {
    await this.state.deadLetter(entry.id, reason);
    this.counters.dead++;
    this.emit('dead', { entry, reason });
  }
}
