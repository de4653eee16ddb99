import { Transform, pipeline, type Readable, type TransformCallback } from 'node:stream';
import {
  IntegrityError, MultiHasher, RESERVED_PREFIX, copyFromStoreOf, encodeMetadataValue, isCloudmuxError, throwIfAborted,
} from '../core/index.js';
import type { BlobStore, ChecksumAlgorithm, Checksums, CopyOptions, ObjectMeta } from '../core/index.js';
import { carriedMetadata as carried, replacedMetadata } from '../core/system-metadata.js';

/**
 * How a copy (or a comparison) proves the destination holds the source's bytes.
 * - `auto`: SHA-256 when both sides know it, plus every provider-native digest both share; when
 *   nothing is shared, re-read the destination and hash it.
 * - `sha256`: SHA-256 only (re-read the destination when it does not record one).
 * - `native`: provider-computed digests only (MD5 of single-part objects, CRC32C); re-read the
 *   destination when none is shared.
 * - `size-only`: sizes only. Fast, proves little.
 */
export type ChecksumMode = 'auto' | 'sha256' | 'native' | 'size-only';

export const CHECKSUM_MODES: readonly ChecksumMode[] = ['auto', 'sha256', 'native', 'size-only'];

/**
 * Whether `verifiedBy` (what proved a copy or a comparison: `sha256+crc32c`, `reread-sha256`,
 * `size-only`, optionally recorded as `journal:…`) is proof under `mode`: anything for
 * `size-only`; for the others a digest that mode checks (a re-read SHA-256 counts for all).
 * Sizes alone prove nothing about content.
 */
export function provesUnder(verifiedBy: string, mode: ChecksumMode): boolean {
  if (mode === 'size-only') return true;
  const by = verifiedBy.replace(/^journal:/, '');
  if (by === 'reread-sha256') return true;
  const algs = by.split('+');
  if (mode === 'sha256') return algs.includes('sha256');
  if (mode === 'native') return algs.includes('crc32c') || algs.includes('md5');
  return algs.some((a) => a === 'sha256' || a === 'crc32c' || a === 'md5');
}

export interface CopyObjectOptions {
  signal?: AbortSignal;
  /** Pin the source version: the copy fails with PreconditionFailed if the source's etag is no longer this. */
  sourceEtag?: string;
  /** How the copy is verified; default `auto`. */
  verify?: ChecksumMode;
  /**
   * Replace the user metadata instead of carrying the source's (mapped to portable names) over.
   * cloudmux's own names that travel with the bytes (an encryption header) are carried either way.
   */
  metadata?: Record<string, string>;
  /** Replace the content type instead of carrying the source's over. */
  contentType?: string;
  /** Called with the number of bytes just moved (a delta, so concurrent copies can be summed). */
  onProgress?(bytes: number): void;
  /** Set false to force a streamed copy even where a server-side copy is possible. Default true. */
  serverSide?: boolean;
}

export interface CopyObjectResult {
  /** The destination object as written. */
  meta: ObjectMeta;
  /** Bytes copied. */
  bytes: number;
  /** SHA-256 of the bytes, when known (always for streamed copies). */
  sha256?: string;
  /** True when the bytes never passed through this process. */
  serverSide: boolean;
  /** What proved the copy: e.g. `sha256+crc32c`, `reread-sha256`, `size-only`. */
  verifiedBy: string;
}

/**
 * Copies one object between two stores (or within one) and verifies it before returning.
 *
 * # Contract
 * - Server-side when `src` and `dst` are the same store, or when `dst` declares
 *   `capabilities.copyFromStore` and can copy from `src` (src/core/copy-from-store.ts: same
 *   provider, endpoint and account); otherwise the bytes stream through in bounded
 *   memory (the destination's multipart/block upload) and are hashed while they stream.
 * - The source's known digests are passed as `expect` to the destination's put, so a write whose
 *   bytes differ fails and leaves nothing behind; a source whose bytes differ from its own recorded
 *   digest fails the read (IntegrityError).
 * - Content type and metadata are carried over (names mapped to portable ones, see
 *   {@link portableMetadata}); `cloudmux_sha256` is set at the destination.
 * - Verification never trusts an ETag as an MD5: only digests the drivers report in `checksums`.
 * - Errors: those of get/put/copy (NotFound, PreconditionFailed when `sourceEtag` no longer
 *   matches, …) and IntegrityError when the destination does not verify. Nothing is retried here.
 */
export async function copyObject(src: BlobStore, srcKey: string, dst: BlobStore, dstKey: string, opts: CopyObjectOptions = {}): Promise<CopyObjectResult> {
  throwIfAborted(opts.signal, { provider: src.provider, key: srcKey });
  const mode = opts.verify ?? 'auto';
  if (opts.serverSide !== false) {
    const done = await tryServerSideCopy(src, srcKey, dst, dstKey, opts, mode);
    if (done) return done;
  }
  return streamCopy(src, srcKey, dst, dstKey, opts, mode);
}

