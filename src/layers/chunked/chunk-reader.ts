import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { collect, holdErrors } from '../../core/body.js';
import { ByteWindow } from '../../core/byte-window.js';
import { IntegrityError, abortedError, isCloudmuxError } from '../../core/errors.js';
import type { BlobStore } from '../../core/types.js';
import type { ChunkIdScheme } from './chunk-ids.js';
import { chunkKey, type Manifest } from './manifest.js';

export interface ChunkReadPlan {
  /** Index of the first chunk to read, and of the last (inclusive). */
  first: number;
  last: number;
  /** Bytes of the first chunk before the range starts. */
  skip: number;
  /** Bytes to return. */
  length: number;
  /** Whole reads with `verify`: the SHA-256 the returned bytes must have. */
  expectSha256?: string;
}

export interface ChunkReaderContext {
  inner: BlobStore;
  provider: string;
  prefix: string;
  /** Chunks fetched ahead of the one being returned (memory: (readAhead + 1) × max chunk). */
  readAhead: number;
  signal?: AbortSignal;
}

/**
 * Fetches one chunk whole and checks it against its id before any byte of it is returned: a
 * chunk that is missing, cut short or altered fails with IntegrityError.
 */
export async function fetchChunk(ctx: ChunkReaderContext, ids: ChunkIdScheme, id: string, size: number, objectKey: string, signal?: AbortSignal): Promise<Buffer> {
  const where = { provider: ctx.provider, key: objectKey };
  let bytes: Buffer;
  try {
    const r = await ctx.inner.get(chunkKey(ctx.prefix, id), { signal });
    bytes = await collect(r.body);
  } catch (e) {
    if (isCloudmuxError(e, 'NotFound')) throw new IntegrityError(`chunk ${id} of ${objectKey} is missing from the store`, { ...where, cause: e });
    throw e;
  }
  if (bytes.byteLength !== size) throw new IntegrityError(`chunk ${id} of ${objectKey} is ${bytes.byteLength} bytes, the manifest says ${size}`, where);
  if (await ids.idAsync([bytes]) !== id) throw new IntegrityError(`chunk ${id} of ${objectKey} does not match its id (altered or corrupted)`, where);
  return bytes;
}

/**
 * The bytes of `plan`'s chunks as one stream, in order, fetching up to `readAhead` chunks ahead.
 * Only verified chunks are returned; with `expectSha256` the stream fails at its end unless the
 * whole matches. Stopping early (destroy) cancels the fetches in flight.
 */
export function readChunks(ctx: ChunkReaderContext, ids: ChunkIdScheme, key: string, manifest: Manifest, plan: ChunkReadPlan): Readable {
  const stop = new AbortController();
  const onAbort = (): void => stop.abort(abortedError(ctx.signal, { provider: ctx.provider, key }));
  ctx.signal?.addEventListener('abort', onAbort, { once: true });
  if (ctx.signal?.aborted) onAbort();
  async function* run(): AsyncGenerator<Buffer> {
    const queue: Promise<Buffer>[] = [];
    let next = plan.first;
    const fill = (): void => {
      while (next <= plan.last && queue.length <= ctx.readAhead) {
        const c = manifest.chunks[next++]!;
        const p = fetchChunk(ctx, ids, c.id, c.size, key, stop.signal);
        p.catch(() => undefined); // awaited in order below; never an unhandled rejection
        queue.push(p);
      }
    };
    const hash = plan.expectSha256 ? createHash('sha256') : undefined;
    const window = new ByteWindow(plan.skip, plan.length);
    try {
      fill();
      while (queue.length > 0 && !window.done) {
        const bytes = window.take(await queue.shift()!);
        fill();
        hash?.update(bytes);
        if (bytes.byteLength > 0) yield bytes;
      }
      if (!window.done) throw new IntegrityError(`chunked object ${key}: ${window.remaining} bytes missing`, { provider: ctx.provider, key });
      if (hash && hash.digest('hex') !== plan.expectSha256) {
        throw new IntegrityError(`chunked object ${key}: SHA-256 of the whole does not match the manifest`, { provider: ctx.provider, key });
      }
    } finally {
      ctx.signal?.removeEventListener('abort', onAbort);
      if (queue.length > 0) stop.abort(abortedError(undefined, { provider: ctx.provider, key }));
    }
  }
  return holdErrors(Readable.from(run(), { objectMode: false }));
}
