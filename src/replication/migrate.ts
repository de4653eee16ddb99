import {
  CloudmuxError, isCloudmuxError, isRetryable, resumableUploads, throwIfAborted,
} from '../core/index.js';
import type { BlobStore, ErrorCode, ObjectMeta, ObjectSummary } from '../core/index.js';
import { copyObject, type ChecksumMode } from './copier.js';
import { MigrationJournal } from './journal.js';
import { resumableCopy } from './resumable-copy.js';
import { RateLimitStore } from '../layers/rate-limit.js';
import { TokenBucket } from '../layers/token-bucket.js';
import { backoff, compareObjects, keyFilter, listResumable, mergeListings } from './plan.js';

export interface MigrateOptions {
  /** Only keys matching one of these globs (picomatch; `**` crosses `/`). */
  include?: string[];
  /** Never keys matching one of these globs. Exclude wins over include. */
  exclude?: string[];
  /** Objects in flight at once. Default 16. Memory ≈ concurrency × the destination's part buffer. */
  concurrency?: number;
  /** How identical objects are recognised and copies verified. Default `auto`. */
  checksum?: ChecksumMode;
  /** List and compare, report what would be copied, write nothing (not even the journal). */
  dryRun?: boolean;
  /** Remove each source object once its copy (or an identical destination object) is verified. */
  deleteSource?: boolean;
  /** Journal file path (or an open journal) for resume; false or absent: no journal. */
  journal?: string | MigrationJournal | false;
  /** Attempts after the first for each object on Throttled/Transient/IntegrityError/source-changed. Default 8. */
  retries?: number;
  /** Source bytes per second (`--bwlimit`). */
  bytesPerSecond?: number;
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
}

export type ObjectOutcome = 'copied' | 'identical' | 'would-copy' | 'failed' | 'vanished';

export type MigrationEvent =
  | { type: 'listed'; key: string; size: number }
  | { type: 'listing-done'; objects: number; bytes: number }
  | { type: 'start'; key: string; size: number }
  | { type: 'progress'; bytes: number }
  | { type: 'retry'; key: string; attempt: number; reason: string }
  | { type: 'object'; key: string; outcome: ObjectOutcome; size: number; bytes: number; verifiedBy?: string; reason?: string }
  | { type: 'extra'; key: string }
  | { type: 'source-deleted'; key: string }
  | { type: 'part'; key: string; partNumber: number; parts: number; size: number }
  | { type: 'upload-resumed'; key: string; kept: number; parts: number };

export interface MigrationSummary {
  /** Source objects listed (after filters) and their bytes. */
  listed: number;
  listedBytes: number;
  /** Already identical at the destination (by digest, or by the journal's record of a verified copy). */
  identical: number;
  copied: number;
  /** Objects proven present at the destination: copied and verified, plus identical ones. */
  verified: number;
  failed: number;
  /** The first 100 failures. */
  failures: { key: string; reason: string }[];
  /** Dry run: objects that would be copied. */
  wouldCopy: number;
  /** Listed but deleted from the source before they could be copied. */
  vanished: number;
  /** Objects only at the destination (left alone). */
  extraAtDestination: number;
  sourceDeleted: number;
  /** Bytes copied. */
  bytes: number;
  durationMs: number;
  /** The listing cursor this run resumed after, if any. */
  resumedAfter?: string;
  /** Set when the run stopped early (listing failed, aborted). */
  incomplete?: string;
}

/**
 * Migrates every object of `src` to `dst` (both may be prefixes of a bucket: stores opened on a
 * prefix): lists both concurrently in UTF-8 byte order and merge-joins them (memory bounded by
 * prefetch depth and `window`, never by bucket size), copies what is missing or differs (size, then
 * digests), verifies each copy before counting it, and records everything in the journal.
 *
 * # Contract
 * - Resume: with a journal, a run killed at any point and started again lists from the cursor and
 *   never copies again an object the journal records as verified for the same source version.
 * - `deleteSource` deletes a source object only after verification by digest (by size alone only
 *   when `checksum` is `size-only`), only once the journal has committed that verification, and
 *   only if its etag is still the one copied.
 * - Failures of single objects do not stop the run: they are retried (`retries`), then counted in
 *   `failed` with a reason. A listing that fails for good stops the run (`incomplete`).
 * - Preflight: both stores must answer a one-object listing before anything is written; otherwise
 *   throws a CloudmuxError whose message is one line naming the side.
 */
