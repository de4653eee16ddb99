import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { createRequire } from 'node:module';
import type * as Crc32Module from '@node-rs/crc32';
import { holdErrors } from './body.js';
import { IntegrityError } from './errors.js';
import type { ChecksumAlgorithm, Checksums } from './types.js';

// Loaded as CommonJS: an ESM import of a CommonJS package has Node scan its source for export
// names first (~30 ms of start-up CPU on Node 20 for this one); require does not.
const { crc32c } = createRequire(import.meta.url)('@node-rs/crc32') as typeof Crc32Module;

/** Incremental CRC32C (Castagnoli), hardware-accelerated where the CPU has it. */
export class Crc32c {
  private state = 0;
  update(chunk: Uint8Array): this {
    this.state = crc32c(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength), this.state);
    return this;
  }
  /** Unsigned 32-bit value. */
  value(): number {
    return this.state >>> 0;
  }
  hex(): string {
    return this.value().toString(16).padStart(8, '0');
  }
}

/**
 * Hashes bytes with several algorithms in one pass. SHA-256 is on unless `sha256: false` (a copy
 * whose destination computes it anyway); `digest().sha256` is then absent.
 */
export class MultiHasher {
  private readonly sha256: Hash | undefined;
  private readonly md5: Hash | undefined;
  private readonly crc: Crc32c | undefined;
  bytes = 0;

  constructor(extra: Iterable<ChecksumAlgorithm> = [], opts: { sha256?: boolean } = {}) {
    const set = new Set(extra);
    if (opts.sha256 !== false) this.sha256 = createHash('sha256');
    if (set.has('md5')) this.md5 = createHash('md5');
    if (set.has('crc32c')) this.crc = new Crc32c();
  }

  update(chunk: Uint8Array): void {
    this.sha256?.update(chunk);
    this.md5?.update(chunk);
    this.crc?.update(chunk);
    this.bytes += chunk.byteLength;
  }

  /** Finishes every hash; call once. */
  digest(): Checksums {
    const out: Checksums = {};
    if (this.sha256) out.sha256 = this.sha256.digest('hex');
    if (this.md5) out.md5 = this.md5.digest('hex');
    if (this.crc) out.crc32c = this.crc.hex();
    return out;
  }
}

/**
 * A pass-through Transform that hashes what flows through it. After 'end' (or in `flush`), `result`
 * holds the digests and byte count. Never buffers.
 */
export class HashingTransform extends Transform {
  private readonly hasher: MultiHasher;
  result: (Checksums & { bytes: number }) | undefined;

  constructor(extra: Iterable<ChecksumAlgorithm> = [], private readonly onDone?: (r: Checksums & { bytes: number }) => Error | undefined) {
    super();
    holdErrors(this); // it is the body a verified get returns
    this.hasher = new MultiHasher(extra);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hasher.update(chunk);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    const bytes = this.hasher.bytes;
    this.result = { ...this.hasher.digest(), bytes };
    cb(this.onDone?.(this.result) ?? null);
  }
}

/**
 * The MD5 an `expect` hands over to a put, lower-case, when it is a well-formed one. Drivers send
 * it for the provider to check (transactional Content-MD5, md5Hash) instead of computing their own:
 * the provider then refuses bytes that do not hash to it.
 */
export function handedOverMd5(expect: Checksums | undefined): string | undefined {
  const md5 = expect?.md5;
  return md5 !== undefined && /^[0-9a-f]{32}$/i.test(md5) ? md5.toLowerCase() : undefined;
}

/** Differences between expected and actual digests, on the algorithms both have. */
export function checksumMismatches(expected: Checksums, actual: Checksums): ChecksumAlgorithm[] {
  const out: ChecksumAlgorithm[] = [];
  for (const alg of ['sha256', 'md5', 'crc32c'] as const) {
    const e = expected[alg];
    const a = actual[alg];
    if (e !== undefined && a !== undefined && e.toLowerCase() !== a.toLowerCase()) out.push(alg);
  }
  return out;
}


/**
 * A Transform that passes bytes through and, at the end, fails with IntegrityError if their
 * digest or length differs from `expected` / `expectedSize`. The caller never sees a clean end of a
 * corrupted stream.
 */
export function verifyingTransform(expected: Checksums, opts: { expectedSize?: number; provider?: string; key?: string } = {}): HashingTransform {
  const algs: ChecksumAlgorithm[] = [];
  if (expected.md5 && !expected.sha256) algs.push('md5');
  if (expected.crc32c && !expected.sha256) algs.push('crc32c');
  return new HashingTransform(algs, (actual) => {
    if (opts.expectedSize !== undefined && actual.bytes !== opts.expectedSize) {
      return new IntegrityError(`read ${actual.bytes} bytes, expected ${opts.expectedSize}`, { provider: opts.provider, key: opts.key });
    }
    const bad = checksumMismatches(expected, actual);
    if (bad.length > 0) {
      return new IntegrityError(`${bad.join(', ')} mismatch: the stored bytes are not the bytes that were written`, { provider: opts.provider, key: opts.key });
    }
    return undefined;
  });
}

export function hexToBase64(hex: string): string {
  return Buffer.from(hex, 'hex').toString('base64');
}

export function base64ToHex(b64: string): string {
  return Buffer.from(b64, 'base64').toString('hex');
}

/** Digests of an in-memory buffer. */
export function digestBuffer(buf: Uint8Array, extra: Iterable<ChecksumAlgorithm> = []): Checksums {
  const h = new MultiHasher(extra);
  h.update(buf);
  return h.digest();
}
