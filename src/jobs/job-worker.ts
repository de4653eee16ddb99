import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Backoff, abortedError, compareKeys, isRetryable, sleep } from '../core/index.js';
import type { BlobStore } from '../core/index.js';
import type { ChecksumMode } from '../replication/copier.js';
import { dispatchSlots, preflight, proofMode, rateLimited } from '../replication/migrate.js';
import type { AdaptiveConcurrency, AdaptiveConcurrencyOptions } from '../layers/adaptive-concurrency.js';
import type { BandwidthTimetable } from '../layers/bandwidth-timetable.js';
import { PRIORITY_RANK, PriorityClassifier, type PriorityOptions } from '../core/priority.js';
import { copyStage, type CopyStageContext } from '../replication/stages/copy.js';
import { planMigration } from '../replication/stages/plan.js';
import type { MigrationFact, ObjectRecorder } from '../replication/stages/record.js';
import { emptySummary, tally, type MigrationEvent, type MigrationSummary } from '../replication/stages/summary.js';
import type { PostgresStateStore } from '../state/postgres.js';
import { readJobStatus } from './job-report.js';
import { probeSplit } from './range-probe.js';
import { SharedTokenBucket } from './shared-token-bucket.js';
import { RateLimitStore } from '../layers/rate-limit.js';
import { JobStore, type ListedObject, type ObjectClaim, type RangeLease } from './job-store.js';

export interface JobWorkerOptions {
  state: PostgresStateStore;
  job: string;
  /** This worker's name in the job (default: host-pid-random). */
  worker?: string;
  names: { src: string; dst: string };
  include?: string[];
  exclude?: string[];
  checksum?: ChecksumMode;
  deleteSource?: boolean;
  /**
   * Objects this worker copies at once. Default 16. `auto`: adaptive (AIMD) per side, this
   * worker's own limiters (each process adapts to what it sees), between `adaptive.min` and `.max`.
   */
  concurrency?: number | 'auto';
  adaptive?: AdaptiveConcurrencyOptions;
  /** Called with each adaptive limiter created (`concurrency: 'auto'`). */
  onLimiter?(limiter: AdaptiveConcurrency): void;
  retries?: number;
  bytesPerSecond?: number;
  /** This worker's `--bwlimit` timetable (down paces source reads, up destination writes); see rateLimited. */
  bwlimit?: BandwidthTimetable;
  /** Clock of the timetable (tests). */
  now?: () => Date;
  /**
   * The job's priority rules, recorded with it when this worker creates it (a joiner must give the
   * same or none). Listers class each object; workers claim critical first, small before large.
   */
  priority?: Pick<PriorityOptions, 'rules' | 'default'>;
  /**
   * A metered link: this worker copies only critical objects and returns, the job incomplete
   * (`metered: N non-critical objects deferred`), once no critical object is left; the others
   * wait for a worker without it. Other workers of the job are not affected.
   */
  metered?: boolean;
  /** Requests per second of this worker to both stores together. */
  opsPerSecond?: number;
  /**
   * Requests per second to each store, for all the processes using that store through this
   * database together (a token bucket per provider kept in PostgreSQL, named `ops:<store URL>`,
   * see SharedTokenBucket). Combines with `opsPerSecond`.
   */
  sharedOpsPerSecond?: number;
  /** How long a claim (object or range) lasts without renewal; a killed worker's work is taken over after it. Default 30 000 ms. */
  leaseMs?: number;
  /** How often an idle worker looks for work. Default min(1000, leaseMs / 4). */
  pollMs?: number;
  /** Listed objects recorded per transaction by a lister. Default 500. */
  listBatch?: number;
  /**
   * A range is split only when both halves hold at least this many keys (an idle worker checks
   * with small listing requests, see range-probe.ts). Default 1000 (one S3 listing page).
   */
  splitMinKeys?: number;
  /** One range is probed for a split at most once per this long. Default 5 × pollMs. */
  splitCooldownMs?: number;
  preflight?: boolean;
  preflightTimeoutMs?: number;
  resumableThreshold?: number | false;
  partConcurrency?: number;
  signal?: AbortSignal;
  onEvent?(e: MigrationEvent): void;
  /** false: only list (take key ranges, record what they hold), copy nothing; returns once no range is left to list. Default true. */
  copy?: boolean;
}

