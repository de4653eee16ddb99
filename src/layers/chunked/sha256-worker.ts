import { Worker } from 'node:worker_threads';
import { TransientError, abortedError, type CloudmuxErrorOptions } from '../../core/errors.js';

/**
 * SHA-256 of a whole object on a worker thread, so that the thread cutting chunks does not also
 * hash every byte (measured: bench/chunked-reupload.ts). Bytes reach the worker through a
 * SharedArrayBuffer ring: the writer copies each piece in (a memcpy) and moves on; the worker
 * hashes behind it. The result is the flat SHA-256 of every byte written, in order.
 */

/** Ring bytes per worker (a power of two): how far the writer may run ahead of the hashing. */
const RING_BYTES = 16 * 1024 * 1024;
/**
 * A sleeping worker is woken once this much is waiting (or at the end), not for every piece: on a
 * busy box each wake-up can cost the writer its time slice (measured: ~0.5 ms a wake at load 9).
 */
const WAKE_AT = RING_BYTES / 4;
/**
 * Control words: bytes written and read (int32 counters, wrapping), job state, change sequence,
 * and whether the worker (resp. the writer) is about to sleep, so that the other side calls
 * Atomics.notify (a futex wake) only then, not for every slice.
 */
const W = 0;
const R = 1;
const STATE = 2;
const SEQ = 3;
const WORKER_SLEEPS = 4;
const WRITER_WAITS = 5;
const RUN = 1;
const END = 2;

/** Atomics.waitAsync (ES2024; in Node since 16): the lib this package compiles against predates it. */
type WaitAsync = (ta: Int32Array, index: number, value: number, timeoutMs: number) => { async: false; value: string } | { async: true; value: Promise<string> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/** Chunk ids a worker can hash: SHA-256, or HMAC-SHA-256 under `hmacKey`. */
export interface WorkerChunkIds {
  hmacKey?: Uint8Array;
}

/**
 * Whether a worker can hash the ids of chunks up to `maxChunk` bytes: it reads no further than the
 * last chunk end published, so the ring must hold a whole chunk and the slice after it.
 */
export function workerCanHashIds(maxChunk: number, slice: number): boolean {
  return maxChunk + 2 * slice <= RING_BYTES;
}

/** Chunk ends (absolute offsets) the writer has published and the worker not yet consumed, at most. */
const CUT_SLOTS = 1024;
/** Control word: chunk ends published so far. */
const CW = 6;

/**
 * The worker's source, plain CommonJS so that it runs the same under tsx, vitest and the built
 * package. Per job: hash what lies between R and W, wait on SEQ for more, post the digest at END.
 * With chunk ids (`ids` 1: SHA-256, 2: HMAC-SHA-256 under `key`), the same bytes also go into the
 * current chunk's hash, which ends at each published chunk end (its id posted as it is done); the
 * worker then never reads past the last published end.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash, createHmac } = require('node:crypto');
const ctl = new Int32Array(workerData.ctl);
const ring = new Uint8Array(workerData.ring);
const cuts = new Float64Array(workerData.cuts);
const MASK = ring.length - 1;
const STEP = 1024 * 1024;
parentPort.on('message', (job) => {
  const h = createHash('sha256');
  const ids = job.ids;
  const chunkHash = () => (ids === 2 ? createHmac('sha256', job.key) : createHash('sha256'));
  let ch = ids ? chunkHash() : undefined;
  let r = 0;
  let pos = 0;
  let cr = 0;
  for (;;) {
    const seq = Atomics.load(ctl, ${SEQ});
    const w = Atomics.load(ctl, ${W});
    let avail = (w - r) >>> 0;
    let next = Infinity;
    if (ids) {
      next = Atomics.load(ctl, ${CW}) === cr ? pos : cuts[cr % ${CUT_SLOTS}];
      avail = Math.min(avail, next - pos);
    }
    if (avail === 0) {
      if (Atomics.load(ctl, ${STATE}) === ${END} && Atomics.load(ctl, ${W}) === r && (!ids || Atomics.load(ctl, ${CW}) === cr)) break;
      Atomics.store(ctl, ${WORKER_SLEEPS}, 1);
      if (Atomics.load(ctl, ${SEQ}) === seq) Atomics.wait(ctl, ${SEQ}, seq, 1000);
      Atomics.store(ctl, ${WORKER_SLEEPS}, 0);
      continue;
    }
    const at = r & MASK;
    const n = Math.min(avail, ring.length - at, STEP);
    const span = ring.subarray(at, at + n);
    h.update(span);
    if (ch) ch.update(span);
    r = (r + n) | 0;
    pos += n;
    Atomics.store(ctl, ${R}, r);
    if (Atomics.load(ctl, ${WRITER_WAITS}) === 1) Atomics.notify(ctl, ${R});
    if (ids && pos === next) {
      parentPort.postMessage({ id: ch.digest('hex') });
      ch = chunkHash();
      cr++;
    }
  }
  parentPort.postMessage({ digest: h.digest('hex') });
});
`;

/** One worker and its ring; runs one job at a time. */
class HashWorker {
  readonly ctl = new Int32Array(new SharedArrayBuffer(32 + 4));
  readonly ring = new Uint8Array(new SharedArrayBuffer(RING_BYTES));
  readonly cuts = new Float64Array(new SharedArrayBuffer(8 * CUT_SLOTS));
  readonly worker: Worker;
  /** Set once the worker failed or exited; it is then never used again. */
  failure: Error | undefined;
  /** Settles (never rejects) when the worker fails or exits. */
  readonly dead: Promise<void>;
  /** Where the running job's messages go. */
  onMessage: ((m: { id?: string; digest?: string }) => void) | undefined;

  constructor() {
    // execArgv [] : not the parent's flags (`--input-type=module` would make the source ESM, a
    // loader such as tsx would only slow the start-up of this plain script).
    this.worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], workerData: { ctl: this.ctl.buffer, ring: this.ring.buffer, cuts: this.cuts.buffer } });
    this.worker.unref();
    this.dead = new Promise<void>((resolve) => {
      this.worker.once('error', (e) => {
        this.failure ??= e;
        resolve();
      });
      this.worker.once('exit', (code) => {
        this.failure ??= new Error(`the SHA-256 worker exited (code ${code})`);
        resolve();
      });
    });
    this.worker.on('message', (m: { id?: string; digest?: string }) => this.onMessage?.(m));
  }

  /** Starts a job (with chunk ids when `ids` is given); the worker keeps the process alive until it ends. */
  start(ids: WorkerChunkIds | undefined): void {
    for (const i of [W, R, CW, WRITER_WAITS]) Atomics.store(this.ctl, i, 0);
    Atomics.store(this.ctl, STATE, RUN);
    this.worker.ref();
    this.worker.postMessage(ids ? { ids: ids.hmacKey ? 2 : 1, key: ids.hmacKey } : { ids: 0 });
  }

  idle(): void {
    this.worker.unref();
  }

  terminate(): Promise<number> {
    this.failure ??= new Error('the SHA-256 worker was stopped');
    return this.worker.terminate();
  }
}

