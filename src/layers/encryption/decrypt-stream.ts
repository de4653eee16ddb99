// The encryption layer's read side: the stored range a ranged read asks for, and the streams that
// turn stored bytes into authenticated plaintext.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { holdErrors } from '../../core/body.js';
import { ByteWindow } from '../../core/byte-window.js';
import { IntegrityError, type CloudmuxError } from '../../core/errors.js';
import type { ByteRange } from '../../core/types.js';
import { SegmentDecryptor, TAG_BYTES } from './format.js';

/**
 * The stored range to ask for before the header is known, assuming `segmentSize`: whole segments
 * covering an offset range, or enough trailing segments to cover a suffix.
 */
export function planStoredRange(range: ByteRange, segmentSize: number): ByteRange {
  const stride = segmentSize + TAG_BYTES;
  if ('suffix' in range) return { suffix: (Math.ceil(range.suffix / segmentSize) + 1) * stride };
  const first = Math.floor(range.offset / segmentSize);
  if (range.length === undefined) return { offset: first * stride };
  const last = Math.floor((range.offset + range.length - 1) / segmentSize);
  return { offset: first * stride, length: (last - first + 1) * stride };
}

export interface DecryptStreamOptions {
  dek: Buffer;
  prefix: Buffer;
  segmentSize: number;
  plainSize: number;
  provider: string;
  key: string;
  firstSegment?: number;
  lastSegment?: number;
  /** Stored bytes to drop before the first segment starts. */
  cipherSkip: number;
  /** Stored bytes of the segments to open. */
  cipherLength: number;
  plainSkip: number;
  plainLength: number;
  /** Bytes after the segments are an error (whole reads), not over-fetch (ranges). */
  strictEnd: boolean;
  /** Hex SHA-256 the plaintext must have (whole reads with verify). */
  expectSha256?: string;
}

/**
 * Decrypts stored bytes as they stream, in memory bounded by one segment. Only authenticated
 * plaintext is emitted; the stream fails with IntegrityError on any tampering or truncation.
 */
export function decryptStream(source: Readable, o: DecryptStreamOptions): Readable {
  async function* run(): AsyncGenerator<Buffer> {
    const dec = new SegmentDecryptor({
      dek: o.dek, prefix: o.prefix, segmentSize: o.segmentSize, plainSize: o.plainSize,
      firstSegment: o.firstSegment, lastSegment: o.lastSegment, provider: o.provider, key: o.key,
    });
    const hash = o.expectSha256 ? createHash('sha256') : undefined;
    const cipher = new ByteWindow(o.cipherSkip, o.cipherLength);
    const plain = new ByteWindow(o.plainSkip, o.plainLength);
    const fail = (m: string): CloudmuxError => new IntegrityError(`encrypted object: ${m}`, { provider: o.provider, key: o.key });
    for await (const raw of source) {
      const c = cipher.take(raw as Buffer);
      if (cipher.overflowed && o.strictEnd) throw fail('more stored bytes than the object size');
      for (const segment of dec.update(c)) {
        const p = plain.take(segment);
        hash?.update(p);
        if (p.byteLength > 0) yield p;
      }
      if (cipher.done && !o.strictEnd) break;
    }
    dec.final();
    if (!plain.done) throw fail(`${plain.remaining} plaintext bytes missing`);
    if (hash && hash.digest('hex') !== o.expectSha256) throw fail('plaintext SHA-256 does not match the recorded digest');
  }
  return holdErrors(Readable.from(run(), { objectMode: false }));
}

/** Whole read of an unencrypted object (allowPlaintext) with `verify`: the inner digest is of the plaintext. */
export function decryptlessVerify(source: Readable, sha256: string | undefined, size: number, provider: string, key: string): Readable {
  async function* run(): AsyncGenerator<Buffer> {
    const h = createHash('sha256');
    let n = 0;
    for await (const c of source) {
      h.update(c as Buffer);
      n += (c as Buffer).byteLength;
      yield c as Buffer;
    }
    if (n !== size || (sha256 !== undefined && h.digest('hex') !== sha256)) {
      throw new IntegrityError('stored bytes do not match the stored digest', { provider, key });
    }
  }
  return holdErrors(Readable.from(run(), { objectMode: false }));
}
