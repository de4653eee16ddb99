import { MultiHasher, checksumMismatches } from '../../core/checksums.js';
import { IntegrityError, InvalidArgumentError, TransientError, isCloudmuxError, throwIfAborted } from '../../core/errors.js';
import { systemMetadata } from '../../core/system-metadata.js';
import type { BlobStore, ChecksumAlgorithm, Checksums, ObjectMeta, PutOptions, SignalOptions } from '../../core/types.js';
import type { ChunkIndex } from './chunk-index.js';
import type { ChunkIdScheme } from './chunk-ids.js';
import { chunkStream, type ChunkParts, type ChunkSizes } from './chunker.js';
import { workerCanHashIds, type Sha256WorkerPool } from './sha256-worker.js';
import { MANIFEST_MARK, MANIFEST_VERSION, chunkKey, manifestMark, serializeManifest, type ChunkRef, type Manifest } from './manifest.js';

/** What one chunked write (or copy) moved. Sizes in bytes. */
export interface TransferStats {
  /** Logical bytes read from the body. */
  bytesRead: number;
  /** Bytes handed to the inner store: chunks uploaded plus the manifest. */
  bytesSent: number;
  /** Logical bytes not sent because the inner store already held their chunks. */
  bytesDeduplicated: number;
  chunks: number;
  chunksSent: number;
  /** Old chunks refreshed (metadata touch) before being relied on, so GC keeps them. */
  chunksTouched: number;
}

export function emptyStats(): TransferStats {
  return { bytesRead: 0, bytesSent: 0, bytesDeduplicated: 0, chunks: 0, chunksSent: 0, chunksTouched: 0 };
}

export function addStats(into: TransferStats, s: TransferStats): void {
  for (const k of Object.keys(into) as (keyof TransferStats)[]) into[k] += s[k];
}

/** What the writer needs from its ChunkedStore. */
export interface ChunkWriterContext {
  inner: BlobStore;
  provider: string;
  prefix: string;
  sizes: ChunkSizes;
  ids: ChunkIdScheme;
  index: ChunkIndex;
  /** Chunks stored at once (each holds up to `sizes.max` bytes). */
  concurrency: number;
  /** GC grace period (ms): chunks older than a quarter of it are touched before being relied on. */
  graceMs: number;
  now: () => number;
  /** Workers for the whole-object SHA-256; absent: it is hashed on this thread. */
  sha256Pool?: Sha256WorkerPool;
}

/**
 * Makes sure the inner store holds one chunk whose bytes are in hand, and that GC will keep it
 * for at least three quarters of the grace period: a fresh known chunk is used as is, an older one
 * is touched (its metadata rewritten, which renews its modification time), a missing one uploaded.
 */
export async function ensureChunk(ctx: ChunkWriterContext, id: string, chunk: ChunkParts, stats: TransferStats, opts: SignalOptions): Promise<void> {
  const key = chunkKey(ctx.prefix, id);
  let seen = ctx.index.lastModified(id);
  if (seen === undefined) {
    try {
      seen = (await ctx.inner.head(key, opts)).lastModified.getTime();
      ctx.index.note(id, seen);
    } catch (e) {
      if (!isCloudmuxError(e, 'NotFound')) throw e;
    }
  }
  if (seen !== undefined) {
    if (seen >= ctx.now() - ctx.graceMs / 4) {
      stats.bytesDeduplicated += chunk.size;
      return;
    }
    try {
      const touched = await ctx.inner.updateMetadata(key, { metadata: {}, signal: opts.signal });
      ctx.index.note(id, touched.lastModified.getTime());
      stats.chunksTouched++;
      stats.bytesDeduplicated += chunk.size;
      return;
    } catch (e) {
      if (!isCloudmuxError(e, 'NotFound')) throw e;
      ctx.index.forget(id);
    }
  }
  const bytes = chunk.parts.length === 1 ? chunk.parts[0]! : Buffer.concat(chunk.parts, chunk.size);
  const meta = await ctx.inner.put(key, bytes, { size: chunk.size, signal: opts.signal });
  ctx.index.note(id, meta.lastModified.getTime());
  stats.chunksSent++;
  stats.bytesSent += chunk.size;
}

/**
 * Runs `ensureChunk` for a stream of chunks with at most `concurrency` in flight (bounded memory:
 * each holds its chunk), once per distinct id. Rejects with the first failure after every started
 * task has settled, so nothing runs on behind the caller's back.
 */
export class ChunkUploader {
  private readonly pending = new Set<Promise<void>>();
  private readonly started = new Map<string, Promise<void>>();
  private failure: unknown;
  private failed = false;

  constructor(private readonly ctx: ChunkWriterContext, private readonly stats: TransferStats, private readonly opts: SignalOptions) {}