async function tryServerSideCopy(src: BlobStore, srcKey: string, dst: BlobStore, dstKey: string, opts: CopyObjectOptions, mode: ChecksumMode): Promise<CopyObjectResult | undefined> {
  const sameStore = src === dst;
  const remote = sameStore ? undefined : copyFromStoreOf(dst, src);
  if (!sameStore && !remote) return undefined;
  // Head first: the source's digests are what the copy is verified against.
  const srcMeta = await src.head(srcKey, { signal: opts.signal });
  if (opts.sourceEtag !== undefined && srcMeta.etag !== opts.sourceEtag) {
    return streamCopy(src, srcKey, dst, dstKey, opts, mode); // let the pinned get report PreconditionFailed
  }
  const copyOpts: CopyOptions = { signal: opts.signal, sourceIfMatch: srcMeta.etag };
  if (opts.metadata !== undefined || opts.contentType !== undefined) {
    copyOpts.metadata = metadataFor(srcMeta, opts.metadata, dst, dstKey);
    copyOpts.contentType = opts.contentType ?? srcMeta.contentType;
  }
  let meta: ObjectMeta | undefined;
  if (sameStore) {
    if (srcKey === dstKey && copyOpts.metadata === undefined) meta = srcMeta;
    else meta = await dst.copy(srcKey, dstKey, copyOpts);
  } else {
    meta = await remote!.copyFromStore(src, srcKey, dstKey, copyOpts);
  }
  opts.onProgress?.(meta.size);
  const verifiedBy = await verifyAgainst(dst, dstKey, meta, srcMeta.checksums, srcMeta.size, mode, opts.signal, async () => (await hashObject(src, srcKey, { ifMatch: srcMeta.etag, signal: opts.signal })).checksums);
  return { meta, bytes: meta.size, sha256: meta.checksums.sha256 ?? srcMeta.checksums.sha256, serverSide: true, verifiedBy };
}

async function streamCopy(src: BlobStore, srcKey: string, dst: BlobStore, dstKey: string, opts: CopyObjectOptions, mode: ChecksumMode): Promise<CopyObjectResult> {
  // The source's recorded digests go to the destination as `expect`, so a source whose bytes rotted
  // behind its digest fails the put; a second hashing pass on the read would only cost CPU.
  const got = await src.get(srcKey, { signal: opts.signal, ifMatch: opts.sourceEtag });
  const srcMeta = got.meta;
  const algs = digestsToCompute(dst, srcMeta.checksums, mode);
  const expect = mode === 'size-only' ? undefined : pickChecksums(srcMeta.checksums);
  // With the source's SHA-256 handed over as `expect`, the destination hashes the bytes it writes
  // and refuses any that differ (the put contract); hashing them here as well would only double the
  // CPU. Without one, the copier's own SHA-256 is the only one there is.
  const hashing = { algs, sha256: expect?.sha256 === undefined };
  const putOpts = {
    signal: opts.signal,
    size: srcMeta.size,
    contentType: opts.contentType ?? srcMeta.contentType,
    metadata: metadataFor(srcMeta, opts.metadata, dst, dstKey),
    expect,
  };
  let meta: ObjectMeta;
  let streamed: Checksums & { bytes: number };
  if (srcMeta.size <= SMALL_OBJECT_BYTES) {
    // Small objects are read whole, then put as one buffer: no stream plumbing on either side and
    // the destination's single-request path, in no more memory than its streamed upload would hold.
    const read = await readSmall(got.body, srcMeta.size, hashing, opts.onProgress, src.provider, srcKey);
    streamed = read.digest;
    // Checked before writing: a short read must not reach the destination.
    if (streamed.bytes !== srcMeta.size) throw shortRead(streamed.bytes, srcMeta.size, src.provider, srcKey);
    meta = await dst.put(dstKey, read.bytes, putOpts);
  } else {
    const meter = new MeteringHasher(hashing, opts.onProgress);
    let streamError: Error | undefined;
    const body = pipeline(got.body, meter, (err) => {
      if (err) streamError = err;
    });
    try {
      meta = await dst.put(dstKey, body, putOpts);
    } catch (e) {
      // A source failure surfaces in the put as a generic stream error; report the source's own.
      if (streamError && isCloudmuxError(streamError) && !isCloudmuxError(e, 'Aborted')) throw streamError;
      throw e;
    } finally {
      if (!got.body.destroyed) got.body.destroy();
    }
    if (streamError) throw streamError;
    streamed = meter.result();
  }
  if (streamed.bytes !== srcMeta.size) throw shortRead(streamed.bytes, srcMeta.size, src.provider, srcKey);
  // Also caught by `expect` at a destination that honours it; this catches one that does not.
  if (expect) {
    const bad = compareChecksums(srcMeta.checksums, streamed, 'auto').mismatch;
    if (bad) throw new IntegrityError(`the source's bytes do not match its recorded ${bad}`, { provider: src.provider, key: srcKey });
  }
  // What the bytes are known to hash to: the source's record, where not computed here (and where
  // computed, equal to it, as just checked).
  const { bytes, ...computed } = streamed;
  const known: Checksums = { ...expect, ...computed };
  const verifiedBy = await verifyAgainst(dst, dstKey, meta, known, bytes, mode, opts.signal);
  return { meta, bytes, sha256: known.sha256, serverSide: false, verifiedBy };
}

