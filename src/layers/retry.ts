import { createHash } from 'node:crypto';
import { pipeline, type Readable } from 'node:stream';
import pRetry, { AbortError as StopRetrying } from 'p-retry';
import {
  Backoff, IntegrityError, retryAfterOf, TransientError, abortedError, sleep, afterPrefix, bodyBytes, compareKeys, isCloudmuxError, isReplayableBody,
  isRetryable as isRetryableError, verifyingTransform,
} from '../core/index.js';
import type {
  BlobStore, Body, CopyOptions, DeleteManyResult, GetOptions, GetResult, ListItem, ListOptions, ObjectMeta, PutOptions,
  SignalOptions, DeleteOptions, UpdateMetadataOptions,
} from '../core/index.js';
import { ForwardingStore, type StoreOp } from './forwarding-store.js';
import { RelayStream, readerOf, type ChunkSource } from './relay-stream.js';
import { isReopenable } from './reopenable-body.js';

export interface RetryOptions {
  /** Retries after the first attempt. Default 10. */
  retries?: number;
  /** Backoff base: the n-th retry waits a random time in [0, min(maxDelayMs, baseDelayMs·2^(n-1))) ("full jitter"). Default 100. */
  baseDelayMs?: number;
  /** Cap of one backoff wait. Default 15 000. */
  maxDelayMs?: number;
  /** Total time one operation may spend, attempts and waits included; no retry starts past it. Default 180 000. */
  budgetMs?: number;
  /** Longest Retry-After (CloudmuxError.retryAfterMs) honoured; a longer ask fails at once. Default 60 000. */
  maxRetryAfterMs?: number;
  /** Which errors a retry may cure. Default: `isRetryable` (Throttled, Transient). */
  isRetryable?(error: unknown): boolean;
  /** Random source in [0, 1), for reproducible tests. Default Math.random. */
  random?(): number;
}

export interface RetryEvent {
  op: StoreOp;
  key?: string;
  /** The attempt that failed (1-based); for stream resumptions, failures in a row without progress. */
  attempt: number;
  error: unknown;
  /** How long cloudmux waits before the next attempt. */
  delayMs: number;
}

export interface ResumeEvent {
  op: 'get' | 'list';
  key?: string;
  error: unknown;
  /** get: absolute byte offset the ranged re-get starts at. */
  offset?: number;
  /** list: the key (or prefix) the listing continues after. */
  after?: string;
}

export interface RetryEvents {
  /** An operation failed and will be tried again after `delayMs`. */
  retry: RetryEvent;
  /** A get body or a listing broke mid-way and continues from where it stopped. */
  resume: ResumeEvent;
  /** An operation failed for good with an error a retry might have cured (retries or budget spent). */
  giveUp: RetryEvent;
}

/**
 * Retries what is safe to repeat, with exponential backoff and full jitter, honouring the
 * provider's Retry-After, within a retry count and a time budget (p-retry underneath).
 *
 * # Contract
 * - Only errors `isRetryable` accepts are retried (Throttled, Transient); the caller's abort stops
 *   everything at once with Aborted.
 * - get/head/list/delete/deleteMany/copy/updateMetadata are retried. A put is retried only when its
 *   body can be replayed: a string or Uint8Array, or a ReopenableBody (`reopenable(() => source)`);
 *   a one-shot stream is tried once. presign and close are never retried.
 * - A conditional put (ifNoneMatch/ifMatch) whose earlier attempt may have landed is confirmed, not
 *   reported as a conflict: if the retry meets AlreadyExists/PreconditionFailed and the stored
 *   object's SHA-256 is the body's, the put succeeded (in-memory bodies only).
 * - get returns once the first chunk of the body has arrived; a body that breaks before it is
 *   retried as a whole get.
 * - A get body that breaks later (reset, premature end) continues with a ranged re-get of the remaining
 *   bytes pinned to the first response's etag (ifMatch), so the caller sees one uninterrupted
 *   stream of the version it started reading. If the object changed in between, the stream fails
 *   with a non-retryable Transient error. With `verify`, the whole stream is hashed here and
 *   compared at its end (a flipped byte is an IntegrityError, never good data).
 * - A listing that breaks continues after the last item it yielded (startAfter), never repeating or
 *   skipping one.
 * - Stream resumptions are retried while they make progress; `retries` failures in a row without a
 *   byte (or item) in between end the stream with the last error.
 */
