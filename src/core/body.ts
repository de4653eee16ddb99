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
