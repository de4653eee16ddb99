import { CloudmuxError, describeError, isCloudmuxError, throwIfAborted } from '../core/index.js';
import type { BlobStore, ErrorCode } from '../core/index.js';
import type { ChecksumMode } from './copier.js';
import { MigrationJournal } from './journal.js';
import { RateLimitStore } from '../layers/rate-limit.js';
import { TokenBucket } from '../layers/token-bucket.js';
import { ScheduledTokenBucket, type BandwidthTimetable } from '../layers/bandwidth-timetable.js';
import { AdaptiveConcurrency, type AdaptiveConcurrencyOptions, type AdaptivePermit } from '../layers/adaptive-concurrency.js';
import { LocalClaims, type ClaimSlot } from './stages/claim.js';
import { PRIORITY_RANK, PriorityClassifier, type PriorityOptions } from '../core/priority.js';
import { copyStage, type CopyStageContext } from './stages/copy.js';
import { planMigration, type PlanEntry } from './stages/plan.js';
import { JournalRecorder, NO_RECORD } from './stages/record.js';
import { emptySummary, tally, type MigrationEvent, type MigrationSummary } from './stages/summary.js';

export interface MigrateOptions {
  /** Only keys matching one of these globs (picomatch; `**` crosses `/`). */
  include?: string[];
  /** Never keys matching one of these globs. Exclude wins over include. */
  exclude?: string[];
  /**
   * Objects in flight at once. Default 16. Memory ≈ concurrency × the destination's part buffer.
   * `auto`: adaptive (AIMD) per side between `adaptive.min` and `adaptive.max`, see AdaptiveConcurrency.
   */
  concurrency?: number | 'auto';
  /** Bounds and tuning of `concurrency: 'auto'` (default: min 1, max 64, start at 4). */
  adaptive?: AdaptiveConcurrencyOptions;
  /** Called with each adaptive limiter created (`concurrency: 'auto'`), for progress lines, metrics and benches. */
  onLimiter?(limiter: AdaptiveConcurrency): void;
  /** How identical objects are recognised and copies verified. Default `auto`. */
  checksum?: ChecksumMode;
  /** List and compare, report what would be copied, write nothing (not even the journal). */
  dryRun?: boolean;
  /**
   * Remove each source object once its copy (or an identical destination object) is verified by
   * digest. Sizes never suffice: with `checksum: 'size-only'` objects are compared and copies
   * verified by digest (`auto`) instead.
   */
  deleteSource?: boolean;
  /** Journal file path (or an open journal) for resume; false or absent: no journal. */
  journal?: string | MigrationJournal | false;
  /** Attempts after the first for each object on Throttled/Transient/IntegrityError/source-changed. Default 8. */
  retries?: number;
  /** Source bytes per second (`--bwlimit 10M`). */
  bytesPerSecond?: number;
  /**
   * `--bwlimit` as a timetable with separate up/down limits (BandwidthTimetable.parse:
   * `"08:00,1M 19:00,off"`, `10M:1M`): down paces source reads, up paces destination writes; the
   * limit in force switches at each window boundary. Applies with `bytesPerSecond` unset.
   */
  bwlimit?: BandwidthTimetable;
  /** Requests per second to each store (`--tpslimit`). */
  opsPerSecond?: number;
  signal?: AbortSignal;
  /** Progress and per-object outcomes, for bars, JSON lines and tests. Called synchronously; keep it cheap. */
  onEvent?(event: MigrationEvent): void;
  /** Check that both stores answer before anything is written. Default true. */
  preflight?: boolean;
  /** Milliseconds the preflight waits for each store. Default 30 000. */
  preflightTimeoutMs?: number;
  /** Names of the two sides for messages and the journal (default: the stores' toString()). */
  names?: { src: string; dst: string };
  /** Most keys dispatched beyond the journal cursor (bounds memory when one object is slow). Default 10 000. */
  window?: number;
  /**
   * Objects larger than this go through the destination's resumable uploads (when it offers them,
   * see resumable-copy.ts), so a killed run resumes them from their finished parts. Default: the
   * destination's own multipart threshold. `false`: never.
   */
  resumableThreshold?: number | false;
  /** Parts of one resumable upload in flight at once. Default 4. */
  partConcurrency?: number;
  /**
   * Priority classes by glob or size (metadata rules never match: listings carry none). With it,
   * objects are dispatched from a lookahead of listed objects most urgent class first, smaller
   * before larger within a class, instead of in listing order.
   */
  priority?: PriorityClassifier | PriorityOptions;
  /** Objects listed ahead and ordered by priority (with `priority`). Default 1 000, at most `window`. */
  lookahead?: number;
  /**
   * A metered link: only `critical` objects are copied; the others are reported `deferred` and the
   * run ends incomplete, so a later run without it copies them.
   */
  metered?: boolean;
}

