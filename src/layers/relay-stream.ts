import { Readable, type ReadableOptions } from 'node:stream';
import { holdErrors } from '../core/body.js';

/** A pull-based byte source: what a layer reads from when it re-streams a body. */
export interface ChunkSource {
  /** The next chunk, or null at the end. Rejects with the stream's error. */
  read(): Promise<Buffer | null>;
  /** Releases the underlying stream (and its request); safe to call more than once. */
  destroy(error?: Error): void;
}

/** A ChunkSource over a Readable (strings are taken as UTF-8). */
export function readerOf(stream: Readable): ChunkSource {
  const it = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  return {
    async read() {
      const r = await it.next();
      if (r.done) return null;
      return typeof r.value === 'string' ? Buffer.from(r.value, 'utf8') : r.value;
    },
    destroy(error) {
      if (!stream.destroyed) stream.destroy(error);
    },
  };
}

/**
 * A Readable that pulls from a ChunkSource only when its consumer wants bytes, so time spent by a
 * slow consumer is never charged to the source (stall timers, rate limits) and backpressure holds.
 * Destroying it destroys the source at once, even while a read is pending.
 */
export class RelayStream extends Readable {
  private pulling = false;

  constructor(private readonly source: ChunkSource, opts?: ReadableOptions) {
    super(opts);
    holdErrors(this);
  }

  override _read(): void {
    if (this.pulling) return;
    this.pulling = true;
    void this.pump();
  }

  private async pump(): Promise<void> {
    try {
      for (;;) {
        const chunk = await this.source.read();
        if (this.destroyed) return;
        if (chunk === null) {
          this.push(null);
          return;
        }
        if (chunk.byteLength === 0) continue;
        if (!this.push(chunk)) return;
      }
    } catch (e) {
      if (!this.destroyed) this.destroy(e instanceof Error ? e : new Error(String(e)));
    } finally {
      this.pulling = false;
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.source.destroy(error ?? undefined);
    callback(error);
  }
}

/** A ChunkSource that hands out each chunk only after `after(chunk)` resolves (rate limits, counters), mapping read errors. */
export function mapSource(source: ChunkSource, hooks: { after?(chunk: Buffer): void | Promise<void>; mapError?(e: unknown): unknown }): ChunkSource {
  return {
    async read() {
      let chunk: Buffer | null;
      try {
        chunk = await source.read();
      } catch (e) {
        throw hooks.mapError ? hooks.mapError(e) : e;
      }
      if (chunk !== null) await hooks.after?.(chunk);
      return chunk;
    },
    destroy: (error) => source.destroy(error),
  };
}
