import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { TransientError, abortedError, type CloudmuxErrorOptions } from './errors.js';
import type { ChecksumAlgorithm, Checksums } from './types.js';

/**
 * Digests of a multi-part upload computed on worker threads: the whole object's digests (SHA-256
 * of every byte, in order) and each part's own (the MD5 Azure checks per block, the CRC32C a
 * resume journal records, the SHA-256 S3 checks per part).
 *
 * Why: a streamed copy's main thread reads the source, cuts parts, and writes requests; hashing
 * every byte there (MD5 at ~0.5 GB/s, SHA-256 at ~1.3 GB/s per core here) made the main thread
 * the critical path of a large copy while the other core waited (bench/migrate.ts, profile in
 * docs/transfers.md). The parts already live in memory the worker can read: {@link PartSource}
 * with `shared: true` cuts them into SharedArrayBuffer-backed buffers, so a part is hashed where
 * it lies, without a copy. A part in ordinary memory (a small one) is copied into the message.
 *
 * # Contract
 * - {@link PartDigestJob.part} is called once per part, in order; the whole-object digests see
 *   the parts in that order. The part's bytes must not change until its promise settles.
 * - {@link PartDigestJob.digest} ends the job: the whole object's digests and byte count.
 * - A worker that dies fails every job on it with Transient ("nothing was written" holds for the
 *   caller: it has not completed the upload); the job's signal fails it with Aborted.
 *   {@link PartDigestJob.abort} drops the job (safe at any time, twice).
 * - Idle workers never hold the process open.
 */

/** Digests one part wants; `true` computes it. */
export interface PartDigestsWanted {
  md5?: boolean;
  sha256?: boolean;
  crc32c?: boolean;
}

/** One part's digests, hex. */
export type PartDigests = Pick<Checksums, 'md5' | 'sha256' | 'crc32c'>;

interface PartReply {
  job: number;
  seq?: number;
  end?: true;
  md5?: string;
  sha256?: string;
  crc32c?: string;
  digests?: Checksums;
  bytes?: number;
  error?: string;
}

/**
 * The worker's source, plain CommonJS so that it runs the same under tsx, vitest and the built
 * package. Jobs are interleaved on one worker; messages of one job arrive in the order posted.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { crc32c } = require(workerData.crcPath);
const jobs = new Map();
const hex32 = (v) => (v >>> 0).toString(16).padStart(8, '0');
parentPort.on('message', (m) => {
  try {
    if (m.t === 'start') {
      jobs.set(m.job, { sha256: m.whole.sha256 ? createHash('sha256') : null, md5: m.whole.md5 ? createHash('md5') : null, crc: m.whole.crc32c ? 0 : null, bytes: 0 });
      return;
    }
    if (m.t === 'drop') { jobs.delete(m.job); return; }
    const j = jobs.get(m.job);
    if (m.t === 'part') {
      const v = m.sab ? Buffer.from(m.sab, m.off, m.len) : Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength);
      const out = { job: m.job, seq: m.seq };
      if (j) {
        if (j.sha256) j.sha256.update(v);
        if (j.md5) j.md5.update(v);
        if (j.crc !== null) j.crc = crc32c(v, j.crc);
        j.bytes += v.byteLength;
      }
      if (m.want.md5) out.md5 = createHash('md5').update(v).digest('hex');
      if (m.want.sha256) out.sha256 = createHash('sha256').update(v).digest('hex');
      if (m.want.crc32c) out.crc32c = hex32(crc32c(v, 0));
      parentPort.postMessage(out);
    } else if (m.t === 'end') {
      jobs.delete(m.job);
      const digests = {};
      if (j && j.sha256) digests.sha256 = j.sha256.digest('hex');
      if (j && j.md5) digests.md5 = j.md5.digest('hex');
      if (j && j.crc !== null) digests.crc32c = hex32(j.crc);
      parentPort.postMessage({ job: m.job, end: true, digests, bytes: j ? j.bytes : 0 });
    }
  } catch (e) {
    parentPort.postMessage({ job: m.job, seq: m.seq, end: m.t === 'end' ? true : undefined, error: String((e && e.message) || e) });
  }
});
`;

const CRC_PATH = createRequire(import.meta.url).resolve('@node-rs/crc32');

class DigestWorker {
  readonly worker: Worker;
  readonly jobs = new Map<number, PartDigestJob>();
  failure: Error | undefined;

  constructor(private readonly onDead: (w: DigestWorker) => void) {
    // execArgv []: not the parent's flags (a loader such as tsx would only slow this plain script's start).
    this.worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], workerData: { crcPath: CRC_PATH } });
    this.worker.unref();
    const die = (e: Error): void => {
      if (this.failure) return;
      this.failure = e;
      for (const job of [...this.jobs.values()]) job.workerFailed(e);
      this.jobs.clear();
      this.onDead(this);
    };
    this.worker.once('error', die);
    this.worker.once('exit', (code) => die(new Error(`the digest worker exited (code ${code})`)));
    this.worker.on('message', (m: PartReply) => this.jobs.get(m.job)?.receive(m));
  }

  attach(job: PartDigestJob): void {
    if (this.jobs.size === 0) this.worker.ref();
    this.jobs.set(job.id, job);
  }

  detach(job: PartDigestJob): void {
    if (!this.jobs.delete(job.id)) return;
    if (this.jobs.size === 0) this.worker.unref();
  }
}

let nextJobId = 1;

/** The digests of one upload; see the module comment for the contract. */
export class PartDigestJob {
  readonly id = nextJobId++;
  private seq = 0;
  private ended = false;
  private readonly waiting = new Map<number, { resolve: (d: PartDigests) => void; reject: (e: unknown) => void }>();
  private end: { resolve: (d: Checksums & { bytes: number }) => void; reject: (e: unknown) => void } | undefined;
  private failure: unknown;
  private readonly onAbort = (): void => this.fail(abortedError(this.signal, this.where));