export type { MigrationEvent, MigrationSummary, ObjectOutcome } from './stages/summary.js';

/**
 * Migrates every object of `src` to `dst` (both may be prefixes of a bucket: stores opened on a
 * prefix): lists both concurrently in UTF-8 byte order and merge-joins them (memory bounded by
 * prefetch depth and `window`, never by bucket size), copies what is missing or differs (size, then
 * digests), verifies each copy before counting it, and records everything in the journal.
 *
 * # Contract
 * - Resume: with a journal, a run killed at any point and started again lists from the cursor and
 *   never copies again an object the journal records as verified for the same source version.
 *   Once past the end, it lists the keys before the cursor again and reconciles those the journal
 *   has no verified record of for their current etag (rewritten or created behind the cursor while
 *   an earlier run of the pass went on), so a resumed run that ends `complete` leaves behind no
 *   object the source held when it started.
 * - `deleteSource` deletes a source object only after verification by digest (never by size
 *   alone, whatever `checksum` says or the journal recorded), only once the journal has committed
 *   that verification, and only while it is still the version verified: a delete conditional on
 *   its etag where the source declares `capabilities.conditionalDelete`, else a head compared
 *   (etag and SHA-256) right before the delete (see deleteIfUnchanged). A source that changed is
 *   compared and copied again, not deleted.
 * - Failures of single objects do not stop the run: they are retried (`retries`), then counted in
 *   `failed` with a reason. A listing that fails for good stops the run (`incomplete`).
 * - Preflight: both stores must answer a one-object listing before anything is written; otherwise
 *   throws a CloudmuxError whose message is one line naming the side.
 */