export async function migrate(src: BlobStore, dst: BlobStore, opts: MigrateOptions = {}): Promise<MigrationSummary> {
  const started = Date.now();
  const names = opts.names ?? { src: src.toString(), dst: dst.toString() };
  const mode = opts.checksum ?? 'auto';
  const concurrency = Math.max(1, opts.concurrency ?? 16);
  const retries = opts.retries ?? 8;
  const windowSize = Math.max(concurrency, opts.window ?? 10_000);
  const signal = opts.signal;
  const emit = opts.onEvent ?? (() => {});

  if (opts.preflight !== false) {
    await Promise.all([preflight(src, 'source', names.src, opts), preflight(dst, 'destination', names.dst, opts)]);
  }

  if (opts.bytesPerSecond || opts.opsPerSecond) {
    // Every byte moved is read from the source once: pacing source reads paces the transfer.
    // One ops bucket is shared so --tpslimit counts requests to both sides.
    const ops = opts.opsPerSecond ? new TokenBucket({ ratePerSec: opts.opsPerSecond }) : undefined;
    const sameStore = src === dst;
    src = new RateLimitStore(src, { opsPerSec: ops, readBytesPerSec: opts.bytesPerSecond });
    dst = sameStore ? src : new RateLimitStore(dst, { opsPerSec: ops });
  }

  const include = opts.include ?? [];
  const exclude = opts.exclude ?? [];
  const wanted = keyFilter(include, exclude);
  let journal: MigrationJournal | undefined;
  let ownJournal = false;
  if (!opts.dryRun && opts.journal) {
    if (typeof opts.journal === 'string') {
      journal = MigrationJournal.open(opts.journal, names, JSON.stringify({ include, exclude }));
      ownJournal = true;
    } else journal = opts.journal;
  }

  const summary: MigrationSummary = {
    listed: 0, listedBytes: 0, identical: 0, copied: 0, verified: 0, failed: 0, failures: [], wouldCopy: 0,
    vanished: 0, extraAtDestination: 0, sourceDeleted: 0, bytes: 0, durationMs: 0,
  };
  const fail = (key: string, reason: string): void => {
    summary.failed++;
    if (summary.failures.length < 100) summary.failures.push({ key, reason });
  };

  // Keys in dispatch order; the cursor advances past the settled head of this queue.
  // Once an object fails, the cursor stops before it, so a resumed run lists it again.
  const order: { key: string; settled: boolean }[] = [];
  let head = 0;
  let cursorFrozen = false;
  const settle = (slot: { settled: boolean }, failed = false): void => {
    slot.settled = true;
    if (failed) cursorFrozen = true;
    let last: string | undefined;
    while (head < order.length && order[head]!.settled) last = order[head++]!.key;
    if (head > 4096) {
      order.splice(0, head);
      head = 0;
    }
    if (last !== undefined && !cursorFrozen) journal?.setCursor(last);
  };

  async function reconcile(s: ObjectSummary, d: ObjectSummary | undefined): Promise<'ok' | 'failed'> {
    const key = s.key;
    let srcEtag = s.etag;
    let srcSize = s.size;
    let compareWith = d;
    for (let attempt = 0; ; attempt++) {
      try {
        throwIfAborted(signal);
        if (compareWith) {
          const known = journal?.lookup(key);
          let identicalBy: string | undefined;
          if (known && (known.state === 'verified') && known.srcEtag === srcEtag && known.dstEtag === compareWith.etag && known.size === srcSize) {
            identicalBy = `journal:${known.verifiedBy ?? ''}`;
          } else {
            const cmp = await compareObjects(src, { ...s, etag: srcEtag, size: srcSize }, dst, compareWith, mode, signal);
            if (cmp.same) {
              identicalBy = cmp.by;
              journal?.verified(key, { size: srcSize, srcEtag, dstEtag: compareWith.etag, sha256: cmp.srcSha256, verifiedBy: cmp.by, copied: false });
            }
          }
          if (identicalBy !== undefined) {
            summary.identical++;
            summary.verified++;
            emit({ type: 'object', key, outcome: 'identical', size: srcSize, bytes: 0, verifiedBy: identicalBy });
            if (opts.deleteSource && !opts.dryRun && (mode === 'size-only' || identicalBy !== 'size-only')) await removeSource(key, srcEtag);
            return 'ok';
          }
        }
        if (opts.dryRun) {
          summary.wouldCopy++;
          emit({ type: 'object', key, outcome: 'would-copy', size: srcSize, bytes: 0, reason: compareWith ? 'differs' : 'missing' });
          return 'ok';
        }
        emit({ type: 'start', key, size: srcSize });
        journal?.copying(key, srcSize, srcEtag);
        let moved = 0;
        const onProgress = (n: number): void => {
          moved += n;
          emit({ type: 'progress', bytes: n });
        };
        const resumable = resumableTarget(srcSize);
        const r = resumable
          ? await resumableCopy(src, key, resumable, {
            signal, sourceEtag: srcEtag, verify: mode, journal, partConcurrency: opts.partConcurrency, onProgress,
            onPart: (p) => emit({ type: 'part', ...p }),
            onResume: (x) => emit({ type: 'upload-resumed', ...x }),
          })
          : await copyObject(src, key, dst, key, { signal, sourceEtag: srcEtag, verify: mode, onProgress });
        journal?.verified(key, { size: r.bytes, srcEtag, dstEtag: r.meta.etag, sha256: r.sha256, verifiedBy: r.verifiedBy, copied: true });
        summary.copied++;
        summary.verified++;
        summary.bytes += r.bytes;
        emit({ type: 'object', key, outcome: 'copied', size: r.bytes, bytes: moved, verifiedBy: r.verifiedBy });
        if (opts.deleteSource) await removeSource(key, srcEtag);
        return 'ok';
      } catch (e) {
        if (signal?.aborted) throw e;
        // The source changed or vanished since it was listed: look again and go on with what is there now.
        if (isCloudmuxError(e, 'PreconditionFailed') || isCloudmuxError(e, 'NotFound')) {
          const now: ObjectMeta | unknown = await src.head(key, { signal }).catch((h: unknown) => h);
          if (isCloudmuxError(now, 'NotFound')) {
            summary.vanished++;
            emit({ type: 'object', key, outcome: 'vanished', size: srcSize, bytes: 0, reason: 'deleted from the source during the run' });
            return 'ok';
          }
          if (!(now instanceof Error) && now !== null && typeof now === 'object') {
            const meta = now as ObjectMeta;
            const changed = meta.etag !== srcEtag;
            srcEtag = meta.etag;
            srcSize = meta.size;
            // The destination may have been the one that changed: compare afresh.
            // Otherwise the destination changed under a compare: look at it afresh.
            if (compareWith && !changed) compareWith = await headSummary(dst, key, signal);
            if (attempt < retries) {
              emit({ type: 'retry', key, attempt: attempt + 1, reason: changed ? 'source changed during the copy' : describe(e) });
              if (!changed) await backoff(attempt + 1, e, signal);
              continue;
            }
          }
        }
        const retryable = isRetryable(e) || isCloudmuxError(e, 'IntegrityError');
        if (retryable && attempt < retries) {
          emit({ type: 'retry', key, attempt: attempt + 1, reason: describe(e) });
          await backoff(attempt + 1, e, signal);
          continue;
        }
        const reason = describe(e);
        journal?.failed(key, srcEtag, reason);
        fail(key, reason);
        emit({ type: 'object', key, outcome: 'failed', size: srcSize, bytes: 0, reason });
        return 'failed';
      }
    }
  }

  /** The destination's resumable uploads when an object of `size` should use them (a streamed copy between two stores, above the threshold). */
  function resumableTarget(size: number): ReturnType<typeof resumableUploads> {
    if (opts.resumableThreshold === false || src === dst || typeof (dst as { copyFromStore?: unknown }).copyFromStore === 'function') return undefined;
    const r = resumableUploads(dst);
    if (!r) return undefined;
    return size > (opts.resumableThreshold ?? r.multipartThreshold) ? r : undefined;
  }

  async function removeSource(key: string, etag: string): Promise<void> {
    // The journal group-commits its records: the one saying this object is verified must be on disk
    // before the only other copy of the bytes goes.
    await journal?.durable();
    const now = await src.head(key, { signal });
    if (now.etag !== etag) throw new CloudmuxError('PreconditionFailed', 'source changed after it was copied; not deleted', { provider: src.provider, key });
    await src.delete(key, { signal });
    journal?.sourceDeleted(key, etag);
    summary.sourceDeleted++;
    emit({ type: 'source-deleted', key });
  }

  const resumedAfter = journal?.cursor();
  if (resumedAfter !== undefined) summary.resumedAfter = resumedAfter;
  const running = new Set<Promise<void>>();
  let listedAll = false;
  try {
    const srcList = countListed(listResumable(src, { startAfter: resumedAfter, signal }), (o) => {
      if (!wanted(o.key)) return false;
      summary.listed++;
      summary.listedBytes += o.size;
      emit({ type: 'listed', key: o.key, size: o.size });
      return true;
    });
    for await (const entry of mergeListings(srcList, listResumable(dst, { startAfter: resumedAfter, signal }))) {
      throwIfAborted(signal);
      const slot = { key: entry.key, settled: false };
      order.push(slot);
      if (!entry.src || !wanted(entry.key)) {
        if (!entry.src && entry.dst && wanted(entry.key)) {
          summary.extraAtDestination++;
          emit({ type: 'extra', key: entry.key });
        }
        settle(slot);
        continue;
      }
      while (running.size >= concurrency || order.length - head > windowSize) await Promise.race(running);
      const s = entry.src;
      const task: Promise<void> = reconcile(s, entry.dst).then(
        (outcome) => settle(slot, outcome === 'failed'),
        (e: unknown) => {
          // Only an abort escapes reconcile; the slot stays unsettled so the cursor stays before it.
          if (!signal?.aborted) fail(s.key, describe(e));
        },
      ).finally(() => running.delete(task));
      running.add(task);
    }
    listedAll = true;
    emit({ type: 'listing-done', objects: summary.listed, bytes: summary.listedBytes });
  } catch (e) {
    summary.incomplete = signal?.aborted ? 'aborted' : `listing failed: ${describe(e)}`;
  } finally {
    await Promise.allSettled([...running]);
    summary.durationMs = Date.now() - started;
    if (journal) {
      // A finished pass starts the next run from the top; verified objects are skipped via the journal.
      if (listedAll && !signal?.aborted) journal.passComplete();
      journal.finishRun(signal?.aborted ? 'aborted' : listedAll ? 'complete' : 'incomplete', summary);
      if (ownJournal) journal.close();
    }
  }
  if (signal?.aborted && !summary.incomplete) summary.incomplete = 'aborted';
  return summary;
}

/** Passes through the objects `keep` accepts, counting as it goes. */
async function* countListed(source: AsyncIterable<ObjectSummary>, keep: (o: ObjectSummary) => boolean): AsyncGenerator<ObjectSummary> {
  for await (const o of source) if (keep(o)) yield o;
}

async function headSummary(store: BlobStore, key: string, signal: AbortSignal | undefined): Promise<ObjectSummary | undefined> {
  try {
    const m = await store.head(key, { signal });
    return { key, size: m.size, etag: m.etag, lastModified: m.lastModified, checksums: m.checksums };
  } catch (e) {
    if (isCloudmuxError(e, 'NotFound')) return undefined;
    throw e;
  }
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
    const why = timeout.aborted ? `no answer within ${timeoutMs / 1000} s` : oneLine(e instanceof Error ? e.message : String(e));
    throw new CloudmuxError(code, `cannot use the ${role} ${name} (${code}): ${why}`, { cause: e, provider: store.provider, retryable: false });
  }
}

function describe(e: unknown): string {
  if (isCloudmuxError(e)) return `${e.code}: ${oneLine(e.message)}`;
  return oneLine(e instanceof Error ? e.message : String(e));
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim().slice(0, 500);
}