export interface JobWorkerResult {
  worker: string;
  /** The job's summary from its rows: the same whoever prints it. `incomplete` while it runs. */
  summary: MigrationSummary;
  /** What this worker did. */
  mine: MigrationSummary;
}

/**
 * One worker of a migration job kept in PostgreSQL: joins the job (creating it, or refused with
 * InvalidConfig when it exists with another source, destination or options), then, until every
 * range is listed and every object settled, lists key ranges nobody lists and copies objects
 * nobody holds, through the same stages as a local run (plan, copy, verify; its record stage is the
 * job's tables, fenced by each claim).
 *
 * # Contract
 * - Any number of workers, on any machines, may run one job; an object is held by one worker at a
 *   time (a lease on the database's clock, renewed while the copy runs). A worker killed with
 *   kill -9 loses only its leases: they expire after `leaseMs` and others take the work over. A
 *   worker that loses a lease (paused longer than it) stops that object and records nothing more of it.
 * - Listing is split into key ranges: a worker with nothing to list looks with a few small listing
 *   requests where the source's keys are in the rest of a range being listed (probeSplit) and
 *   proposes a split point inside them; the lister applies it unless it has listed past it. Both
 *   halves hold at least `splitMinKeys` keys and each range is probed at most once per
 *   `splitCooldownMs`, so a huge bucket is listed by many workers at once and a small one is not
 *   shredded into empty ranges.
 * - Large objects are copied with the destination's resumable uploads, their handle and finished
 *   parts recorded in the job (JobUploads): a worker taking an object over after a kill resumes
 *   the upload from the parts the destination holds, instead of from the first byte.
 * - Returns when the job is complete (or the signal aborts: `summary.incomplete`).
 */
