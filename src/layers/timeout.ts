import { TransientError, abortedError, bodyChunks, knownBodySize } from '../core/index.js';
import type {
  BlobStore, Body, CopyOptions, DeleteManyResult, GetOptions, GetResult, ListItem, ListOptions, ObjectMeta, PutOptions,
  SignalOptions, DeleteOptions, UpdateMetadataOptions,
} from '../core/index.js';
import { ForwardingStore, type StoreOp } from './forwarding-store.js';
import { RelayStream, readerOf } from './relay-stream.js';

export interface TimeoutOptions {
  /**
   * Longest time one call may take: until a head/delete/copy/… settles, until a get returns its
   * response (not its whole body), until each page of a listing arrives; for a put, the longest
   * time without progress (the body's next chunk taken, or the answer after the last). Default: none.
   */
  timeoutMs?: number;
  /** Longest wait for the next byte of a get body while its reader is asking for more. Default: none. */
  stallMs?: number;
}

/**
 * Deadlines through AbortSignal. Placed inside RetryStore it bounds each attempt; outside, the
 * whole operation: `Timeout(op) → Retry → Timeout(attempt) → driver`.
 *
 * # Contract
 * - At the deadline the signal handed to the inner store is aborted (so a driver cancels its
 *   request) and the call fails with a retryable Transient error, even if the inner store ignores
 *   the signal. The caller's own abort still fails with Aborted.
 * - A get body with no bytes for `stallMs` while its consumer waits is destroyed with a Transient
 *   error; a slow consumer never counts as a stall.
 * - A listing gets `timeoutMs` per pull of the next item.
 */
export class TimeoutStore extends ForwardingStore {
  protected readonly layerName = 'Timeout';
  private readonly timeoutMs: number | undefined;
  private readonly stallMs: number | undefined;

  constructor(inner: BlobStore, options: TimeoutOptions = {}) {
    super(inner);
    this.timeoutMs = options.timeoutMs;
    this.stallMs = options.stallMs;
  }

  protected override describe(): string {
    const parts = [this.timeoutMs !== undefined ? `${this.timeoutMs}ms` : '', this.stallMs !== undefined ? `stall ${this.stallMs}ms` : ''].filter(Boolean);
    return parts.length ? `${parts.join(', ')}, ` : '';
  }

  /**
   * Runs `fn` with a signal that fires at the caller's abort or at the deadline. With `keep`, the
   * signal outlives the call (a get body keeps using it) and `release` must be called later.
   */
  private async bounded<T>(op: StoreOp, key: string | undefined, signal: AbortSignal | undefined, fn: (signal: AbortSignal) => Promise<T>): Promise<{ value: T; link: Link }> {
    const link = new Link(signal);
    if (this.timeoutMs === undefined) return { value: await fn(link.signal), link };
    const ms = this.timeoutMs;
    const timer = setTimeout(() => link.abort(new TransientError(`${op} timed out after ${ms} ms`, { provider: this.provider, key })), ms);
    try {
      const value = await Promise.race([fn(link.signal), link.aborted]);
      return { value, link };
    } catch (e) {
      link.release();
      throw link.reason(e);
    } finally {
      clearTimeout(timer);
    }
  }

  private async call<T>(op: StoreOp, key: string | undefined, signal: AbortSignal | undefined, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const { value, link } = await this.bounded(op, key, signal, fn);
    link.release();
    return value;
  }