  /** Queues a chunk; waits while the window is full. Throws the first failure seen so far. */
  async add(id: string, chunk: ChunkParts): Promise<void> {
    if (this.failed) throw this.failure;
    this.stats.chunks++;
    const earlier = this.started.get(id);
    if (earlier) {
      // The same content twice in one object: stored once.
      this.stats.bytesDeduplicated += chunk.size;
      return;
    }
    const task = ensureChunk(this.ctx, id, chunk, this.stats, this.opts).catch((e: unknown) => {
      if (!this.failed) {
        this.failed = true;
        this.failure = e;
      }
    });
    this.started.set(id, task);
    const tracked = task.finally(() => this.pending.delete(tracked));
    this.pending.add(tracked);
    while (this.pending.size >= this.ctx.concurrency) await Promise.race(this.pending);
    if (this.failed) throw this.failure;
  }

  /** Waits for every queued chunk; throws the first failure. */
  async finish(): Promise<void> {
    await Promise.all(this.pending);
    if (this.failed) throw this.failure;
  }

  /** Waits for every queued chunk, ignoring failures (cleanup after an error). */
  async settle(): Promise<void> {
    await Promise.allSettled(this.pending);
  }
}

/** Chunks whose ids may be hashing in the thread pool at once (memory: this many chunks of up to `max` bytes). */
const ID_AHEAD = 4;
/** Longer pieces are fed on in slices (views), so that cutting, id hashing and the whole-object hash overlap. */
const SLICE = 1024 * 1024;
/** Bodies known to be smaller hash the whole on this thread: a worker's start-up would cost more than it saves. */
const OFF_THREAD_MIN = 8 * 1024 * 1024;

/** The whole-object digests of a put, on this thread or a worker's. */
interface WholeHasher {
  readonly bytes: number;
  /** A promise only when the bytes could not be taken at once. */
  update(piece: Uint8Array): Promise<void> | undefined;
  digest(): Promise<Checksums>;
  /** Stops hashing (the put failed); no-op after `digest`. */
  abort(): void;
  /** When the hasher computes chunk ids too: the id of the chunk ending at stream offset `end`. */
  chunkId?(end: number): Promise<string>;
  /** Call before awaiting a chunk id. */
  nudge?(): void;
}

/** Whether a put hashes the whole on a worker (given one): not for MD5/CRC32C, nor for a body known to be small. */
export function hashesOffThread(opts: PutOptions, sizeHint: number | undefined): boolean {
  return extraAlgorithms(opts).length === 0 && !(sizeHint !== undefined && sizeHint < OFF_THREAD_MIN);
}

function wholeHasher(ctx: ChunkWriterContext, opts: PutOptions, sizeHint: number | undefined, where: { provider: string; key: string }): WholeHasher {
  if (ctx.sha256Pool && hashesOffThread(opts, sizeHint)) {
    const withIds = workerCanHashIds(ctx.sizes.max, SLICE);
    const job = ctx.sha256Pool.job(opts.signal, where, withIds ? ctx.ids.workerIds() : undefined);
    return {
      ...(withIds ? { chunkId: (end: number) => job.chunkId(end), nudge: () => job.nudge() } : {}),
      get bytes() {
        return job.bytes;
      },
      update: (piece) => job.update(piece),
      digest: async () => ({ sha256: await job.digest() }),
      abort: () => job.abort(),
    };
  }
  const h = new MultiHasher(extraAlgorithms(opts));
  return {
    get bytes() {
      return h.bytes;
    },
    update: (piece) => {
      h.update(piece);
      return undefined;
    },
    digest: async () => h.digest(),
    abort: () => {},
  };
}

/**
 * Writes a chunked object: splits the body into content-defined chunks, stores the ones the inner
 * store lacks (concurrently, bounded), then — only when every chunk is stored and the body
 * matched `opts.size` / `opts.expect` — writes the manifest under `key` with the caller's
 * conditions, metadata and content type. A failure before that leaves the previous object in
 * place (and perhaps some unreferenced chunks, which GC removes after the grace period).
 * `sizeHint`: the body's size when known, to choose where the whole is hashed.
 */