export async function runJobWorker(src: BlobStore, dst: BlobStore, opts: JobWorkerOptions): Promise<JobWorkerResult> {
  const worker = opts.worker ?? `${hostname()}-${process.pid}-${randomBytes(2).toString('hex')}`;
  const leaseMs = opts.leaseMs ?? 30_000;
  const pollMs = opts.pollMs ?? Math.min(1000, Math.max(10, Math.floor(leaseMs / 4)));
  const splitCooldownMs = opts.splitCooldownMs ?? 5 * pollMs;
  const flushMs = Math.min(leaseMs / 3, Math.max(pollMs, 200));
  const signal = opts.signal;
  const mine = emptySummary();
  const outcomes = new Map<string, string>();
  const emit = (e: MigrationEvent): void => {
    tally(mine, e);
    if (e.type === 'object') outcomes.set(e.key, e.outcome);
    opts.onEvent?.(e);
  };
  if (opts.preflight !== false) {
    await Promise.all([preflight(src, 'source', opts.names.src, opts), preflight(dst, 'destination', opts.names.dst, opts)]);
  }
  const slots = dispatchSlots(src, dst, opts.names, opts);
  ({ src, dst } = rateLimited(src, dst, opts));
  if (opts.sharedOpsPerSecond !== undefined) ({ src, dst } = await sharedRateLimited(src, dst, opts.state, opts.names, opts.sharedOpsPerSecond));
  const mode = proofMode(opts);
  const store = new JobStore(opts.state, opts.job, worker);
  const spec = await store.join({
    src: opts.names.src, dst: opts.names.dst, include: opts.include ?? [], exclude: opts.exclude ?? [], checksum: mode, deleteSource: opts.deleteSource === true,
    priority: opts.priority && { rules: opts.priority.rules ?? [], ...(opts.priority.default ? { default: opts.priority.default } : {}) },
  }, hostname(), process.pid);
  // Every lister classes with the job's rules; metered without rules defers all (as a local run).
  const classifier = spec.priority || opts.metered ? new PriorityClassifier(spec.priority ?? {}) : undefined;
  const order = { byPriority: spec.priority !== undefined, onlyCritical: opts.metered === true };
  let deferred: number | undefined;

  const ctx = (recorder: ObjectRecorder): CopyStageContext => ({
    src, dst, mode, retries: opts.retries ?? 8, dryRun: false, deleteSource: opts.deleteSource === true, recorder, emit,
    resumableThreshold: opts.resumableThreshold, partConcurrency: opts.partConcurrency, onAttemptError: slots.onAttemptError,
  });
  const held = new Map<number, { claim: ObjectClaim; lost: AbortController }>();
  let listing: RangeLease | undefined;
  let complete = false;
  const stop = new AbortController();
  // Listing found work, or a copy finished: the copy loop looks again now rather than at its next poll.
  const wakeup = new Wakeup();
  const loopSignal = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;

  // Leases are renewed at a third of their length; a claim not renewed was taken over: its copy stops.
  const renewal = setInterval(() => {
    void (async () => {
      const ids = [...held.keys()];
      const still = await store.renew(ids, leaseMs);
      for (const id of ids) if (!still.has(id)) held.get(id)?.lost.abort();
      if (listing) await store.renewRange(listing, leaseMs);
    })().catch(() => {
      // PostgreSQL unreachable for a moment: the next tick tries again; leases last three ticks.
    });
  }, Math.max(10, Math.floor(leaseMs / 3)));

  async function copyOne(claim: ObjectClaim): Promise<void> {
    const lost = new AbortController();
    held.set(claim.claimId, { claim, lost });
    // The claim was taken over: stop this object (its copy sees the abort), record nothing more.
    const refused = (): never => {
      lost.abort();
      throw abortedError(lost.signal);
    };
    const recorder: ObjectRecorder = {
      uploads: store.uploads(claim, refused),
      known: (key) => store.known(key),
      record: async (f: MigrationFact) => {
        if (!(await store.record(claim, f))) refused();
      },
      durable: () => Promise.resolve(), // every record is committed before record() resolves
    };
    const objSignal = signal ? AbortSignal.any([signal, lost.signal]) : lost.signal;
    const slot = slots.take(claim.key);
    let ok = false;
    try {
      ok = (await copyStage(claim, ctx(recorder), objSignal)) === 'ok';
      const outcome = outcomes.get(claim.key) as 'copied' | 'identical' | 'failed' | 'vanished' | undefined;
      outcomes.delete(claim.key);
      if (outcome) await store.release(claim, outcome);
    } catch {
      // Aborted (the run, or the lease was lost): the object stays claimed until its lease expires,
      // then another worker takes it. Nothing more is recorded for it here.
      outcomes.delete(claim.key);
      if (lost.signal.aborted) await store.markLost(claim).catch(() => {});
    } finally {
      slot(ok, ok ? claim.src.size : 0);
      held.delete(claim.claimId);
    }
  }

  async function listLoop(): Promise<void> {
    let failures = 0;
    while (!complete && !loopSignal.aborted) {
      try {
        const range = await store.claimRange(leaseMs);
        if (!range && opts.copy === false && !(await store.rangesLeft())) return;
        if (!range) {
          // Nothing to list: find where a busy lister's range could be split, then look again later.
          await proposeSplit();
          await pause(pollMs, loopSignal);
          continue;
        }
        listing = range;
        try {
          await listRange(range);
        } finally {
          listing = undefined;
        }
        failures = 0;
      } catch (e) {
        if (loopSignal.aborted) return;
        if (!isRetryable(e) || ++failures > 8) throw e;
        await DB_BACKOFF.wait(failures, e, loopSignal).catch(() => {});
      }
    }
  }

  async function proposeSplit(): Promise<void> {
    const candidate = await store.reserveSplit(splitCooldownMs);
    if (!candidate) return;
    const probe = await probeSplit(src, candidate.from, candidate.end, { minKeys: opts.splitMinKeys, signal: loopSignal });
    if (probe.at !== undefined) await store.proposeSplit(candidate, probe.at);
    else await store.unsplittable(candidate);
  }

  async function listRange(range: RangeLease): Promise<void> {
    let end = range.end;
    let found: ListedObject[] = [];
    let extra = 0;
    let position: string | undefined;
    let flushedAt = Date.now();
    const batch = opts.listBatch ?? 500;
    const flush = async (): Promise<boolean> => {
      const r = await store.rangeProgress(range, found, extra, position, leaseMs);
      if (found.length > 0) wakeup.wake();
      found = [];
      extra = 0;
      flushedAt = Date.now();
      if (!r) return false;
      end = r.end;
      return true;
    };
    // `listed` is counted here, not by the plan: its listing runs ahead of the range's (moving) end.
    const plan = planMigration(src, dst, { include: opts.include, exclude: opts.exclude, startAfter: range.position ?? range.after, end: range.end, signal: loopSignal });
    for await (const entry of plan) {
      // The range may have been split: what lies past its new end is another lister's.
      if (end !== undefined && compareKeys(entry.key, end) > 0) break;
      if (entry.action === 'reconcile') {
        const rank = classifier ? PRIORITY_RANK[classifier.classify({ key: entry.key, size: entry.src!.size })] : undefined;
        found.push({ key: entry.key, src: entry.src!, dst: entry.dst, ...(rank !== undefined ? { rank } : {}) });
        emit({ type: 'listed', key: entry.key, size: entry.src!.size });
      }
      else if (entry.action === 'extra') {
        extra++;
        emit({ type: 'extra', key: entry.key });
      }
      position = entry.key;
      // Recorded every `batch` objects, and often enough for a proposed split to be applied soon.
      if ((found.length >= batch || Date.now() - flushedAt > flushMs) && !(await flush())) return;
    }
    if (!(await flush())) return;
    await store.finishRange(range);
    wakeup.wake();
  }

  async function copyLoop(): Promise<void> {
    const running = new Set<Promise<void>>();
    let failures = 0;
    try {
      while (!loopSignal.aborted) {
        try {
          const free = slots.room(running.size);
          const claims = free > 0 ? await store.claimObjects(free, leaseMs, order) : [];
          failures = 0;
          for (const c of claims) {
            const t: Promise<void> = copyOne(c).finally(() => running.delete(t));
            running.add(t);
          }
          if (claims.length > 0 && slots.room(running.size) > 0) continue;
          if (running.size === 0) {
            if (await store.tryComplete()) {
              complete = true;
              return;
            }
            if (opts.metered && (deferred = await store.deferredOnly()) !== undefined) return;
            await wakeup.wait(pollMs, loopSignal);
          } else if (slots.room(running.size) === 0) {
            await Promise.race(running);
          } else {
            // Nothing to claim for now: wait for a copy to finish, for the lister, or a poll interval.
            await Promise.race([...running, wakeup.wait(pollMs, loopSignal)]);
          }
        } catch (e) {
          if (loopSignal.aborted) return;
          if (!isRetryable(e) || ++failures > 8) throw e;
          await DB_BACKOFF.wait(failures, e, loopSignal).catch(() => {});
        }
      }
    } finally {
      await Promise.allSettled([...running]);
    }
  }

  try {
    if (opts.copy === false) await listLoop();
    else await Promise.all([copyLoop().finally(() => stop.abort()), listLoop()]);
  } finally {
    clearInterval(renewal);
  }
  const status = await readJobStatus(opts.state, opts.job);
  await store.leave(complete ? 'finished' : 'stopped').catch(() => {});
  if (!complete) status.summary.incomplete = signal?.aborted ? 'aborted' : status.summary.incomplete ?? 'stopped';
  if (deferred !== undefined && !signal?.aborted) status.summary.incomplete = mine.incomplete = `metered: ${deferred} non-critical objects deferred`;
  if (signal?.aborted) mine.incomplete = 'aborted';
  return { worker, summary: status.summary, mine };
}