/**
 * Objects up to this size are copied through one buffer. Every driver's streamed put holds at least
 * one part or block of 4–8 MiB for such an object anyway, and puts a buffer this size in one request.
 */
export const SMALL_OBJECT_BYTES = 8 * 1024 * 1024;

function shortRead(read: number, reported: number, provider: string, key: string): Error {
  return new IntegrityError(`read ${read} bytes from the source, which reported ${reported}`, { provider, key });
}

/**
 * Reads a whole (small) body into one buffer of the size the source announced, hashing as bytes
 * arrive. A body longer than announced stops being read at once (IntegrityError) instead of growing
 * the buffer; a shorter one is returned as read, for the caller's size check.
 */
async function readSmall(
  body: Readable, size: number, hashing: Hashing, onProgress: ((bytes: number) => void) | undefined, provider: string, key: string,
): Promise<{ bytes: Buffer; digest: Checksums & { bytes: number } }> {
  const hasher = new MultiHasher(hashing.algs, { sha256: hashing.sha256 });
  const bytes = Buffer.allocUnsafe(size);
  let have = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (have + chunk.byteLength > size) {
        throw new IntegrityError(`read more than the ${size} bytes the source reported`, { provider, key });
      }
      chunk.copy(bytes, have);
      have += chunk.byteLength;
      hasher.update(chunk);
      onProgress?.(chunk.byteLength);
    }
  } finally {
    if (!body.destroyed) body.destroy();
  }
  return { bytes: have === size ? bytes : bytes.subarray(0, have), digest: { ...hasher.digest(), bytes: have } };
}

/**
 * Checks the destination object against the expected digests and size; returns what proved it.
 * `rehashSource` supplies source digests when the expected ones share nothing with the destination.
 */
async function verifyAgainst(
  dst: BlobStore, dstKey: string, meta: ObjectMeta, expected: Checksums, expectedSize: number, mode: ChecksumMode,
  signal: AbortSignal | undefined, rehashSource?: () => Promise<Checksums>,
): Promise<string> {
  const fail = (why: string): never => {
    throw new IntegrityError(`destination does not verify: ${why}`, { provider: dst.provider, key: dstKey });
  };
  if (meta.size !== expectedSize) fail(`size ${meta.size}, expected ${expectedSize}`);
  if (mode === 'size-only') return 'size-only';
  const cmp = compareChecksums(expected, meta.checksums, mode);
  if (cmp.mismatch) fail(`${cmp.mismatch} mismatch`);
  if (cmp.matched.length > 0) return cmp.matched.join('+');
  // Nothing shared: read the destination back and hash it.
  let exp = expected;
  if (!exp.sha256 && rehashSource) exp = await rehashSource();
  const reread = await hashObject(dst, dstKey, { ifMatch: meta.etag, signal });
  if (reread.bytes !== expectedSize) fail(`re-read ${reread.bytes} bytes, expected ${expectedSize}`);
  if (exp.sha256 !== reread.checksums.sha256) fail('sha256 mismatch on re-read');
  return 'reread-sha256';
}

/**
 * Compares the digests two sides share, under a mode. `matched` lists the algorithms that agreed;
 * `mismatch` names the first that did not.
 */
export function compareChecksums(a: Checksums, b: Checksums, mode: ChecksumMode): { matched: ChecksumAlgorithm[]; mismatch?: ChecksumAlgorithm } {
  const algs: ChecksumAlgorithm[] = mode === 'sha256' ? ['sha256'] : mode === 'native' ? ['crc32c', 'md5'] : mode === 'auto' ? ['sha256', 'crc32c', 'md5'] : [];
  const matched: ChecksumAlgorithm[] = [];
  for (const alg of algs) {
    const x = a[alg];
    const y = b[alg];
    if (x === undefined || y === undefined) continue;
    if (x.toLowerCase() !== y.toLowerCase()) return { matched, mismatch: alg };
    matched.push(alg);
  }
  return { matched };
}

