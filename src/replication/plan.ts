import picomatch from 'picomatch';
import { Backoff, ProviderError, compareKeys, isCloudmuxError, isRetryable, throwIfAborted } from '../core/index.js';
import type { BlobStore, Checksums, ObjectMeta, ObjectSummary } from '../core/index.js';
import { compareChecksums, hashObject, type ChecksumMode } from './copier.js';

/** One key of two merged listings: the object on the left (source), the right (destination), or both. */
export interface MergedEntry {
  key: string;
  src?: ObjectSummary;
  dst?: ObjectSummary;
}

/** Keeps keys that match an include glob (when any are given) and no exclude glob. Globs match the whole key; `**` crosses `/`. */
export function keyFilter(include: readonly string[] = [], exclude: readonly string[] = []): (key: string) => boolean {
  const inc = include.length > 0 ? picomatch(include as string[], { dot: true }) : undefined;
  const exc = exclude.length > 0 ? picomatch(exclude as string[], { dot: true }) : undefined;
  return (key) => (!exc || !exc(key)) && (!inc || inc(key));
}

export interface ListingOptions {
  prefix?: string;
  /** Resume after this key (exclusive). */
  startAfter?: string;
  signal?: AbortSignal;
  /** Listing pages are retried from the last key seen this many times in a row on Throttled/Transient. Default 8. */
  retries?: number;
  pageSize?: number;
}

/**
 * The objects of a store in UTF-8 byte order, resuming from the last key seen when a page fails
 * with a retryable error (so a 10% fault rate does not restart a 10-million-key listing). Memory
 * stays at one page.
 */
export async function* listResumable(store: BlobStore, opts: ListingOptions = {}): AsyncGenerator<ObjectSummary> {
  let after = opts.startAfter;
  let failures = 0;
  const limit = opts.retries ?? 8;
  for (;;) {
    try {
      let previous: string | undefined;
      for await (const item of store.list({ prefix: opts.prefix, startAfter: after, signal: opts.signal, pageSize: opts.pageSize })) {
        if (item.type !== 'object') continue;
        // The merge-join needs byte order; a store that breaks it would make keys look missing.
        if (previous !== undefined && compareKeys(item.key, previous) <= 0) {
          throw new ProviderError(`${store.toString()} listed ${JSON.stringify(item.key)} after ${JSON.stringify(previous)}: not UTF-8 byte order`, { provider: store.provider, key: item.key });
        }
        previous = item.key;
        // After a restart, a store that ignores startAfter repeats keys already passed on.
        if (after !== undefined && compareKeys(item.key, after) <= 0) continue;
        failures = 0;
        after = item.key;
        const { type: _t, ...summary } = item;
        yield summary;
      }
      return;
    } catch (e) {
      if (!isRetryable(e) || ++failures > limit) throw e;
      throwIfAborted(opts.signal);
      await backoff(failures, e, opts.signal);
    }
  }
}

/**
 * Pulls up to `depth` items ahead of the consumer in the background, so two listings proceed
 * concurrently while the merge waits on the slower one. Memory: `depth` summaries.
 */