/**
 * The whole-object SHA-256 of one put, computed on a pooled worker. `update` copies the piece into
 * the ring (waiting, without blocking the event loop, only when the worker is a ring behind);
 * `digest` ends the job; `abort` stops the hashing at once (the worker is discarded).
 * Errors: Transient when the worker fails (nothing is committed by the caller), Aborted on `signal`.
 */
export class Sha256Job {
  bytes = 0;
  private written = 0;
  private done = false;
  private cutsPublished = 0;
  private idsReceived = 0;
  /** Resolvers of the chunk ids asked for and not yet received, in order. */
  private readonly waiting: ((id: string) => void)[] = [];
  private digestResolver: ((hex: string) => void) | undefined;

  constructor(
    private readonly pool: Sha256WorkerPool, private readonly w: HashWorker, private readonly signal: AbortSignal | undefined,
    private readonly where: CloudmuxErrorOptions, readonly hashesIds: boolean,
  ) {
    w.onMessage = (m) => {
      if (m.id !== undefined) {
        this.idsReceived++;
        this.waiting.shift()?.(m.id);
      } else if (m.digest !== undefined) {
        this.digestResolver?.(m.digest);
      }
    };
  }

  /**
   * With chunk ids: the chunk ending at byte `end` of the stream (all its bytes given to `update`
   * already, chunks in order) — its id, hashed by the worker from the ring.
   */
  chunkId(end: number): Promise<string> {
    this.check();
    if (!this.hashesIds) throw new TransientError('this job hashes no chunk ids', this.where);
    if (this.cutsPublished - this.idsReceived >= CUT_SLOTS) throw new TransientError(`more than ${CUT_SLOTS} chunk ids pending`, this.where);
    const { ctl, cuts } = this.w;
    const id = new Promise<string>((resolve) => this.waiting.push(resolve));
    cuts[this.cutsPublished % CUT_SLOTS] = end;
    this.cutsPublished++;
    Atomics.store(ctl, CW, this.cutsPublished);
    this.wake(false);
    return this.race(id);
  }

  /** Wakes the worker when a chunk id is awaited that it has not sent yet (it may sleep short of it). */
  nudge(): void {
    if (this.idsReceived < this.cutsPublished) this.wake(true);
  }

  /** Copies `piece` into the ring. Returns a promise only when it had to wait for room. */
  update(piece: Uint8Array): Promise<void> | undefined {
    this.check();
    this.bytes += piece.byteLength;
    return this.copy(piece);
  }

  private copy(piece: Uint8Array): Promise<void> | undefined {
    const { ctl, ring } = this.w;
    let off = 0;
    while (off < piece.byteLength) {
      const free = RING_BYTES - ((this.written - Atomics.load(ctl, R)) >>> 0);
      if (free === 0) {
        const rest = piece.subarray(off);
        return this.waitForRoom().then(() => this.copy(rest));
      }
      const at = this.written & (RING_BYTES - 1);
      const n = Math.min(free, RING_BYTES - at, piece.byteLength - off);
      ring.set(piece.subarray(off, off + n), at);
      off += n;
      this.written = (this.written + n) | 0;
      Atomics.store(ctl, W, this.written);
      this.wake(((this.written - Atomics.load(ctl, R)) >>> 0) >= WAKE_AT);
    }
    return undefined;
  }