export class RetryStore extends ForwardingStore<RetryEvents> {
  protected readonly layerName = 'Retry';
  private readonly retries: number;
  private readonly budgetMs: number;
  private readonly maxRetryAfterMs: number;
  private readonly retryable: (error: unknown) => boolean;
  private readonly backoff: Backoff;

  constructor(inner: BlobStore, options: RetryOptions = {}) {
    super(inner);
    this.retries = options.retries ?? 10;
    this.budgetMs = options.budgetMs ?? 180_000;
    this.maxRetryAfterMs = options.maxRetryAfterMs ?? 60_000;
    this.retryable = options.isRetryable ?? isRetryableError;
    this.backoff = new Backoff({
      baseMs: options.baseDelayMs ?? 100, capMs: options.maxDelayMs ?? 15_000, attempts: this.retries + 1,
      maxRetryAfterMs: this.maxRetryAfterMs, ...(options.random ? { random: () => options.random!() } : {}),
    });
  }

  protected override describe(): string {
    return '';
  }

  /** The wait before retry number `n` (1-based) after `error` (the one backoff, src/core/backoff.ts). */
  delayFor(n: number, error: unknown): number {
    return this.backoff.delay(n, error);
  }

  /** Runs `attempt` until it succeeds, fails for good, or the budget runs out. */
  private run<T>(op: StoreOp, key: string | undefined, signal: AbortSignal | undefined, attempt: () => Promise<T>): Promise<T> {
    const started = performance.now();
    return pRetry(async () => {
      if (signal?.aborted) throw new StopRetrying(abortedError(signal, { provider: this.provider, key }));
      try {
        return await attempt();
      } catch (e) {
        if (signal?.aborted) throw new StopRetrying(abortedError(signal, { provider: this.provider, key }));
        if (!this.retryable(e)) throw new StopRetrying(asError(e));
        throw e;
      }
    }, {
      retries: this.retries,
      // p-retry's own (non-jittered) delay is off: shouldRetry waits the full-jitter delay instead.
      minTimeout: 0,
      maxRetryTime: this.budgetMs,
      shouldRetry: async ({ error, attemptNumber }) => {
        const delayMs = this.delayFor(attemptNumber, error);
        const asked = retryAfterOf(error);
        const left = this.budgetMs - (performance.now() - started);
        if (delayMs >= left || (asked !== undefined && asked > this.maxRetryAfterMs)) {
          this.emit('giveUp', { op, key, attempt: attemptNumber, error, delayMs });
          return false;
        }
        this.emit('retry', { op, key, attempt: attemptNumber, error, delayMs });
        await sleep(delayMs, signal);
        return true;
      },
      onFailedAttempt: ({ error, attemptNumber, retriesLeft }) => {
        if (retriesLeft === 0) this.emit('giveUp', { op, key, attempt: attemptNumber, error, delayMs: 0 });
      },
    });
  }

  override async put(key: string, body: Body, opts: PutOptions = {}): Promise<ObjectMeta> {
    if (!isReplayableBody(body) && !isReopenable(body)) return this.inner.put(key, body, opts);
    const conditional = opts.ifNoneMatch !== undefined || opts.ifMatch !== undefined;
    let mayHaveLanded = false;
    return this.run('put', key, opts.signal, async () => {
      try {
        return await this.inner.put(key, body, opts);
      } catch (e) {
        if (mayHaveLanded && conditional && isReplayableBody(body) && (isCloudmuxError(e, 'AlreadyExists') || isCloudmuxError(e, 'PreconditionFailed'))) {
          const landed = await this.ownWrite(key, body, opts.signal);
          if (landed) return landed;
        }
        if (this.retryable(e)) mayHaveLanded = true;
        throw e;
      }
    });
  }

