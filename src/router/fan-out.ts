import { PassThrough, type Readable } from 'node:stream';
import { MultiHasher } from '../core/checksums.js';
import type { Checksums } from '../core/types.js';

export interface FanOut {
  /** One stream per consumer, each carrying every byte of the source. */
  branches: PassThrough[];
  /** Resolves with the source's digest and length once it ended (rejects with the source's error). */
  done: Promise<Checksums & { bytes: number }>;
}

/**
 * Copies one byte stream into `n` streams, hashing it once on the way. Backpressure is that of the
 * slowest live branch, so memory stays bounded by the branches' buffers. A branch its consumer
 * destroyed (its put failed) is dropped and the others go on; a source error fails every branch.
 */
export function fanOut(source: AsyncIterable<Buffer>, n: number, highWaterMark = 256 * 1024): FanOut {
  const branches = Array.from({ length: n }, () => {
    const b = new PassThrough({ highWaterMark });
    // Consumers see errors through their reads; this only keeps an unread branch's error from crashing the process.
    b.on('error', () => undefined);
    return b;
  });
  const hasher = new MultiHasher();
  const live = (b: PassThrough): boolean => !b.destroyed && !b.writableEnded;
  const done = (async () => {
    try {
      for await (const chunk of source) {
        hasher.update(chunk);
        const waits: Promise<unknown>[] = [];
        for (const b of branches) {
          if (!live(b)) continue;
          if (!b.write(chunk)) waits.push(writable(b));
        }
        if (!branches.some(live)) break;
        if (waits.length > 0) await Promise.all(waits);
      }
    } catch (e) {
      for (const b of branches) if (!b.destroyed) b.destroy(e as Error);
      throw e;
    }
    for (const b of branches) if (live(b)) b.end();
    return { ...hasher.digest(), bytes: hasher.bytes };
  })();
  // A failure is delivered through the branches too; the caller may not await `done`.
  done.catch(() => undefined);
  return { branches, done };
}

/** Resolves when a branch can take more (drain) or is gone (close), leaving no listener behind. */
function writable(b: PassThrough): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      b.off('drain', done);
      b.off('close', done);
      resolve();
    };
    b.on('drain', done);
    b.on('close', done);
  });
}

/** Drains and discards a stream (a hedged read's loser), ignoring its errors. */
export function discard(body: Readable): void {
  body.on('error', () => undefined);
  body.destroy();
}