  constructor(
    private readonly w: DigestWorker, whole: readonly ChecksumAlgorithm[],
    private readonly where: CloudmuxErrorOptions, private readonly signal?: AbortSignal,
  ) {
    w.attach(this);
    const set = new Set(whole);
    w.worker.postMessage({ t: 'start', job: this.id, whole: { sha256: set.has('sha256'), md5: set.has('md5'), crc32c: set.has('crc32c') } });
    if (signal?.aborted) this.onAbort();
    else signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  /** Hashes the next part (in order) into the whole-object digests, and computes the part's own `want`. */
  part(bytes: Uint8Array, want: PartDigestsWanted = {}): Promise<PartDigests> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.ended) return Promise.reject(new TransientError('the digest job has already ended', this.where));
    const seq = ++this.seq;
    const shared = typeof SharedArrayBuffer !== 'undefined' && bytes.buffer instanceof SharedArrayBuffer;
    const p = new Promise<PartDigests>((resolve, reject) => this.waiting.set(seq, { resolve, reject }));
    this.w.worker.postMessage(shared
      ? { t: 'part', job: this.id, seq, sab: bytes.buffer, off: bytes.byteOffset, len: bytes.byteLength, want }
      : { t: 'part', job: this.id, seq, bytes, want });
    return p;
  }

  /** Ends the job: the whole object's digests (those asked for when it started) and its byte count. */
  digest(): Promise<Checksums & { bytes: number }> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.ended) return Promise.reject(new TransientError('the digest job has already ended', this.where));
    this.ended = true;
    const p = new Promise<Checksums & { bytes: number }>((resolve, reject) => (this.end = { resolve, reject }));
    this.w.worker.postMessage({ t: 'end', job: this.id });
    return p;
  }

  /** Drops the job (after a failure or an abort); pending parts fail with Aborted or the given reason. */
  abort(): void {
    if (this.failure === undefined) this.fail(new TransientError('the digest job was dropped', this.where));
  }

  /** @internal */
  receive(m: PartReply): void {
    if (m.error !== undefined) {
      this.fail(new TransientError(`hashing on the digest worker failed: ${m.error}`, this.where));
      return;
    }
    if (m.end) {
      this.finish();
      const end = this.end;
      this.end = undefined;
      end?.resolve({ ...m.digests, bytes: m.bytes ?? 0 });
      return;
    }
    const w = this.waiting.get(m.seq!);
    this.waiting.delete(m.seq!);
    w?.resolve({ ...(m.md5 ? { md5: m.md5 } : {}), ...(m.sha256 ? { sha256: m.sha256 } : {}), ...(m.crc32c ? { crc32c: m.crc32c } : {}) });
  }

  /** @internal The worker died or exited: Transient, as nothing the caller wrote was completed. */
  workerFailed(cause: Error): void {
    this.fail(new TransientError('the digest worker thread failed; nothing was written; retry', { ...this.where, cause }));
  }

  /** Fails everything pending (worker death, abort, drop); the job is then over. */
  private fail(e: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = e;
    if (!this.ended || this.end) this.w.worker.postMessage({ t: 'drop', job: this.id });
    this.finish();
    for (const w of this.waiting.values()) w.reject(this.failure);
    this.waiting.clear();
    this.end?.reject(this.failure);
    this.end = undefined;
  }

  private finish(): void {
    this.signal?.removeEventListener('abort', this.onAbort);
    this.w.detach(this);
  }
}

/**
 * Digest workers shared by every upload of the process: a job goes to the worker with the fewest
 * jobs. Default size: one worker per core beyond the first, at least one, at most four.
 */
export class PartDigestPool {
  private readonly workers: DigestWorker[] = [];
  private closed = false;

  constructor(readonly size = Math.max(1, Math.min(4, availableParallelism() - 1))) {}

  /** A job hashing the whole object with `whole` (SHA-256 among them, usually). */
  job(whole: readonly ChecksumAlgorithm[], where: CloudmuxErrorOptions, signal?: AbortSignal): PartDigestJob {
    if (this.closed) throw new TransientError('the digest workers are closed', where);
    let w: DigestWorker | undefined;
    if (this.workers.length < this.size) {
      w = new DigestWorker((dead) => this.workers.splice(this.workers.indexOf(dead) >>> 0, 1));
      this.workers.push(w);
    } else {
      w = this.workers.reduce((a, b) => (b.jobs.size < a.jobs.size ? b : a));
    }
    return new PartDigestJob(w, whole, where, signal);
  }

  /** Workers alive, for tests. */
  get alive(): number {
    return this.workers.length;
  }

  /** Jobs not yet ended or dropped (each keeps its worker referenced), for tests. */
  get running(): number {
    return this.workers.reduce((n, w) => n + w.jobs.size, 0);
  }

  /** Terminates every worker; jobs still running fail with Transient. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled(this.workers.splice(0).map((w) => w.worker.terminate()));
  }
}

let shared: PartDigestPool | undefined;

/** The process's pool (created on first use; its idle workers never hold the process open). */
export function sharedPartDigestPool(): PartDigestPool {
  shared ??= new PartDigestPool();
  return shared;
}