export function prefetch<T>(source: AsyncIterable<T>, depth = 1000): AsyncIterableIterator<T> {
  const it = source[Symbol.asyncIterator]();
  const buffer: IteratorResult<T>[] = [];
  let failure: { error: unknown } | undefined;
  let pumping = false;
  let wake: (() => void) | undefined;
  let done = false;

  const pump = async (): Promise<void> => {
    try {
      while (!done && buffer.length < depth) {
        const r = await it.next();
        buffer.push(r);
        wake?.();
        if (r.done) {
          done = true;
          return;
        }
      }
    } catch (e) {
      failure = { error: e };
      done = true;
      wake?.();
    } finally {
      pumping = false;
    }
  };
  const ensurePump = (): void => {
    if (pumping || done || buffer.length >= depth) return;
    pumping = true; // set before the call: pump may finish synchronously
    void pump();
  };

  const iterator: AsyncIterableIterator<T> = {
    async next(): Promise<IteratorResult<T>> {
      ensurePump();
      while (buffer.length === 0) {
        if (failure) throw failure.error;
        if (done) return { done: true, value: undefined };
        await new Promise<void>((r) => {
          wake = r;
        });
        wake = undefined;
      }
      const r = buffer.shift()!;
      ensurePump();
      return r;
    },
    async return(): Promise<IteratorResult<T>> {
      done = true;
      await it.return?.();
      return { done: true, value: undefined };
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}

/**
 * Merge-joins two sorted listings (UTF-8 byte order) into one stream of keys, listing both sides
 * concurrently. Memory is bounded by the prefetch depth of each side, never by the bucket size.
 */
export async function* mergeListings(left: AsyncIterable<ObjectSummary>, right: AsyncIterable<ObjectSummary>, depth = 1000): AsyncGenerator<MergedEntry> {
  const a = prefetch(left, depth);
  const b = prefetch(right, depth);
  try {
    let [x, y] = await Promise.all([a.next(), b.next()]);
    while (!x.done || !y.done) {
      if (y.done || (!x.done && compareKeys(x.value.key, y.value.key) < 0)) {
        yield { key: x.value!.key, src: x.value };
        x = await a.next();
      } else if (x.done || compareKeys(x.value.key, y.value.key) > 0) {
        yield { key: y.value.key, dst: y.value };
        y = await b.next();
      } else {
        yield { key: x.value.key, src: x.value, dst: y.value };
        [x, y] = await Promise.all([a.next(), b.next()]);
      }
    }
  } finally {
    await Promise.allSettled([a.return?.(), b.return?.()]);
  }
}

/** The outcome of comparing one object on two sides. */
export interface Comparison {
  same: boolean;
  /** What decided it: `size`, `sha256`, `crc32c`, `md5`, `reread-sha256`, `size-only`, `unreadable` (the destination's object failed its integrity check). */
  by: string;
  /** Why they differ, for reports. */
  reason?: string;
  /** The source's SHA-256 when it was learned on the way. */
  srcSha256?: string;
}

/**
 * Decides whether the object at `srcKey` in `src` and at `dstKey` in `dst` hold the same bytes,
 * as cheaply as the mode allows: sizes first, then digests from the listings, then from `head`
 * (where `cloudmux_sha256` lives), and only when the sides share no digest at all, by reading
 * (the destination's SHA-256 is usually known, so only the source is read).
 */
export async function compareObjects(
  src: BlobStore, s: ObjectSummary, dst: BlobStore, d: ObjectSummary, mode: ChecksumMode, signal?: AbortSignal,
): Promise<Comparison> {
  if (s.size !== d.size) return { same: false, by: 'size', reason: `size ${s.size} vs ${d.size}` };
  if (mode === 'size-only') return { same: true, by: 'size-only' };
  let a: Checksums = s.checksums ?? {};
  let b: Checksums = d.checksums ?? {};
  let cmp = compareChecksums(a, b, mode);
  if (cmp.mismatch) return { same: false, by: cmp.mismatch, reason: `${cmp.mismatch} differs` };
  if (cmp.matched.length > 0) return { same: true, by: cmp.matched.join('+'), srcSha256: a.sha256 };
  const [srcMeta, dstHead] = await Promise.all([src.head(s.key, { signal }), dst.head(d.key, { signal }).catch(unreadable)]);
  // A destination object that cannot be read as valid (corrupt, or plaintext where the destination
  // is encrypted) holds no proven copy of the source: it differs, and the copy replaces it. The
  // same failure on the source side is the source's problem and stays an error.
  if ('unreadable' in dstHead) return differsUnreadable(dstHead, srcMeta.checksums.sha256 ?? a.sha256);
  const dstMeta: ObjectMeta = dstHead;
  a = { ...a, ...srcMeta.checksums };
  b = { ...b, ...dstMeta.checksums };
  if (srcMeta.size !== dstMeta.size) return { same: false, by: 'size', reason: `size ${srcMeta.size} vs ${dstMeta.size}` };
  cmp = compareChecksums(a, b, mode);
  if (cmp.mismatch) return { same: false, by: cmp.mismatch, reason: `${cmp.mismatch} differs` };
  if (cmp.matched.length > 0) return { same: true, by: cmp.matched.join('+'), srcSha256: a.sha256 };
  // Nothing shared: hash what is missing a SHA-256 (pinned to the version just inspected).
  const [ha, hb] = await Promise.all([
    a.sha256 ? a : hashObject(src, s.key, { ifMatch: srcMeta.etag, signal }).then((r) => r.checksums),
    b.sha256 ? b : hashObject(dst, d.key, { ifMatch: dstMeta.etag, signal }).then((r): Checksums | Unreadable => r.checksums, unreadable),
  ]);
  if ('unreadable' in hb) return differsUnreadable(hb, ha.sha256);
  const same = ha.sha256 === hb.sha256;
  return same ? { same, by: 'reread-sha256', srcSha256: ha.sha256 } : { same, by: 'reread-sha256', reason: 'sha256 differs (read)', srcSha256: ha.sha256 };
}

interface Unreadable {
  unreadable: string;
}

function differsUnreadable(u: Unreadable, srcSha256: string | undefined): Comparison {
  return { same: false, by: 'unreadable', reason: `the destination's object is unreadable (${u.unreadable})`, ...(srcSha256 ? { srcSha256 } : {}) };
}

function unreadable(e: unknown): Unreadable {
  if (isCloudmuxError(e, 'IntegrityError')) return { unreadable: e.message };
  throw e;
}

/** Waits of listing, compare and copy retries: full jitter under 50 ms doubling to 5 s (the one backoff). */
export const RETRY_BACKOFF = new Backoff({ baseMs: 50, capMs: 5000 });

/**
 * Waits before retry `attempt` (1-based) after `error`, honouring a provider's Retry-After. Resolves
 * early, without throwing, when `signal` fires: the caller's next step sees the aborted signal.
 */
export async function backoff(attempt: number, error: unknown, signal?: AbortSignal): Promise<void> {
  await RETRY_BACKOFF.wait(attempt, error, signal).catch(() => undefined);
}