  /** The stored object's meta if it holds exactly `body` (an earlier attempt of ours landed). */
  private async ownWrite(key: string, body: Uint8Array | string, signal: AbortSignal | undefined): Promise<ObjectMeta | undefined> {
    try {
      const meta = await this.inner.head(key, { signal });
      const sha256 = createHash('sha256').update(bodyBytes(body)).digest('hex');
      return meta.checksums.sha256 === sha256 ? meta : undefined;
    } catch {
      return undefined;
    }
  }

  override head(key: string, opts: SignalOptions = {}): Promise<ObjectMeta> {
    return this.run('head', key, opts.signal, () => this.inner.head(key, opts));
  }

  override delete(key: string, opts: DeleteOptions = {}): Promise<void> {
    return this.run('delete', key, opts.signal, () => this.inner.delete(key, opts));
  }

  override copy(src: string, dst: string, opts: CopyOptions = {}): Promise<ObjectMeta> {
    return this.run('copy', dst, opts.signal, () => this.inner.copy(src, dst, opts));
  }

  override updateMetadata(key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
    return this.run('updateMetadata', key, opts.signal, () => this.inner.updateMetadata(key, opts));
  }

  /** Retries the whole batch on a retryable failure, then only the keys that failed retryably. */
  override async deleteMany(keys: Iterable<string>, opts: SignalOptions = {}): Promise<DeleteManyResult> {
    const all = [...keys];
    let result = await this.run('deleteMany', undefined, opts.signal, () => this.inner.deleteMany(all, opts));
    for (let round = 1; round <= this.retries; round++) {
      const again = result.errors.filter((x) => this.retryable(x.error));
      if (again.length === 0) break;
      const delayMs = this.delayFor(round, again[0]!.error);
      this.emit('retry', { op: 'deleteMany', attempt: round, error: again[0]!.error, delayMs });
      await sleep(delayMs, opts.signal);
      const next = await this.run('deleteMany', undefined, opts.signal, () => this.inner.deleteMany(again.map((x) => x.key), opts));
      result = {
        deleted: [...result.deleted, ...next.deleted],
        errors: [...result.errors.filter((x) => !this.retryable(x.error)), ...next.errors],
      };
    }
    return result;
  }

  override async get(key: string, opts: GetOptions = {}): Promise<GetResult> {
    const verify = opts.verify === true && opts.range === undefined;
    // Verification moves here: the inner store cannot verify a stream stitched from ranged reads.
    const innerOpts: GetOptions = { ...opts, verify: false };
    // The first chunk is read inside the retried call: a body that breaks before its first byte is
    // retried as a whole get (fresh meta), not resumed against a version the caller never saw a byte of.
    const { first, reader, head } = await this.run('get', key, opts.signal, async () => {
      const r = await this.inner.get(key, innerOpts);
      const rd = readerOf(r.body);
      try {
        return { first: r, reader: rd, head: await rd.read() };
      } catch (e) {
        rd.destroy();
        throw e;
      }
    });
    const start = first.range?.offset ?? 0;
    const total = first.range?.length ?? first.meta.size;
    const source = this.resumingSource(key, opts, first, reader, head, start, total);
    let body: Readable = new RelayStream(source);
    if (verify) {
      const verifier = verifyingTransform(first.meta.checksums, { expectedSize: first.meta.size, provider: this.provider, key });
      body = pipeline(body, verifier, () => {});
    }
    return { ...first, body };
  }