/** Digests to compute while streaming beyond SHA-256: those the destination reports natively, and those the mode checks. */
function digestsToCompute(dst: BlobStore, srcSums: Checksums, mode: ChecksumMode): ChecksumAlgorithm[] {
  if (mode === 'size-only' || mode === 'sha256') return [];
  const out = new Set<ChecksumAlgorithm>();
  // CRC32C is cheap (hardware) but not free (~0.2 s of CPU per 2,000 small objects in
  // bench/migrate.ts): only where the destination reports one to compare (GCS), or where it is all
  // the source has to check the read against.
  const onlyCrc = srcSums.crc32c !== undefined && srcSums.sha256 === undefined && srcSums.md5 === undefined;
  if (dst.capabilities.nativeChecksums.includes('crc32c') || onlyCrc) out.add('crc32c');
  // MD5 costs a full software pass: only when it is the check asked for, or the source's only digest.
  if ((mode === 'native' && dst.capabilities.nativeChecksums.includes('md5')) || (srcSums.md5 !== undefined && srcSums.sha256 === undefined)) out.add('md5');
  return [...out];
}

function pickChecksums(c: Checksums): Checksums | undefined {
  const out: Checksums = {};
  if (c.sha256) out.sha256 = c.sha256;
  if (c.md5) out.md5 = c.md5;
  if (c.crc32c) out.crc32c = c.crc32c;
  return Object.keys(out).length > 0 ? out : undefined;
}

/**
 * The source's metadata as the destination should get it: user names made portable, cloudmux's
 * own names that travel with the bytes (an encryption header) passed on as such, `cloudmux_sha256`
 * left to the put.
 */
export function carriedMetadata(meta: ObjectMeta): Record<string, string> {
  return carried(meta.metadata, portableMetadata);
}

/** What the destination gets: the caller's replacement or the source's user metadata, plus cloudmux's names of the bytes. */
function metadataFor(srcMeta: ObjectMeta, replacement: Record<string, string> | undefined, dst: BlobStore, dstKey: string): Record<string, string> {
  return replacement === undefined ? carriedMetadata(srcMeta) : replacedMetadata(srcMeta.metadata, replacement, dst.provider, dstKey);
}

/**
 * Maps metadata written by any tool onto the portable rules every provider accepts: names
 * lower-cased with anything outside `[a-z0-9_]` turned into `_` (Azure wants C# identifiers; S3
 * and GCS allow hyphens), a leading non-letter prefixed with `x`; values that are not printable
 * ASCII RFC 2047-encoded. Names that collide after mapping keep the first value.
 */
export function portableMetadata(metadata: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(metadata)) {
    let n = name.toLowerCase().replace(/[^a-z0-9_]/g, '_');
    // A name outside the letters, or one that would land in cloudmux's reserved room: prefixed.
    if (!/^[a-z]/.test(n) || n.startsWith(RESERVED_PREFIX)) n = `x${n}`;
    if (!(n in out)) out[n] = encodeMetadataValue(value);
  }
  return out;
}

/**
 * Reads a whole object and returns its digests (SHA-256 plus `algs`) and size. Memory stays
 * bounded: nothing is kept but the hash state.
 */
export async function hashObject(store: BlobStore, key: string, opts: { ifMatch?: string; signal?: AbortSignal; algs?: ChecksumAlgorithm[]; onProgress?(bytes: number): void } = {}): Promise<{ checksums: Checksums; bytes: number; meta: ObjectMeta }> {
  const { meta, body } = await store.get(key, { ifMatch: opts.ifMatch, signal: opts.signal });
  const hasher = new MultiHasher(opts.algs ?? []);
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      hasher.update(chunk);
      opts.onProgress?.(chunk.byteLength);
    }
  } finally {
    if (!body.destroyed) body.destroy();
  }
  const bytes = hasher.bytes;
  return { checksums: hasher.digest(), bytes, meta };
}

/** The digests a copy computes as bytes pass: `algs`, and SHA-256 unless the destination computes it anyway. */
interface Hashing {
  algs: ChecksumAlgorithm[];
  sha256: boolean;
}

/** Pass-through that hashes and reports progress per chunk. */
class MeteringHasher extends Transform {
  private readonly hasher: MultiHasher;
  private final: (Checksums & { bytes: number }) | undefined;

  constructor(hashing: Hashing, private readonly onProgress?: (bytes: number) => void) {
    super();
    this.hasher = new MultiHasher(hashing.algs, { sha256: hashing.sha256 });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hasher.update(chunk);
    this.onProgress?.(chunk.byteLength);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    const bytes = this.hasher.bytes;
    this.final = { ...this.hasher.digest(), bytes };
    cb();
  }

  result(): Checksums & { bytes: number } {
    if (!this.final) throw new IntegrityError('the source stream ended before all bytes were read');
    return this.final;
  }
}