export async function writeChunked(
  ctx: ChunkWriterContext, key: string, body: AsyncIterable<Uint8Array>, opts: PutOptions, sizeHint = opts.size,
): Promise<{ meta: ObjectMeta; manifest: Manifest; stats: TransferStats }> {
  const started = ctx.now();
  const stats = emptyStats();
  const signal = opts.signal;
  const where = { provider: ctx.provider, key };
  const whole = wholeHasher(ctx, opts, sizeHint, where);
  async function* hashed(): AsyncGenerator<Uint8Array> {
    for await (const piece of body) {
      for (let at = 0; at < piece.byteLength; at += SLICE) {
        throwIfAborted(signal, where);
        const slice = piece.byteLength <= SLICE ? piece : piece.subarray(at, at + SLICE);
        const wait = whole.update(slice);
        if (wait) await wait;
        yield slice;
      }
    }
    throwIfAborted(signal, where);
  }
  const uploader = new ChunkUploader(ctx, stats, { signal });
  const refs: ChunkRef[] = [];
  // The whole and the chunk ids are hashed on a worker (ids in the thread pool when it cannot),
  // up to ID_AHEAD chunks behind the chunker, while this thread cuts the next chunks. Order is kept.
  const hashing: { id: Promise<string>; chunk: ChunkParts }[] = [];
  const settle = async (keep: number): Promise<void> => {
    while (hashing.length > keep) {
      const { id: pending, chunk } = hashing.shift()!;
      whole.nudge?.();
      const id = await pending;
      refs.push({ id, size: chunk.size });
      await uploader.add(id, chunk);
    }
  };
  let digests: Checksums;
  try {
    let end = 0;
    for await (const chunk of chunkStream(hashed(), ctx.sizes, ctx.ids.gear)) {
      end += chunk.size;
      const id = whole.chunkId ? whole.chunkId(end) : ctx.ids.idAsync(chunk.parts);
      id.catch(() => {}); // awaited in order by settle; a failure surfaces there
      hashing.push({ id, chunk });
      await settle(ID_AHEAD);
    }
    await settle(0);
    await uploader.finish();
    digests = await whole.digest();
  } catch (e) {
    whole.abort();
    await uploader.settle();
    throw e;
  }
  const size = whole.bytes;
  stats.bytesRead = size;
  if (opts.size !== undefined && size !== opts.size) {
    throw new InvalidArgumentError(`body was ${size} bytes, but size said ${opts.size}; nothing was written`, where);
  }
  if (opts.expect && checksumMismatches(opts.expect, digests).length > 0) {
    throw new IntegrityError('body does not match the expected checksums; nothing was written', where);
  }
  if (ctx.now() - started > ctx.graceMs / 4) {
    // The chunks relied on early may be older than GC's safety margin by now (docs/chunk-format.md).
    throw new TransientError(`chunked put took longer than a quarter of the GC grace period (${ctx.graceMs} ms); nothing was written; retry (stored chunks are reused)`, where);
  }
  const manifest: Manifest = {
    version: MANIFEST_VERSION, size, sha256: digests.sha256!, sizes: ctx.sizes, ids: ctx.ids.algorithm,
    ...(ctx.ids.keyCheck !== undefined ? { keyCheck: ctx.ids.keyCheck } : {}), chunks: refs,
  };
  const bytes = serializeManifest(manifest);
  const meta = await ctx.inner.put(key, bytes, {
    contentType: opts.contentType,
    metadata: systemMetadata({ ...opts.metadata, [MANIFEST_MARK]: manifestMark(manifest.size) }),
    ifNoneMatch: opts.ifNoneMatch,
    ifMatch: opts.ifMatch,
    size: bytes.byteLength,
    signal,
  });
  stats.bytesSent += bytes.byteLength;
  return { meta, manifest, stats };
}

function extraAlgorithms(opts: PutOptions): ChecksumAlgorithm[] {
  const out: ChecksumAlgorithm[] = [];
  if (opts.expect?.md5) out.push('md5');
  if (opts.expect?.crc32c) out.push('crc32c');
  return out;
}

/**
 * Before a new manifest names existing chunks without their bytes in hand (a copy): makes sure
 * each is held and fresh for GC, touching the ones older than grace/4 (as a put relying on them
 * does). A chunk the store lacks is IntegrityError: the source object is damaged, nothing is written.
 */
export async function refreshChunks(ctx: ChunkWriterContext, ids: Iterable<string>, objectKey: string, opts: SignalOptions): Promise<number> {
  const todo = [...new Set(ids)];
  let touched = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < todo.length) {
      const id = todo[next++]!;
      const key = chunkKey(ctx.prefix, id);
      try {
        let seen = ctx.index.lastModified(id);
        if (seen === undefined) {
          seen = (await ctx.inner.head(key, opts)).lastModified.getTime();
          ctx.index.note(id, seen);
        }
        if (seen >= ctx.now() - ctx.graceMs / 4) continue;
        const meta = await ctx.inner.updateMetadata(key, { metadata: {}, signal: opts.signal });
        ctx.index.note(id, meta.lastModified.getTime());
        touched++;
      } catch (e) {
        if (!isCloudmuxError(e, 'NotFound')) throw e;
        ctx.index.forget(id);
        throw new IntegrityError(`chunk ${id} of ${objectKey} is missing from the store; nothing was written`, { provider: ctx.provider, key: objectKey, cause: e });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(ctx.concurrency, todo.length)) }, worker));
  return touched;
}
