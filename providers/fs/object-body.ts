import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { IntegrityError, MultiHasher, checksumMismatches, holdErrors } from '../../src/core/index.js';
import type { Checksums } from '../../src/core/index.js';
import { PROVIDER, mapFsError } from './errors.js';
import { READ_CHUNK } from './file-ops.js';

/** Where a body's bytes come from: the descriptor get opened, or the bytes it already read. */
export interface ByteSource {
  /** Up to `length` bytes at `position`; empty at the end of the file. */
  read(position: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

export function fileSource(fh: FileHandle): ByteSource {
  return {
    async read(position, length) {
      const { bytesRead, buffer } = await fh.read(Buffer.allocUnsafe(length), 0, length, position);
      return buffer.subarray(0, bytesRead);
    },
    close: () => fh.close(),
  };
}

export function bufferSource(buf: Buffer, offset: number): ByteSource {
  return {
    async read(position, length) {
      return buf.subarray(position - offset, position - offset + length);
    },
    async close() {},
  };
}

/** What a verified body must hash to, and whom to tell when it does not. */
export interface BodyCheck {
  expected: Checksums;
  size: number;
  /** Called (awaited before the body fails) when the bytes are not the ones expected. */
  onMismatch?: () => Promise<void>;
}

/**
 * The body of a get: reads `[start, start + length)` from the descriptor opened by get, one chunk per
 * pull (bounded memory), closes it when done or destroyed, and with `check` fails at the end with
 * IntegrityError if the bytes are not the ones the sidecar describes.
 */
export class ObjectBody extends Readable {
  private position: number;
  private readonly end: number;
  private readonly hasher: MultiHasher | undefined;
  private readonly onAbort: (() => void) | undefined;
  private finished = false;

  constructor(
    private readonly source: ByteSource,
    start: number,
    length: number,
    private readonly key: string,
    private readonly check: BodyCheck | undefined,
    private readonly signal: AbortSignal | undefined,
  ) {
    super({ highWaterMark: READ_CHUNK });
    holdErrors(this);
    this.position = start;
    this.end = start + length;
    if (check) this.hasher = new MultiHasher([...(check.expected.md5 ? ['md5' as const] : []), ...(check.expected.crc32c ? ['crc32c' as const] : [])]);
    if (signal) {
      this.onAbort = () => this.destroy(mapFsError(signal.reason, { op: 'get', key, signal }));
      if (signal.aborted) process.nextTick(this.onAbort);
      else signal.addEventListener('abort', this.onAbort, { once: true });
    }
  }

  override _read(): void {
    const n = Math.min(READ_CHUNK, this.end - this.position);
    if (n <= 0) {
      this.finish();
      return;
    }
    this.source.read(this.position, n).then((chunk) => {
      if (this.destroyed) return;
      if (chunk.byteLength === 0) {
        this.destroy(new IntegrityError(`the file ended at byte ${this.position} of ${this.end}: truncated behind the store's back`, { provider: PROVIDER, key: this.key }));
        return;
      }
      this.position += chunk.byteLength;
      this.hasher?.update(chunk);
      this.push(chunk);
      if (this.position >= this.end) this.finish();
    }, (e: unknown) => this.destroy(mapFsError(e, { op: 'get', key: this.key, signal: this.signal })));
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.hasher && this.check) {
      const actual = this.hasher.digest();
      const bad = checksumMismatches(this.check.expected, actual);
      if (this.hasher.bytes !== this.check.size || bad.length > 0) {
        const error = new IntegrityError(`${bad.join(', ') || 'size'} mismatch: the stored bytes are not the bytes that were written`, { provider: PROVIDER, key: this.key });
        const told = this.check.onMismatch?.().catch(() => undefined) ?? Promise.resolve();
        void told.then(() => this.destroy(error));
        return;
      }
    }
    this.push(null);
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    if (this.onAbort) this.signal?.removeEventListener('abort', this.onAbort);
    this.source.close().then(() => cb(err), () => cb(err));
  }
}
