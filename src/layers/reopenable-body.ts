import { bodyChunks } from '../core/index.js';
import type { Body } from '../core/index.js';

/**
 * A put body that can be read more than once because it knows how to re-open its source (a file,
 * a URL, a re-playable generator). Any store accepts it as an `AsyncIterable<Uint8Array>`: each
 * iteration calls `open()` afresh. RetryStore recognises it and retries puts of it, which it never
 * does for a one-shot stream.
 *
 * @example store.put('k', reopenable(() => createReadStream(path)), { size })
 */
export class ReopenableBody implements AsyncIterable<Uint8Array> {
  constructor(readonly open: () => Body | Promise<Body>) {}

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    yield* bodyChunks(await this.open());
  }
}

/** A body re-opened from its source on every read; see ReopenableBody. */
export function reopenable(open: () => Body | Promise<Body>): ReopenableBody {
  return new ReopenableBody(open);
}

export function isReopenable(body: unknown): body is ReopenableBody {
  return body instanceof ReopenableBody;
}

/**
 * Applies `wrap` to a body's chunks while keeping it re-playable: a ReopenableBody stays one (the
 * wrap applies on each open). In-memory bodies are passed to `wrap` as a single chunk.
 */
export function mapBody(body: Body, wrap: (chunks: AsyncIterable<Buffer>) => AsyncIterable<Uint8Array>): Body {
  if (isReopenable(body)) return new ReopenableBody(async () => wrap(bodyChunks(await body.open())));
  return wrap(bodyChunks(body));
}
