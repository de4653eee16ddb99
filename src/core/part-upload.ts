import { retryInPlace, type Backoff } from './backoff.js';
import type { MultiHasher } from './checksums.js';
import { CloudmuxError, ProviderError, abortedError, throwIfAborted } from './errors.js';

/**
 * The one engine for multi-part writes: S3 multipart uploads, Azure staged blocks, GCS resumable
 * chunks and the resumable copy all read their parts, send them, retry and abort through here.
 *
 * Two pieces: a {@link PartSource} cuts a byte stream into parts held in pooled buffers, hashing
 * every byte in order as it arrives; {@link uploadParts} sends those parts with bounded
 * concurrency, retries a failed part in place (its bytes are in memory, so it is replayable)
 * through the one backoff, reports progress, and on failure or abort stops the others and waits
 * for them, so nothing is left writing when it returns.
 */

/** Part sizes: one size, or a size per 0-based part index (Azure grows its blocks). */
export type PartSizing = number | ((index: number) => number);

export interface PartSourceOptions {
  partSize: PartSizing;
  /** Hashes every byte in order as it is read (the whole object's digests); none when resuming past a kept prefix. */
  hasher?: MultiHasher;
  signal?: AbortSignal;
  /** For errors. */
  provider: string;
  key?: string;
  /**
   * Cut large parts into SharedArrayBuffer-backed buffers, so that a worker thread can hash them
   * where they lie (see part-digests.ts). Parts of at most 1 MiB stay in ordinary memory.
   */
  shared?: boolean;
}

/**
 * Cuts a byte stream into parts of exactly the part size (the last may be shorter), copying each
 * byte once into pooled buffers. Buffers are recycled once their part's request has settled (the
 * caller says so with {@link recycle}): fresh 8–64 MiB buffers per part are external memory V8
 * collects late, and an HTTP layer that keeps a reference to the last body sent per keep-alive
 * socket would pin one extra part per socket. Memory: parts in flight + the one being filled.
 *
 * A failure of the body itself (not a CloudmuxError from another store) is ProviderError
 * "reading the body failed".
 */
/** Bytes of a part held as read chunks before a pooled part-size buffer is taken (see {@link PartSource.next}). */
const SMALL_PART = 1024 * 1024;

/**
 * Shared part buffers kept between uploads, up to this many bytes: a migration of many large
 * objects then cuts each object's parts into memory already mapped, instead of fresh pages (a page
 * fault per 4 KiB; ~1 ms per MiB copied into fresh memory on the 2-core test VM).
 */
const SPARE_SHARED_BYTES = 64 * 1024 * 1024;
const spareShared = new Map<number, Buffer[]>();
let spareBytes = 0;

function takeSpare(size: number): Buffer | undefined {
  const b = spareShared.get(size)?.pop();
  if (b) spareBytes -= b.byteLength;
  return b;
}

function giveSpare(b: Buffer): void {
  if (spareBytes + b.byteLength > SPARE_SHARED_BYTES) return;
  const list = spareShared.get(b.byteLength) ?? [];
  list.push(b);
  spareShared.set(b.byteLength, list);
  spareBytes += b.byteLength;
}

export class PartSource {
  private readonly source: AsyncIterator<Buffer>;
  private readonly sizing: (index: number) => number;
  private readonly free = new Map<number, Buffer[]>();
  private readonly pooled = new WeakSet<ArrayBufferLike>();
  private readonly pushedBack: Buffer[] = [];
  private pending: Buffer | undefined;
  private done = false;
  private index = 0;
  /** Bytes read from the body so far. */
  bytes = 0;

  constructor(body: AsyncIterable<Buffer>, private readonly opts: PartSourceOptions) {
    this.source = body[Symbol.asyncIterator]();
    const size = opts.partSize;
    this.sizing = typeof size === 'number' ? () => size : size;
  }

  /** Size of the part at 0-based `index`. */
  sizeAt(index: number): number {
    return this.sizing(index);
  }

  private async pull(): Promise<Buffer | undefined> {
    if (this.pending) {
      const p = this.pending;
      this.pending = undefined;
      return p;
    }
    if (this.done) return undefined;
    throwIfAborted(this.opts.signal, { provider: this.opts.provider, key: this.opts.key });
    let r: IteratorResult<Buffer>;
    try {
      r = await this.source.next();
    } catch (e) {
      if (e instanceof CloudmuxError) throw e;
      throw new ProviderError(`reading the body failed: ${(e as Error)?.message ?? String(e)}`, { provider: this.opts.provider, key: this.opts.key, cause: e });
    }
    if (r.done) {
      this.done = true;
      return undefined;
    }
    if (r.value.byteLength === 0) return this.pull();
    this.opts.hasher?.update(r.value);
    this.bytes += r.value.byteLength;
    return r.value;
  }

