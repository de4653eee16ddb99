import type { BlobStore, SignalOptions } from '../../core/types.js';
import { chunkIdOf } from './manifest.js';

/**
 * The chunks a ChunkedStore knows its inner store holds: id → last-modified time (ms, the
 * provider's clock) when it was last seen, written or touched. Built lazily from one listing of the
 * chunk prefix, then kept up to date by this process's own writes. Other processes' writes are not
 * in it: a miss is checked with `head` before uploading, so the index only ever saves requests.
 * A hit is trusted only while it is fresh (the store touches older chunks before relying on them,
 * see docs/chunk-format.md, "Garbage collection").
 */
export class ChunkIndex {
  private readonly known = new Map<string, number>();
  private loading: Promise<void> | undefined;

  constructor(private readonly inner: BlobStore, private readonly prefix: string) {}

  /** Lists the chunk prefix once (concurrent callers share the listing). A failed listing is retried by the next caller. */
  async ready(opts: SignalOptions = {}): Promise<void> {
    this.loading ??= this.load(opts).catch((e: unknown) => {
      this.loading = undefined;
      throw e;
    });
    return this.loading;
  }

  private async load(opts: SignalOptions): Promise<void> {
    for await (const item of this.inner.list({ prefix: this.prefix, signal: opts.signal })) {
      if (item.type !== 'object') continue;
      const id = chunkIdOf(this.prefix, item.key);
      if (id !== undefined) this.note(id, item.lastModified.getTime());
    }
  }

  /** Last-modified time of a chunk known to be held, or undefined. */
  lastModified(id: string): number | undefined {
    return this.known.get(id);
  }

  /** Records a chunk as held, modified at `ms` (keeps the latest time seen). */
  note(id: string, ms: number): void {
    const was = this.known.get(id);
    if (was === undefined || ms > was) this.known.set(id, ms);
  }

  /** Forgets a chunk (found missing, or deleted). */
  forget(id: string): void {
    this.known.delete(id);
  }

  get size(): number {
    return this.known.size;
  }
}
