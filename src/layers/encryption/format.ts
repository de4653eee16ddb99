import { createCipheriv, createDecipheriv, createSecretKey, randomBytes, type CipherGCM, type DecipherGCM, type KeyObject } from 'node:crypto';
import { IntegrityError, InvalidArgumentError, type CloudmuxError } from '../../core/errors.js';

/**
 * cloudmux encrypted object format, version 1 (docs/encryption-format.md is the normative text).
 *
 * Body: the plaintext cut into segments of `segmentSize` bytes (the last one shorter, possibly
 * empty only when the whole plaintext is), each sealed with AES-256-GCM under the object's data
 * key (DEK) and stored as ciphertext || 16-byte tag. Nonce of segment i (STREAM construction):
 * 7-byte random prefix || uint32be(i) || flag, flag 0x01 on the last segment and 0x00 otherwise,
 * so truncation, reordering, dropped or appended segments fail authentication. The AAD of every
 * segment binds the format version and segment size.
 */
export const FORMAT_VERSION = 1;
export const TAG_BYTES = 16;
export const DEK_BYTES = 32;
export const NONCE_PREFIX_BYTES = 7;
export const DEFAULT_SEGMENT_SIZE = 64 * 1024;
/** Segment sizes allowed by v1 (small ones exist for tests; larger bound plaintext held per segment). */
export const MIN_SEGMENT_SIZE = 16;
export const MAX_SEGMENT_SIZE = 16 * 1024 * 1024;
/** The counter is 32 bits. */
export const MAX_SEGMENTS = 2 ** 32 - 1;

const FLAG_MIDDLE = 0x00;
const FLAG_LAST = 0x01;
/** Nonce flag reserved for the encrypted plaintext digest kept in metadata; never used by a segment. */
const FLAG_DIGEST = 0x02;
const DIGEST_COUNTER = 0xffffffff;

const AAD_LABEL = Buffer.from('cloudmux-enc v1', 'ascii');

const aadCache = new Map<number, Buffer>();

/** Additional data of every segment: label || uint32be(segmentSize). Shared, never mutated. */
export function segmentAad(segmentSize: number): Buffer {
  let aad = aadCache.get(segmentSize);
  if (!aad) {
    aad = Buffer.alloc(AAD_LABEL.length + 4);
    AAD_LABEL.copy(aad);
    aad.writeUInt32BE(segmentSize, AAD_LABEL.length);
    if (aadCache.size < 64) aadCache.set(segmentSize, aad);
  }
  return aad;
}

export function segmentNonce(prefix: Uint8Array, counter: number, last: boolean): Buffer {
  return nonce(prefix, counter, last ? FLAG_LAST : FLAG_MIDDLE);
}

function nonce(prefix: Uint8Array, counter: number, flag: number): Buffer {
  const n = Buffer.allocUnsafe(12);
  n.set(prefix.subarray(0, NONCE_PREFIX_BYTES), 0);
  n.writeUInt32BE(counter, NONCE_PREFIX_BYTES);
  n[11] = flag;
  return n;
}

export function checkSegmentSize(segmentSize: number): void {
  if (!Number.isSafeInteger(segmentSize) || segmentSize < MIN_SEGMENT_SIZE || segmentSize > MAX_SEGMENT_SIZE) {
    throw new InvalidArgumentError(`segment size must be an integer in [${MIN_SEGMENT_SIZE}, ${MAX_SEGMENT_SIZE}], got ${segmentSize}`);
  }
}

/** Segments of a plaintext of `size` bytes: at least one (an empty plaintext is one empty last segment). */
export function segmentCount(plainSize: number, segmentSize: number): number {
  return Math.max(1, Math.ceil(plainSize / segmentSize));
}

/** Stored (ciphertext) size of a plaintext of `plainSize` bytes. */
export function cipherSize(plainSize: number, segmentSize: number): number {
  return plainSize + TAG_BYTES * segmentCount(plainSize, segmentSize);
}

/**
 * The plaintext size a ciphertext of `storedSize` bytes must hold, or undefined if no plaintext
 * encrypts to that size (then the object is not in this format, or was cut).
 */
export function plainSize(storedSize: number, segmentSize: number): number | undefined {
  if (!Number.isSafeInteger(storedSize) || storedSize < TAG_BYTES) return undefined;
  const n = Math.ceil(storedSize / (segmentSize + TAG_BYTES));
  const p = storedSize - n * TAG_BYTES;
  // The last segment carries at least one byte unless it is the only one.
  if (p < 0 || (n > 1 && p <= (n - 1) * segmentSize)) return undefined;
  return p;
}