export async function migrate(src: BlobStore, dst: BlobStore, opts: MigrateOptions = {}): Promise<MigrationSummary> {
  const started = Date.now();
  const names = opts.names ?? { src: src.toString(), dst: dst.toString() };
  const slots = dispatchSlots(src, dst, names, opts);
  const windowSize = Math.max(slots.most, opts.window ?? 10_000);
  const signal = opts.signal;
  const summary = emptySummary();
  const emit = (e: MigrationEvent): void => {
    tally(summary, e);
    opts.onEvent?.(e);
  };

  if (opts.preflight !== false) {
    await Promise.all([preflight(src, 'source', names.src, opts), preflight(dst, 'destination', names.dst, opts)]);
  }
  ({ src, dst } = rateLimited(src, dst, opts));

  const include = opts.include ?? [];
  const exclude = opts.exclude ?? [];
  // The record stage: the only writer of the journal.
  let recorder: JournalRecorder | undefined;
  if (!opts.dryRun && opts.journal) {
    recorder = typeof opts.journal === 'string'
      ? new JournalRecorder(MigrationJournal.open(opts.journal, names, JSON.stringify({ include, exclude })), true)
      : new JournalRecorder(opts.journal, false);
  }
  const ctx: CopyStageContext = {
    src, dst, mode: proofMode(opts), retries: opts.retries ?? 8, dryRun: opts.dryRun === true, deleteSource: opts.deleteSource === true,
    recorder: recorder ?? NO_RECORD, emit, resumableThreshold: opts.resumableThreshold, partConcurrency: opts.partConcurrency,
    onAttemptError: slots.onAttemptError,
  };

  const resumedAfter = recorder?.resumeAfter();
  if (resumedAfter !== undefined) summary.resumedAfter = resumedAfter;
  const running = new Set<Promise<void>>();
  const classifier = opts.priority instanceof PriorityClassifier ? opts.priority : opts.priority || opts.metered ? new PriorityClassifier(opts.priority || {}) : undefined;
  const lookahead = opts.priority ? Math.max(1, Math.min(windowSize, opts.lookahead ?? 1000)) : 1;
  let deferred = 0;
  const start = (entry: PlanEntry, slot: ClaimSlot | undefined): void => {
    const item = { key: entry.key, src: entry.src!, dst: entry.dst };
    const release = slots.take(item.key);
    const task: Promise<void> = copyStage(item, ctx, signal).then(
      (outcome) => {
        release(outcome === 'ok', item.src.size);
        slot?.settle(outcome === 'failed');
      },
      (e: unknown) => {
        // Only an abort escapes the copy stage; the slot stays unsettled so the cursor stays before it.
        if (!signal?.aborted) emit({ type: 'object', key: item.key, outcome: 'failed', size: item.src.size, bytes: 0, reason: describeError(e, { where: false, maxLength: 500 }) });
        release(false, 0);
      },
    ).finally(() => running.delete(task));
    running.add(task);
  };
  /**
   * Runs the copy stage on every `reconcile` entry of a plan, as many at a time as the slots allow;
   * `claims` moves the cursor. With priorities, up to `lookahead` listed objects wait in a queue
   * ordered by (class, size); an object waits at most until the window is full behind it.
   */
  const dispatch = async (plan: AsyncIterable<PlanEntry>, claims: LocalClaims | undefined): Promise<void> => {
    const queue: { entry: PlanEntry; slot: ClaimSlot | undefined; rank: number; size: number }[] = [];
    const full = (): boolean => (claims?.outstanding ?? 0) > windowSize;
    const pump = async (all: boolean): Promise<void> => {
      while (queue.length > 0 && (all || queue.length >= lookahead || full())) {
        while (!slots.hasRoom(running.size)) await Promise.race(running);
        const next = queue.shift()!;
        start(next.entry, next.slot);
      }
      while (full() && running.size > 0) await Promise.race(running);
    };
    for await (const entry of plan) {
      throwIfAborted(signal);
      const slot = claims?.claim(entry.key);
      if (entry.action !== 'reconcile') {
        if (entry.action === 'extra') emit({ type: 'extra', key: entry.key });
        slot?.settle();
        continue;
      }
      const cls = classifier?.classify({ key: entry.key, size: entry.src!.size }) ?? 'normal';
      if (opts.metered && cls !== 'critical') {
        deferred++;
        emit({ type: 'object', key: entry.key, outcome: 'deferred', size: entry.src!.size, bytes: 0, reason: `metered link: ${cls} objects wait for an unmetered run` });
        slot?.settle(true);
        continue;
      }
      const q = { entry, slot, rank: PRIORITY_RANK[cls], size: entry.src!.size };
      let i = queue.length;
      while (i > 0 && (queue[i - 1]!.rank > q.rank || (queue[i - 1]!.rank === q.rank && queue[i - 1]!.size > q.size))) i--;
      queue.splice(i, 0, q);
      await pump(false);
    }
    await pump(true);
  };
  let listedAll = false;
  try {
    const claims = new LocalClaims((key) => recorder?.settledThrough(key));
    await dispatch(planMigration(src, dst, { include, exclude, startAfter: resumedAfter, signal, emit }), claims);
    // A resumed pass goes back over the keys before its cursor: a source object rewritten or
    // created there while an earlier run of this pass was going on (after that run had passed it)
    // would otherwise never be copied, and a run that says "complete" would leave it behind. The
    // journal's records of verified copies make this a listing, not a second copy: an object
    // whose etag is the one verified is settled without a read. The cursor does not move back.
    if (resumedAfter !== undefined) {
      await dispatch(planMigration(src, dst, { include, exclude, end: resumedAfter, signal, emit }), undefined);
    }
    listedAll = true;
    emit({ type: 'listing-done', objects: summary.listed, bytes: summary.listedBytes });
  } catch (e) {
    summary.incomplete = signal?.aborted ? 'aborted' : `listing failed: ${describeError(e, { where: false, maxLength: 500 })}`;
  } finally {
    await Promise.allSettled([...running]);
    summary.durationMs = Date.now() - started;
    recorder?.finish(signal?.aborted ? 'aborted' : listedAll ? 'complete' : 'incomplete', summary);
  }
  if (signal?.aborted && !summary.incomplete) summary.incomplete = 'aborted';
  if (deferred > 0 && !summary.incomplete) summary.incomplete = `metered: ${deferred} non-critical objects deferred`;
  return summary;
}

/** How many objects may be in flight: a fixed number, or one adaptive limiter per side (`concurrency: 'auto'`). */
export interface DispatchSlots {
  /** Most objects ever in flight (bounds the window). */
  most: number;
  hasRoom(running: number): boolean;
  /** Objects that may start now, with `running` in flight (a job worker claims this many). */
  room(running: number): number;
  /** Takes the slots of one object; the returned function gives them back (ok: a latency sample of `bytes`). */
  take(key: string): (ok: boolean, bytes: number) => void;
  onAttemptError?(key: string, error: unknown): void;
}

/**
 * `concurrency: 'auto'`: a limiter for each side (one when both are the same store); an object
 * needs a slot on both. A Throttled error counts against the side whose provider raised it (both
 * when it cannot tell), and an object that was throttled gives no latency sample (its retries'
 * backoff is not the provider's latency).
 */
