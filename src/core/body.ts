import { Readable } from 'node:stream';
import type { Body } from './types.js';

/** Body whose bytes are already in memory, so a put of it can be replayed. */
export function isReplayableBody(body: Body): body is Uint8Array | string {
  return typeof body === 'string' || body instanceof Uint8Array;
}

/** The size of a body when it is known without reading it. */
export function knownBodySize(body: Body): number | undefined {
  if (typeof body === 'string') return Buffer.byteLength(body, 'utf8');
  if (body instanceof Uint8Array) return body.byteLength;
  return undefined;
}

/** The bytes of an in-memory body, without copying where possible. */
export function bodyBytes(body: Uint8Array | string): Buffer {
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  return Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

/** Any body as a byte stream (object mode off). Buffers are not copied. */
export function toReadable(body: Body): Readable {
  if (typeof body === 'string' || body instanceof Uint8Array) {
    const buf = bodyBytes(body);
    return Readable.from(buf.byteLength === 0 ? [] : [buf], { objectMode: false });
  }
  if (body instanceof Readable) return body;
  return Readable.from(asBuffers(body), { objectMode: false });
}

async function* asBuffers(it: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
  for await (const chunk of it) {
    if (typeof chunk === 'string') yield Buffer.from(chunk as string, 'utf8');
    else if (chunk.byteLength > 0) yield Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  }
}

/** Any body as an async iterable of Buffers (strings in Readables are UTF-8 encoded). */
export function bodyChunks(body: Body): AsyncIterable<Buffer> {
  if (typeof body === 'string' || body instanceof Uint8Array) {
    const buf = bodyBytes(body);
    return (async function* () {
      if (buf.byteLength > 0) yield buf;
    })();
  }
  return asBuffers(body as AsyncIterable<Uint8Array>);
}

/** Reads a whole stream into one Buffer. For small bodies and tests; drivers stream. */
export async function collect(stream: AsyncIterable<Uint8Array | string>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(typeof c === 'string' ? Buffer.from(c) : Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  return Buffer.concat(parts);
}

/**
 * Re-chunks a stream into blocks of exactly `size` bytes (the last may be shorter), the shape
 * multipart and block uploads need. Holds at most one block plus one incoming chunk.
 */
export async function* blocks(source: AsyncIterable<Buffer>, size: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let have = 0;
  for await (const chunk of source) {
    let c = chunk;
    while (have + c.byteLength >= size) {
      const take = size - have;
      parts.push(c.subarray(0, take));
      yield parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
      parts = [];
      have = 0;
      c = c.subarray(take);
    }
    if (c.byteLength > 0) {
      parts.push(c);
      have += c.byteLength;
    }
  }
  if (have > 0 || parts.length > 0) yield Buffer.concat(parts, have);
}

/**
 * Block buffers reused across one upload. Fresh 4–8 MiB buffers per block are garbage V8 collects
 * late (external memory), which costs GC time and shows up as RSS; reusing a few keeps a streamed
 * upload's footprint near blocks-in-flight × block size.
 */
export class BlockPool {
  private readonly free: Buffer[] = [];
  take(size: number): Buffer {
    const i = this.free.findIndex((b) => b.byteLength === size);
    return i >= 0 ? this.free.splice(i, 1)[0]! : Buffer.allocUnsafeSlow(size);
  }
  /** Returns a buffer (or a view of one) once no request reads it any more. */
  give(buf: Buffer): void {
    this.free.push(Buffer.from(buf.buffer, buf.byteOffset, buf.buffer.byteLength - buf.byteOffset));
  }
}

/**
 * Re-chunks a stream into blocks copied into pooled buffers, whose size `sizeAt(index)` may grow
 * (Azure allows blocks of different sizes in one blob). Each yielded block is a view of a pooled
 * buffer the caller hands back with `pool.give` when its upload is over (or never, if it keeps it).
 */
export async function* pooledBlocks(source: AsyncIterable<Buffer>, sizeAt: (index: number) => number, pool: BlockPool): AsyncGenerator<Buffer> {
  let index = 0;
  let size = sizeAt(0);
  let block: Buffer | undefined;
  let have = 0;
  for await (const chunk of source) {
    let c = chunk;
    while (c.byteLength > 0) {
      block ??= pool.take(size);
      const n = Math.min(size - have, c.byteLength);
      c.copy(block, have, 0, n);
      have += n;
      c = c.subarray(n);
      if (have === size) {
        const full = block;
        block = undefined;
        have = 0;
        size = sizeAt(++index);
        yield full;
      }
    }
  }
  if (block && have > 0) yield block.subarray(0, have);
}

function ignoreError(): void {
  // The error is kept on the stream (`errored`); readers get it from for-await, pipeline or finished.
}

/**
 * Makes a get body safe to hold before reading it. A body fails on its own (the connection is
 * reset, the caller's signal aborts) whether or not anyone listens yet, and an 'error' event with
 * no listener throws from the event loop: a caller that awaited something between `get` and
 * reading would lose its process. With this, the stream is destroyed with the error recorded, and
 * a reader that starts later gets it (typed, as the driver mapped it) from for-await, `pipeline`,
 * `finished` or its own 'error' listener attached before the failure. Returns the stream.
 */
export function holdErrors<T extends NodeJS.EventEmitter>(stream: T): T {
  stream.on('error', ignoreError);
  return stream;
}