  /**
   * A put's deadline counts from its last progress, not from its start: every chunk the inner
   * store pulls from the body re-arms it, so a 10 GiB upload that keeps moving never times out
   * while one that stops for `timeoutMs` does. In-memory bodies above one chunk are handed on as
   * chunks (with `size`) so their progress shows too; small ones keep their single-shot path.
   */
  override async put(key: string, body: Body, opts: PutOptions = {}): Promise<ObjectMeta> {
    if (this.timeoutMs === undefined) return this.inner.put(key, body, opts);
    const ms = this.timeoutMs;
    const link = new Link(opts.signal);
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => link.abort(new TransientError(`put made no progress for ${ms} ms`, { provider: this.provider, key })), ms);
    };
    const size = opts.size ?? knownBodySize(body);
    const watched = size !== undefined && size <= PROGRESS_CHUNK ? body : progressBody(body, arm);
    arm();
    try {
      return await Promise.race([this.inner.put(key, watched, { ...opts, ...(size !== undefined ? { size } : {}), signal: link.signal }), link.aborted]);
    } catch (e) {
      throw link.reason(e);
    } finally {
      clearTimeout(timer);
      link.release();
    }
  }

  override async get(key: string, opts: GetOptions = {}): Promise<GetResult> {
    const { value, link } = await this.bounded('get', key, opts.signal, (signal) => this.inner.get(key, { ...opts, signal }));
    const stallMs = this.stallMs;
    const source = readerOf(value.body);
    const body = new RelayStream({
      read: () => {
        if (stallMs === undefined) return source.read().catch((e: unknown) => Promise.reject(link.reason(e)));
        return new Promise<Buffer | null>((resolve, reject) => {
          const timer = setTimeout(() => {
            const stalled = new TransientError(`get body stalled: no bytes for ${stallMs} ms`, { provider: this.provider, key });
            link.abort(stalled);
            source.destroy(stalled);
            reject(stalled);
          }, stallMs);
          source.read().then((chunk) => {
            clearTimeout(timer);
            if (chunk === null) link.release();
            resolve(chunk);
          }, (e: unknown) => {
            clearTimeout(timer);
            reject(link.reason(e));
          });
        });
      },
      destroy: (error) => {
        source.destroy(error);
        link.release();
      },
    });
    return { ...value, body };
  }

  override head(key: string, opts: SignalOptions = {}): Promise<ObjectMeta> {
    return this.call('head', key, opts.signal, (signal) => this.inner.head(key, { ...opts, signal }));
  }

  override delete(key: string, opts: DeleteOptions = {}): Promise<void> {
    return this.call('delete', key, opts.signal, (signal) => this.inner.delete(key, { ...opts, signal }));
  }

  override deleteMany(keys: Iterable<string>, opts: SignalOptions = {}): Promise<DeleteManyResult> {
    return this.call('deleteMany', undefined, opts.signal, (signal) => this.inner.deleteMany(keys, { ...opts, signal }));
  }

  override copy(src: string, dst: string, opts: CopyOptions = {}): Promise<ObjectMeta> {
    return this.call('copy', dst, opts.signal, (signal) => this.inner.copy(src, dst, { ...opts, signal }));
  }

  override updateMetadata(key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
    return this.call('updateMetadata', key, opts.signal, (signal) => this.inner.updateMetadata(key, { ...opts, signal }));
  }

  override async *list(opts: ListOptions = {}): AsyncGenerator<ListItem> {
    const link = new Link(opts.signal);
    const it = this.inner.list({ ...opts, signal: link.signal })[Symbol.asyncIterator]();
    let done = false;
    try {
      for (;;) {
        let r: IteratorResult<ListItem>;
        let timer: NodeJS.Timeout | undefined;
        try {
          if (this.timeoutMs !== undefined) {
            const ms = this.timeoutMs;
            timer = setTimeout(() => link.abort(new TransientError(`list page timed out after ${ms} ms`, { provider: this.provider })), ms);
          }
          r = await Promise.race([it.next(), link.aborted]);
        } catch (e) {
          done = true;
          throw link.reason(e);
        } finally {
          clearTimeout(timer);
        }
        if (r.done) {
          done = true;
          return;
        }
        yield r.value;
      }
    } finally {
      if (!done) await it.return?.();
      link.release();
    }
  }
}

/**
 * The signal handed to the inner store: follows the caller's signal, and can be aborted by this
 * layer with its own (Transient) reason. `aborted` rejects when it fires, to race a call that
 * ignores its signal.
 */
class Link {
  private readonly controller = new AbortController();
  private ownReason: Error | undefined;
  readonly aborted: Promise<never>;
  private readonly onCallerAbort = (): void => this.controller.abort(this.caller?.reason);

  constructor(private readonly caller: AbortSignal | undefined) {
    this.aborted = new Promise<never>((_, reject) => {
      this.controller.signal.addEventListener('abort', () => reject(this.reason(undefined)), { once: true });
    });
    this.aborted.catch(() => {});
    if (caller?.aborted) this.onCallerAbort();
    else caller?.addEventListener('abort', this.onCallerAbort, { once: true });
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  abort(reason: Error): void {
    if (this.controller.signal.aborted) return;
    this.ownReason = reason;
    this.controller.abort(reason);
  }

  /** The error a failed call reports: ours at a deadline, Aborted at the caller's abort, else its own. */
  reason(e: unknown): unknown {
    if (this.ownReason) return this.ownReason;
    if (this.caller?.aborted) return abortedError(this.caller);
    return e;
  }

  /** Stops following the caller's signal (the call is over). */
  release(): void {
    this.caller?.removeEventListener('abort', this.onCallerAbort);
  }
}

/** In-memory bodies larger than this are handed on in slices of this size, so a put shows progress. */
const PROGRESS_CHUNK = 1024 * 1024;

/** The body as chunks, calling `onChunk` as the inner store pulls each one. */
async function* progressBody(body: Body, onChunk: () => void): AsyncGenerator<Buffer> {
  for await (const chunk of bodyChunks(body)) {
    for (let i = 0; i < chunk.byteLength; i += PROGRESS_CHUNK) {
      onChunk();
      yield chunk.byteLength <= PROGRESS_CHUNK ? chunk : chunk.subarray(i, i + PROGRESS_CHUNK);
    }
  }
  onChunk();
}