export function dispatchSlots(src: BlobStore, dst: BlobStore, names: { src: string; dst: string }, opts: Pick<MigrateOptions, 'concurrency' | 'adaptive' | 'onLimiter'>): DispatchSlots {
  if (opts.concurrency !== 'auto') {
    const n = Math.max(1, opts.concurrency ?? 16);
    return { most: n, hasRoom: (running) => running < n, room: (running) => Math.max(0, n - running), take: () => () => {} };
  }
  const srcLimiter = new AdaptiveConcurrency({ ...opts.adaptive, name: opts.adaptive?.name ?? names.src });
  const dstLimiter = src === dst ? srcLimiter : new AdaptiveConcurrency({ ...opts.adaptive, name: opts.adaptive?.name ?? names.dst });
  const limiters = srcLimiter === dstLimiter ? [srcLimiter] : [srcLimiter, dstLimiter];
  for (const l of limiters) opts.onLimiter?.(l);
  const held = new Map<string, { permits: Map<AdaptiveConcurrency, AdaptivePermit>; throttled: boolean }>();
  return {
    most: Math.max(...limiters.map((l) => l.max)),
    hasRoom: () => limiters.every((l) => l.hasRoom),
    room: () => Math.max(0, Math.min(...limiters.map((l) => l.limit - l.inFlight))),
    take(key) {
      // A job worker claims from the database between `room` and `take`: a limit cut meanwhile
      // leaves an object already claimed without a permit; it runs (its lease is ticking), uncounted.
      const permits = new Map<AdaptiveConcurrency, AdaptivePermit>();
      for (const l of limiters) {
        const p = l.tryAcquire();
        if (p) permits.set(l, p);
      }
      const h = { permits, throttled: false };
      held.set(key, h);
      return (ok, bytes) => {
        held.delete(key);
        for (const p of permits.values()) p.release(ok && !h.throttled ? 'ok' : 'error', bytes);
      };
    },
    onAttemptError(key, e) {
      if (!isCloudmuxError(e, 'Throttled')) return;
      const h = held.get(key);
      if (!h) return;
      h.throttled = true;
      const blamed = e.provider !== undefined && src.provider !== dst.provider
        ? limiters.filter((l) => (l === srcLimiter ? src.provider : dst.provider) === e.provider)
        : limiters;
      for (const l of blamed.length ? blamed : limiters) l.throttled(h.permits.get(l)?.startedAt);
    },
  };
}

/** What proves a copy: the mode asked for, but never sizes alone when the source is to be deleted. */
export function proofMode(opts: { deleteSource?: boolean; checksum?: ChecksumMode }): ChecksumMode {
  return opts.deleteSource && opts.checksum === 'size-only' ? 'auto' : (opts.checksum ?? 'auto');
}

/**
 * `--bwlimit` / `--tpslimit`: every byte moved is read from the source once, so pacing source reads
 * paces the transfer; one ops bucket is shared so --tpslimit counts requests to both sides. A
 * timetable (`bwlimit`) paces source reads by its down limit and destination writes by its up
 * limit, each switching at the window boundaries (`now`: the clock it reads, for tests).
 */
export function rateLimited(src: BlobStore, dst: BlobStore, opts: { bytesPerSecond?: number; opsPerSecond?: number; bwlimit?: BandwidthTimetable; now?: () => Date }): { src: BlobStore; dst: BlobStore } {
  const table = !opts.bytesPerSecond && opts.bwlimit && !opts.bwlimit.unlimited ? opts.bwlimit : undefined;
  if (!opts.bytesPerSecond && !opts.opsPerSecond && !table) return { src, dst };
  const ops = opts.opsPerSecond ? new TokenBucket({ ratePerSec: opts.opsPerSecond }) : undefined;
  const down = table && new ScheduledTokenBucket(table, 'down', { now: opts.now });
  const up = table && new ScheduledTokenBucket(table, 'up', { now: opts.now });
  const limitedSrc = new RateLimitStore(src, { opsPerSec: ops, readBytesPerSec: opts.bytesPerSecond ?? down, writeBytesPerSec: src === dst ? up : undefined });
  return { src: limitedSrc, dst: src === dst ? limitedSrc : new RateLimitStore(dst, { opsPerSec: ops, writeBytesPerSec: up }) };
}

/**
 * Checks that a store answers (a one-object listing) within the timeout. Unreachable endpoints,
 * missing buckets and wrong credentials all fail here, before anything is written, with one line
 * naming the side: `cannot use the source s3://b (AuthFailed): …`.
 */
export async function preflight(store: BlobStore, role: 'source' | 'destination', name: string, opts: { signal?: AbortSignal; preflightTimeoutMs?: number } = {}): Promise<void> {
  const timeoutMs = opts.preflightTimeoutMs ?? 30_000;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
  try {
    for await (const _item of store.list({ pageSize: 1, signal })) break;
  } catch (e) {
    if (opts.signal?.aborted) throw e;
    const code: ErrorCode = timeout.aborted ? 'Transient' : isCloudmuxError(e) ? e.code : 'ProviderError';
    const why = timeout.aborted ? `no answer within ${timeoutMs / 1000} s` : describeError(isCloudmuxError(e) ? e.message : e, { maxLength: 500 });
    throw new CloudmuxError(code, `cannot use the ${role} ${name} (${code}): ${why}`, { cause: e, provider: store.provider, retryable: false });
  }
}
