import { describeError, isCloudmuxError, isRetryable, throwIfAborted } from '../core/index.js';
import type { BlobStore, ObjectSummary } from '../core/index.js';
import { hashObject, type ChecksumMode } from './copier.js';
import { backoff, compareObjects, keyFilter, listResumable, mergeListings, type Comparison } from './plan.js';

export interface VerifyOptions {
  include?: string[];
  exclude?: string[];
  /** How contents are compared; default `auto` (digests both sides know, reading only when none is shared). */
  checksum?: ChecksumMode;
  /** Read and hash both sides of every object, also catching bytes that rotted behind a recorded digest. */
  download?: boolean;
  /** Comparisons in flight. Default 16. */
  concurrency?: number;
  /** Retries per object on Throttled/Transient. Default 8. */
  retries?: number;
  signal?: AbortSignal;
  onEvent?(event: VerifyEvent): void;
}

export type VerifyOutcome = 'match' | 'differ' | 'only-in-a' | 'only-in-b' | 'error';

export interface VerifyEvent {
  key: string;
  outcome: VerifyOutcome;
  /** What decided a match or difference (`sha256`, `crc32c`, `size`, `reread-sha256`, `download`…). */
  by?: string;
  reason?: string;
}

export interface VerifyReport {
  matching: number;
  differing: number;
  /** Present in `a` only (missing in `b`). */
  onlyInA: number;
  /** Present in `b` only (missing in `a`). */
  onlyInB: number;
  errors: number;
  /** Matches per deciding method, e.g. `{ sha256: 10, 'size-only': 2 }`. */
  matchedBy: Record<string, number>;
  /** The first 1000 differences, missing keys and errors. */
  problems: VerifyEvent[];
  durationMs: number;
}

/** True when the report shows no difference of any kind. */
export function treesMatch(r: VerifyReport): boolean {
  return r.differing === 0 && r.onlyInA === 0 && r.onlyInB === 0 && r.errors === 0;
}

/**
 * Compares two trees like `rclone check`: keys missing on either side, objects that differ
 * (size, then digests; reading only when the sides share no digest, or always with `download`),
 * and matching ones. Both listings are merge-joined in UTF-8 byte order in bounded memory.
 */
export async function verifyTrees(a: BlobStore, b: BlobStore, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const started = Date.now();
  const mode = opts.checksum ?? 'auto';
  const concurrency = Math.max(1, opts.concurrency ?? 16);
  const retries = opts.retries ?? 8;
  const wanted = keyFilter(opts.include, opts.exclude);
  const signal = opts.signal;
  const report: VerifyReport = { matching: 0, differing: 0, onlyInA: 0, onlyInB: 0, errors: 0, matchedBy: {}, problems: [], durationMs: 0 };
  const record = (e: VerifyEvent): void => {
    if (e.outcome === 'match') {
      report.matching++;
      report.matchedBy[e.by ?? '?'] = (report.matchedBy[e.by ?? '?'] ?? 0) + 1;
    } else {
      if (e.outcome === 'differ') report.differing++;
      else if (e.outcome === 'only-in-a') report.onlyInA++;
      else if (e.outcome === 'only-in-b') report.onlyInB++;
      else report.errors++;
      if (report.problems.length < 1000) report.problems.push(e);
    }
    opts.onEvent?.(e);
  };

  const compare = async (x: ObjectSummary, y: ObjectSummary): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      try {
        throwIfAborted(signal);
        const c = opts.download ? await compareByDownload(a, x, b, y, signal) : await compareObjects(a, x, b, y, mode, signal);
        record({ key: x.key, outcome: c.same ? 'match' : 'differ', by: c.by, reason: c.reason });
        return;
      } catch (e) {
        if (signal?.aborted) throw e;
        if ((isRetryable(e) || isCloudmuxError(e, 'PreconditionFailed')) && attempt < retries) {
          await backoff(attempt + 1, e, signal);
          continue;
        }
        if (isCloudmuxError(e, 'NotFound')) {
          record({ key: x.key, outcome: 'differ', reason: 'deleted while verifying' });
          return;
        }
        record({ key: x.key, outcome: 'error', reason: describeError(e) });
        return;
      }
    }
  };

  const running = new Set<Promise<void>>();
  try {
    for await (const m of mergeListings(listResumable(a, { signal }), listResumable(b, { signal }))) {
      if (!wanted(m.key)) continue;
      if (!m.dst) record({ key: m.key, outcome: 'only-in-a' });
      else if (!m.src) record({ key: m.key, outcome: 'only-in-b' });
      else {
        while (running.size >= concurrency) await Promise.race(running);
        const p: Promise<void> = compare(m.src, m.dst).catch(() => {}).finally(() => running.delete(p));
        running.add(p);
      }
    }
  } finally {
    await Promise.allSettled([...running]);
  }
  throwIfAborted(signal);
  report.durationMs = Date.now() - started;
  return report;
}

/** Hashes both objects and also checks each against its own recorded SHA-256 (bit rot behind the store). */
async function compareByDownload(a: BlobStore, x: ObjectSummary, b: BlobStore, y: ObjectSummary, signal?: AbortSignal): Promise<Comparison> {
  if (x.size !== y.size) return { same: false, by: 'size', reason: `size ${x.size} vs ${y.size}` };
  const [ha, hb] = await Promise.all([hashObject(a, x.key, { signal }), hashObject(b, y.key, { signal })]);
  for (const [side, h] of [['a', ha], ['b', hb]] as const) {
    const recorded = h.meta.checksums.sha256;
    if (recorded && recorded !== h.checksums.sha256) return { same: false, by: 'download', reason: `${side}'s bytes do not match its recorded sha256` };
    if (h.bytes !== h.meta.size) return { same: false, by: 'download', reason: `${side} returned ${h.bytes} of ${h.meta.size} bytes` };
  }
  if (ha.checksums.sha256 !== hb.checksums.sha256) return { same: false, by: 'download', reason: 'sha256 differs (read)' };
  return { same: true, by: 'download' };
}