  private allocate(size: number): Buffer {
    const reused = this.free.get(size)?.pop() ?? (this.opts.shared ? takeSpare(size) : undefined);
    if (reused) {
      this.pooled.add(reused.buffer);
      return reused;
    }
    const buf = this.opts.shared ? Buffer.from(new SharedArrayBuffer(size)) : Buffer.allocUnsafeSlow(size);
    this.pooled.add(buf.buffer);
    return buf;
  }

  /** Hands a part's memory back once nothing will read it again (its request has settled). */
  recycle(part: Buffer): void {
    if (!this.pooled.has(part.buffer)) return;
    const whole = Buffer.from(part.buffer, 0, part.buffer.byteLength);
    const list = this.free.get(whole.byteLength) ?? [];
    list.push(whole);
    this.free.set(whole.byteLength, list);
  }

  /** Puts a part read with {@link next} back in front (a driver that looked ahead to choose single-shot or multipart). */
  pushBack(part: Buffer): void {
    this.pushedBack.push(part);
  }

  /**
   * The next part, or undefined when the body is exhausted. The first {@link SMALL_PART} bytes of
   * a part are held as the chunks read; only a part that grows past it gets a pooled part-size
   * buffer. A small body (the common case: most puts of a sync are a few KiB) then costs its own
   * size, not a fresh 8–64 MiB buffer per put, whose external memory drove V8 into full
   * collections (5 s of GC in a 500-file sync through the router, bench/sync.ts).
   */
  async next(): Promise<Buffer | undefined> {
    const back = this.pushedBack.shift();
    if (back) return back;
    const size = this.sizing(this.index);
    let buf: Buffer | undefined;
    const held: Buffer[] = [];
    let have = 0;
    while (have < size) {
      const c = await this.pull();
      if (!c) break;
      const take = Math.min(size - have, c.byteLength);
      if (take < c.byteLength) this.pending = c.subarray(take);
      const piece = take < c.byteLength ? c.subarray(0, take) : c;
      if (!buf && have + take <= SMALL_PART) {
        held.push(piece);
        have += take;
        continue;
      }
      if (!buf) {
        buf = this.allocate(size);
        let at = 0;
        for (const h of held.splice(0)) at += h.copy(buf, at);
      }
      piece.copy(buf, have);
      have += take;
    }
    if (have === 0) return undefined;
    this.index++;
    // Copied (concat always copies): a source may reuse the chunks it handed out.
    if (!buf) return Buffer.concat(held, have);
    return have === size ? buf : buf.subarray(0, have);
  }

  /** True when no byte is left beyond the parts pushed back (reads ahead one chunk to know). */
  async atEnd(): Promise<boolean> {
    if (this.pushedBack.length > 0) return false;
    const c = await this.pull();
    if (!c) return true;
    this.pending = c;
    return false;
  }

  /** Stops reading the body (returns its iterator); idempotent. */
  async close(): Promise<void> {
    // Shared buffers outlive their source: the next upload's parts reuse them (see SPARE_SHARED_BYTES).
    if (this.opts.shared) for (const list of this.free.values()) for (const b of list) giveSpare(b);
    this.free.clear();
    if (this.done) return;
    this.done = true;
    await this.source.return?.(undefined);
  }
}

/** One part as the sender sees it. */
export interface PartToSend<P> {
  /** 1-based part number. */
  number: number;
  bytes: Buffer;
  /** What `prepare` computed for this part (per-part digests), once for all its attempts. */
  prepared: P;
  /** Aborts when the caller aborts, another part failed for good, or this attempt is over. */
  signal: AbortSignal;
  /** 1-based attempt of this part. */
  attempt: number;
}

export interface UploadPartsOptions<P> {
  /** Parts sent at once (1 for a protocol that takes them in order). */
  concurrency: number;
  /** Retries of one part, in place. Errors must be CloudmuxErrors for their retryability to count. */
  backoff: Backoff;
  signal?: AbortSignal;
  /** Number of the first part read from the source. Default 1. */
  firstNumber?: number;
  /** More parts than this is `tooManyParts()`. */
  maxParts?: number;
  tooManyParts?(): CloudmuxError;
  /**
   * Computes what the sender needs per part (digests the provider checks), once per part before
   * its first attempt; `null` means the part is already where it goes (a kept part of a resumed
   * upload): it is not sent and its buffer is recycled. Called in part order as each part is read;
   * a promise (digests computed on a worker thread) is awaited by that part's send only, so the
   * next part is read meanwhile. Not called for a part kept by `holdLast`.
   */
  prepare?(part: { number: number; bytes: Buffer }): P | null | Promise<P | null>;
  /**
   * Keep the last part instead of sending it (a GCS session commits with its last byte, which
   * must carry the whole object's size and digests): it is returned as `held`. Needs concurrency 1.
   */
  holdLast?: boolean;
  /** Bytes a part added once the destination accepted it. */
  onProgress?(bytes: number, part: number): void;
  /** A part failed and will be sent again after `delayMs`. */
  onRetry?(info: { part: number; attempt: number; error: unknown; delayMs: number }): void;
}