/** Each store behind the shared bucket of its provider (one bucket when both are the same store). */
async function sharedRateLimited(src: BlobStore, dst: BlobStore, state: PostgresStateStore, names: { src: string; dst: string }, ratePerSec: number): Promise<{ src: BlobStore; dst: BlobStore }> {
  const srcOps = await SharedTokenBucket.open(state, `ops:${names.src}`, { ratePerSec });
  const dstOps = names.dst === names.src ? srcOps : await SharedTokenBucket.open(state, `ops:${names.dst}`, { ratePerSec });
  const limitedSrc = new RateLimitStore(src, { opsPerSec: srcOps });
  return { src: limitedSrc, dst: src === dst ? limitedSrc : new RateLimitStore(dst, { opsPerSec: dstOps }) };
}

/** Waits between attempts at the job's tables while PostgreSQL is unreachable (the one backoff rule, slower start). */
const DB_BACKOFF = new Backoff({ baseMs: 200, capMs: 5000 });

/** Waits until woken, `ms` pass, or the signal aborts (never throws; leaves no listener behind). */
class Wakeup {
  private readonly waiters = new Set<() => void>();

  wake(): void {
    for (const w of [...this.waiters]) w();
  }

  wait(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      if (signal.aborted) return resolve();
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      this.waiters.add(done);
    });
  }
}

/** Waits `ms`, or less when the signal aborts (never throws). */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return sleep(ms, signal).catch(() => {});
}