/** The stored byte range holding plaintext [offset, offset+length) and where the plaintext starts in it. */
export interface SegmentSpan {
  firstSegment: number;
  /** Inclusive. */
  lastSegment: number;
  /** Ciphertext range to fetch. */
  cipherOffset: number;
  cipherLength: number;
  /** Plaintext bytes to drop from the front of the first decrypted segment. */
  skip: number;
}

export function segmentSpan(offset: number, length: number, plain: number, segmentSize: number): SegmentSpan {
  const stride = segmentSize + TAG_BYTES;
  const n = segmentCount(plain, segmentSize);
  const firstSegment = Math.min(Math.floor(offset / segmentSize), n - 1);
  const lastSegment = length === 0 ? firstSegment : Math.min(Math.floor((offset + length - 1) / segmentSize), n - 1);
  const cipherOffset = firstSegment * stride;
  const cipherEnd = Math.min(cipherSize(plain, segmentSize), (lastSegment + 1) * stride);
  return { firstSegment, lastSegment, cipherOffset, cipherLength: cipherEnd - cipherOffset, skip: offset - firstSegment * segmentSize };
}

/**
 * The DEK for successive segment ciphers: raw bytes for the first (a one-segment object pays no
 * import), then a KeyObject imported once instead of once per segment.
 */
class SegmentKey {
  private uses = 0;
  private imported: KeyObject | undefined;
  constructor(private readonly raw: Uint8Array) {}
  next(): Uint8Array | KeyObject {
    if (this.uses++ === 0) return this.raw;
    return (this.imported ??= createSecretKey(this.raw));
  }
}

export function newDataKey(): Buffer {
  return randomBytes(DEK_BYTES);
}

export function newNoncePrefix(): Buffer {
  return randomBytes(NONCE_PREFIX_BYTES);
}

/**
 * Seals a plaintext stream into segments. Feed chunks in order with `update`, then `final` once;
 * each returns the ciphertext produced so far. A segment is sealed only when the byte after it has
 * arrived (or at `final`), because the last-segment flag is part of its nonce; until then up to one
 * segment of input is held by reference, never copied.
 */
export class SegmentEncryptor {
  private readonly aad: Buffer;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private counter = 0;
  private finished = false;
  private readonly dek: SegmentKey;

  constructor(dek: Uint8Array, private readonly prefix: Uint8Array, private readonly segmentSize: number) {
    this.dek = new SegmentKey(dek);
    this.aad = segmentAad(segmentSize);
  }

  update(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let c = chunk;
    while (this.pendingBytes + c.byteLength > this.segmentSize) {
      const take = this.segmentSize - this.pendingBytes;
      this.pending.push(c.subarray(0, take));
      this.pendingBytes += take;
      c = c.subarray(take);
      this.seal(false, out);
    }
    if (c.byteLength > 0) {
      this.pending.push(c);
      this.pendingBytes += c.byteLength;
    }
    return out;
  }

  final(): Buffer[] {
    if (this.finished) throw new Error('SegmentEncryptor.final called twice');
    this.finished = true;
    const out: Buffer[] = [];
    this.seal(true, out);
    return out;
  }

  private seal(last: boolean, out: Buffer[]): void {
    if (this.counter > MAX_SEGMENTS - 1) throw new InvalidArgumentError('object too large for the v1 segment counter');
    const cipher: CipherGCM = createCipheriv('aes-256-gcm', this.dek.next(), segmentNonce(this.prefix, this.counter, last));
    cipher.setAAD(this.aad);
    for (const p of this.pending) {
      const ct = cipher.update(p);
      if (ct.byteLength > 0) out.push(ct);
    }
    const tail = cipher.final();
    if (tail.byteLength > 0) out.push(tail);
    out.push(cipher.getAuthTag());
    this.pending = [];
    this.pendingBytes = 0;
    this.counter++;
  }
}

export interface DecryptorOptions {
  dek: Uint8Array;
  prefix: Uint8Array;
  segmentSize: number;
  /** Plaintext size of the whole object (decides which segment carries the last flag and its length). */
  plainSize: number;
  /** First segment the ciphertext fed in starts at (0 for whole reads). */
  firstSegment?: number;
  /** Last segment to decrypt, inclusive (default: the object's last). */
  lastSegment?: number;
  provider?: string;
  key?: string;
}