export interface UploadPartsResult<R> {
  /** What `send` returned, by part number (skipped parts absent). */
  sent: Map<number, R>;
  /** The last part, with `holdLast` (undefined when the body was empty). */
  held?: { number: number; bytes: Buffer };
  /** Number of the last part read (firstNumber − 1 when the body was empty). */
  lastNumber: number;
}

/**
 * Sends every part the source yields, at most `concurrency` at once, reading the next part while
 * the others are on the wire. A part that fails with a retryable error is sent again in place
 * (the others keep going); one that fails for good stops the rest: their requests are aborted,
 * awaited, and the first error is thrown. The caller's abort ends it with Aborted.
 *
 * Each attempt has its own AbortController linked to the run's (which is linked once to the
 * caller's signal) and unlinked when the attempt ends, so a long upload on a shared signal
 * leaves no listeners behind. A part's buffer is recycled only when its first attempt succeeded:
 * after a failed attempt nothing proves the dead request stopped reading it.
 *
 * # Contract
 * - Parts are read and numbered in order; the source's hasher sees every byte in order.
 * - `send` may be called several times for one part (same bytes, same `prepared`); it must be
 *   idempotent (S3 UploadPart, Azure Put Block and a GCS chunk are).
 * - When it returns, no `send` is running.
 */
export async function uploadParts<P, R>(
  source: PartSource, send: (part: PartToSend<P>) => Promise<R>, opts: UploadPartsOptions<P>,
): Promise<UploadPartsResult<R>> {
  const run = new AbortController();
  const parent = opts.signal;
  const onParentAbort = (): void => run.abort(parent?.reason);
  if (parent?.aborted) throw abortedError(parent);
  parent?.addEventListener('abort', onParentAbort, { once: true });
  const sent = new Map<number, R>();
  const inflight = new Set<Promise<void>>();
  const concurrency = Math.max(1, opts.holdLast ? 1 : opts.concurrency);
  let failure: { error: unknown } | undefined;
  let number = (opts.firstNumber ?? 1) - 1;
  let held: { number: number; bytes: Buffer } | undefined;
  const fail = (error: unknown): void => {
    if (failure) return;
    failure = { error };
    run.abort(error);
  };

  const sendOne = async (n: number, bytes: Buffer, preparing: P | null | Promise<P | null>): Promise<void> => {
    const prepared = await preparing;
    if (prepared === null) {
      source.recycle(bytes);
      return;
    }
    let firstTry = true;
    const r = await retryInPlace(async (attempt) => {
      firstTry = attempt === 1;
      const ac = new AbortController();
      const onRunAbort = (): void => ac.abort(run.signal.reason);
      run.signal.addEventListener('abort', onRunAbort, { once: true });
      try {
        return await send({ number: n, bytes, prepared, signal: ac.signal, attempt });
      } catch (e) {
        ac.abort(); // whatever the failed request still holds goes now
        throw e;
      } finally {
        run.signal.removeEventListener('abort', onRunAbort);
      }
    }, {
      backoff: opts.backoff,
      signal: run.signal,
      onRetry: ({ attempt, error, delayMs }) => opts.onRetry?.({ part: n, attempt, error, delayMs }),
    });
    sent.set(n, r);
    if (firstTry) source.recycle(bytes);
    opts.onProgress?.(bytes.byteLength, n);
  };

  try {
    for (;;) {
      if (failure) break;
      if (parent?.aborted) throw abortedError(parent);
      const bytes = await source.next();
      if (!bytes) break;
      const n = ++number;
      if (opts.maxParts !== undefined && n > opts.maxParts) {
        throw opts.tooManyParts?.() ?? new ProviderError(`more than ${opts.maxParts} parts`, { provider: 'cloudmux' });
      }
      if (opts.holdLast && (await source.atEnd())) {
        held = { number: n, bytes };
        break;
      }
      const prepared = opts.prepare ? opts.prepare({ number: n, bytes }) : (undefined as P);
      if (prepared === null) {
        source.recycle(bytes);
        continue;
      }
      // Its rejection is the part's send's to report; until that send starts, it is not unhandled.
      if (prepared instanceof Promise) prepared.catch(() => {});
      while (inflight.size >= concurrency && !failure) await Promise.race(inflight);
      if (failure) break;
      const task: Promise<void> = sendOne(n, bytes, prepared).catch(fail).finally(() => inflight.delete(task));
      inflight.add(task);
    }
  } catch (e) {
    fail(e);
  } finally {
    await Promise.all(inflight);
    parent?.removeEventListener('abort', onParentAbort);
  }
  if (failure) {
    if (parent?.aborted) throw abortedError(parent);
    throw failure.error;
  }
  return { sent, lastNumber: number, ...(held ? { held } : {}) };
}