  /** Ends the job; the hex SHA-256 of every byte given to `update`. */
  async digest(): Promise<string> {
    this.check();
    const result = new Promise<string>((resolve) => (this.digestResolver = resolve));
    Atomics.store(this.w.ctl, STATE, END);
    this.wake(true);
    const hex = await this.race(result);
    this.done = true;
    this.w.onMessage = undefined;
    this.pool.release(this.w);
    return hex;
  }

  /** Stops hashing now (after a failure or abort); the worker is discarded. Safe to call twice. */
  abort(): void {
    if (this.done) return;
    this.done = true;
    this.pool.discard(this.w);
  }

  /** Tells the worker there is news; wakes it only when `worthIt` and it sleeps. */
  private wake(worthIt: boolean): void {
    Atomics.add(this.w.ctl, SEQ, 1);
    if (worthIt && Atomics.load(this.w.ctl, WORKER_SLEEPS) === 1) Atomics.notify(this.w.ctl, SEQ);
  }

  private async waitForRoom(): Promise<void> {
    this.check();
    this.wake(true);
    const { ctl } = this.w;
    Atomics.store(ctl, WRITER_WAITS, 1);
    try {
      const seen = Atomics.load(ctl, R);
      if (RING_BYTES - ((this.written - seen) >>> 0) > 0) return;
      // A timeout, so that a wait never outlives a worker that died between the check and the wait.
      const w = waitAsync(ctl, R, seen, 1000);
      if (w.async) await this.race(w.value);
    } finally {
      Atomics.store(ctl, WRITER_WAITS, 0);
    }
    this.check();
  }

  /** `p`, unless the worker dies or the signal fires first. */
  private async race<T>(p: Promise<T>): Promise<T> {
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      if (!this.signal) return;
      onAbort = () => reject(abortedError(this.signal, this.where));
      this.signal.addEventListener('abort', onAbort, { once: true });
    });
    aborted.catch(() => {});
    try {
      const r = await Promise.race([p, aborted, this.w.dead.then(() => this.failed())]);
      return r;
    } finally {
      if (onAbort) this.signal?.removeEventListener('abort', onAbort);
    }
  }

  private check(): void {
    if (this.done) throw new TransientError('the whole-object SHA-256 job has already ended; nothing was written', this.where);
    if (this.signal?.aborted) throw abortedError(this.signal, this.where);
    if (this.w.failure) this.failed();
  }

  private failed(): never {
    throw new TransientError('the SHA-256 worker thread failed; nothing was written; retry', { ...this.where, cause: this.w.failure });
  }
}

/**
 * Workers for whole-object SHA-256, one per put in progress; up to `keepIdle` idle ones are kept
 * (unref'd: they never hold the process open) for the next put. `close` terminates them all.
 */
export class Sha256WorkerPool {
  private readonly idleWorkers: HashWorker[] = [];
  private readonly busy = new Set<HashWorker>();
  private readonly stopping = new Set<Promise<unknown>>();
  private closed = false;

  constructor(private readonly keepIdle = 1) {}

  /** A job on an idle worker or a new one. */
  job(signal: AbortSignal | undefined, where: CloudmuxErrorOptions, ids?: WorkerChunkIds): Sha256Job {
    if (this.closed) throw new TransientError('the store is closed', where);
    let w = this.idleWorkers.pop();
    while (w?.failure) w = this.idleWorkers.pop();
    w ??= new HashWorker();
    this.busy.add(w);
    const job = new Sha256Job(this, w, signal, where, ids !== undefined);
    w.start(ids);
    return job;
  }

  /**
   * Starts a worker now if none is idle, so that its start-up (tens of ms) overlaps other work
   * of the put (the first listing of the chunk prefix) instead of holding up the hashing.
   */
  warm(): void {
    if (this.closed || this.idleWorkers.some((w) => !w.failure)) return;
    const w = new HashWorker();
    this.idleWorkers.push(w);
  }

  /** Workers alive (busy and idle), for tests. */
  get size(): number {
    return this.busy.size + this.idleWorkers.length;
  }

  release(w: HashWorker): void {
    this.busy.delete(w);
    if (this.closed || w.failure || this.idleWorkers.length >= this.keepIdle) {
      this.stop(w);
      return;
    }
    w.idle();
    this.idleWorkers.push(w);
  }

  discard(w: HashWorker): void {
    this.busy.delete(w);
    this.stop(w);
  }

  /** Terminates every worker (busy jobs then fail with Transient). */
  async close(): Promise<void> {
    this.closed = true;
    for (const w of [...this.idleWorkers.splice(0), ...this.busy]) this.stop(w);
    this.busy.clear();
    await Promise.allSettled([...this.stopping]);
  }

  private stop(w: HashWorker): void {
    const p = w.terminate().catch(() => 0).finally(() => this.stopping.delete(p));
    this.stopping.add(p);
  }
}