/**
 * Opens segments of one object. Ciphertext chunks go in with `update` in order; each call returns
 * only plaintext whose segment has already passed authentication, so no unverified byte ever
 * reaches a caller. `final` fails unless exactly the expected segments arrived.
 */
export class SegmentDecryptor {
  private readonly aad: Buffer;
  private readonly lastOfObject: number;
  private readonly stop: number;
  private segment: number;
  private decipher: DecipherGCM | undefined;
  /** Ciphertext bytes (without tag) left in the current segment. */
  private bodyLeft = 0;
  private readonly tag = Buffer.alloc(TAG_BYTES);
  private tagHave = 0;
  private plain: Buffer[] = [];
  private readonly dek: SegmentKey;

  constructor(private readonly o: DecryptorOptions) {
    this.dek = new SegmentKey(o.dek);
    this.aad = segmentAad(o.segmentSize);
    this.lastOfObject = segmentCount(o.plainSize, o.segmentSize) - 1;
    this.segment = o.firstSegment ?? 0;
    this.stop = o.lastSegment ?? this.lastOfObject;
  }

  /** True once every expected segment has been opened; later input is an error. */
  get done(): boolean {
    return this.segment > this.stop;
  }

  update(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let c = chunk;
    while (c.byteLength > 0) {
      if (this.done) throw this.fail('data after the last segment');
      if (!this.decipher) this.begin();
      if (this.bodyLeft > 0) {
        const n = Math.min(this.bodyLeft, c.byteLength);
        const pt = this.decipher!.update(c.subarray(0, n));
        if (pt.byteLength > 0) this.plain.push(pt);
        this.bodyLeft -= n;
        c = c.subarray(n);
        continue;
      }
      const n = Math.min(TAG_BYTES - this.tagHave, c.byteLength);
      c.copy(this.tag, this.tagHave, 0, n);
      this.tagHave += n;
      c = c.subarray(n);
      if (this.tagHave === TAG_BYTES) this.open(out);
    }
    return out;
  }

  final(): Buffer[] {
    // An empty last segment has no body: it may still be waiting to begin.
    if (!this.done) throw this.fail(`stream ended before segment ${this.segment} was complete (truncated)`);
    return [];
  }

  private begin(): void {
    const last = this.segment === this.lastOfObject;
    if (this.segment > this.lastOfObject) throw this.fail('more segments than the recorded size allows');
    this.decipher = createDecipheriv('aes-256-gcm', this.dek.next(), segmentNonce(this.o.prefix, this.segment, last));
    this.decipher.setAAD(this.aad);
    this.bodyLeft = last ? this.o.plainSize - this.segment * this.o.segmentSize : this.o.segmentSize;
    this.tagHave = 0;
    this.plain = [];
  }

  private open(out: Buffer[]): void {
    const d = this.decipher!;
    d.setAuthTag(this.tag);
    try {
      const tail = d.final();
      if (tail.byteLength > 0) this.plain.push(tail);
    } catch (e) {
      throw this.fail(`segment ${this.segment} failed authentication (tampered, reordered, truncated, or wrong key)`, e);
    }
    for (const p of this.plain) out.push(p);
    this.plain = [];
    this.decipher = undefined;
    this.segment++;
  }

  private fail(message: string, cause?: unknown): CloudmuxError {
    return new IntegrityError(`encrypted object: ${message}`, { provider: this.o.provider, key: this.o.key, cause });
  }
}

/** Seals the plaintext SHA-256 (32 bytes) under the DEK with a nonce no segment uses. */
export function sealDigest(dek: Uint8Array, prefix: Uint8Array, segmentSize: number, sha256: Uint8Array): Buffer {
  const c = createCipheriv('aes-256-gcm', dek, nonce(prefix, DIGEST_COUNTER, FLAG_DIGEST));
  c.setAAD(segmentAad(segmentSize));
  return Buffer.concat([c.update(sha256), c.final(), c.getAuthTag()]);
}

/** Opens a value from {@link sealDigest}; undefined when it fails authentication. */
export function openDigest(dek: Uint8Array, prefix: Uint8Array, segmentSize: number, sealed: Uint8Array): Buffer | undefined {
  if (sealed.byteLength !== 32 + TAG_BYTES) return undefined;
  const d = createDecipheriv('aes-256-gcm', dek, nonce(prefix, DIGEST_COUNTER, FLAG_DIGEST));
  d.setAAD(segmentAad(segmentSize));
  d.setAuthTag(sealed.subarray(32));
  try {
    return Buffer.concat([d.update(sealed.subarray(0, 32)), d.final()]);
  } catch {
    return undefined;
  }
}