  private resumingSource(key: string, opts: GetOptions, first: GetResult, firstReader: ChunkSource, head: Buffer | null, start: number, total: number): ChunkSource {
    let reader = firstReader;
    let pending: Buffer | null | undefined = head;
    let delivered = 0;
    let failuresInARow = 0;
    let destroyed = false;
    const etag = first.meta.etag;
    const signal = opts.signal;
    const reopen = async (cause: unknown): Promise<void> => {
      failuresInARow++;
      if (failuresInARow > this.retries) throw cause;
      const delayMs = this.delayFor(failuresInARow, cause);
      const offset = start + delivered;
      this.emit('resume', { op: 'get', key, error: cause, offset });
      await sleep(delayMs, signal);
      let next: GetResult;
      try {
        next = await this.run('get', key, signal, () => this.inner.get(key, { signal, ifMatch: etag, range: { offset, length: total - delivered } }));
      } catch (e) {
        if (isCloudmuxError(e, 'PreconditionFailed') || isCloudmuxError(e, 'NotFound')) {
          throw new TransientError(`${key} changed while it was being read; cannot resume at byte ${offset}`, { provider: this.provider, key, retryable: false, cause: e });
        }
        throw e;
      }
      if (next.meta.etag !== etag || (next.range && next.range.offset !== offset)) {
        next.body.destroy();
        throw new TransientError(`${key} changed while it was being read; cannot resume at byte ${offset}`, { provider: this.provider, key, retryable: false });
      }
      if (destroyed) {
        next.body.destroy();
        return;
      }
      reader = readerOf(next.body);
    };
    return {
      read: async () => {
        for (;;) {
          let chunk: Buffer | null;
          try {
            if (pending !== undefined) {
              chunk = pending;
              pending = undefined;
            } else {
              chunk = await reader.read();
            }
            if (chunk === null && delivered < total) {
              throw new TransientError(`body ended after ${delivered} of ${total} bytes`, { provider: this.provider, key });
            }
          } catch (e) {
            if (destroyed || signal?.aborted || !this.retryable(e)) throw e;
            reader.destroy();
            if (delivered >= total) return null;
            await reopen(e);
            continue;
          }
          if (chunk === null) return null;
          if (delivered + chunk.byteLength > total) {
            reader.destroy();
            throw new IntegrityError(`body is longer than the ${total} bytes announced`, { provider: this.provider, key });
          }
          delivered += chunk.byteLength;
          failuresInARow = 0;
          return chunk;
        }
      },
      destroy: (error) => {
        destroyed = true;
        reader.destroy(error);
      },
    };
  }

  override async *list(opts: ListOptions = {}): AsyncGenerator<ListItem> {
    let last: string | undefined;
    let resumeAfter = opts.startAfter;
    let failuresInARow = 0;
    for (;;) {
      const it = this.inner.list({ ...opts, startAfter: resumeAfter })[Symbol.asyncIterator]();
      let finished = false;
      try {
        for (;;) {
          const r = await it.next();
          if (r.done) {
            finished = true;
            return;
          }
          const item = r.value;
          const name = item.type === 'object' ? item.key : item.prefix;
          // A restarted listing repeats the rolled-up prefix it stopped in; never yield anything twice.
          if (last !== undefined && compareKeys(name, last) <= 0) continue;
          last = name;
          resumeAfter = item.type === 'prefix' ? afterPrefix(item.prefix) : item.key;
          failuresInARow = 0;
          yield item;
        }
      } catch (e) {
        finished = true;
        if (opts.signal?.aborted) throw abortedError(opts.signal, { provider: this.provider });
        if (!this.retryable(e)) throw e;
        failuresInARow++;
        if (failuresInARow > this.retries) {
          this.emit('giveUp', { op: 'list', attempt: failuresInARow, error: e, delayMs: 0 });
          throw e;
        }
        const delayMs = this.delayFor(failuresInARow, e);
        this.emit('resume', { op: 'list', error: e, after: last });
        await sleep(delayMs, opts.signal);
      } finally {
        if (!finished) await it.return?.();
      }
    }
  }
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}
