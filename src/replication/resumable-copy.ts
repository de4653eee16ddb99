import {
  Backoff, Crc32c, IntegrityError, describeError, MultiHasher, PartSource, PreconditionFailedError, bodyChunks, isCloudmuxError,
  partCount, partRange, throwIfAborted, uploadParts,
} from '../core/index.js';
import type {
  BlobStore, ChecksumAlgorithm, Checksums, ObjectMeta, ResumableUploads, UploadedPart,
} from '../core/index.js';
import { carriedMetadata, compareChecksums, hashObject, type ChecksumMode, type CopyObjectResult } from './copier.js';
import type { JournalUpload, UploadJournal } from './journal.js';
import { RETRY_BACKOFF } from './plan.js';
import { sharedPartDigestPool, type PartDigests } from '../core/part-digests.js';

export interface ResumableCopyOptions {
  signal?: AbortSignal;
  /** The source version to copy (from the listing); PreconditionFailed when the source is no longer it. */
  sourceEtag?: string;
  /** How the copy is verified; default `auto`. */
  verify?: ChecksumMode;
  /** Where the upload handle and finished parts are recorded; without one, a failed upload is aborted (nothing to resume from). */
  journal?: UploadJournal;
  /** Parts uploaded at once. Default 4. Memory ≈ (partConcurrency + 1) × part size. */
  partConcurrency?: number;
  /** Attempts per part on Throttled/Transient (the part is in memory, so resending is cheap). Default 3. */
  partAttempts?: number;
  /**
   * Hash on worker threads (default true): the whole object's SHA-256 and each part's digests
   * (its CRC32C for the journal, the MD5 or SHA-256 the destination checks) are computed beside
   * the transfer instead of on the thread that moves the bytes. Not for a destination that takes
   * its parts in order (GCS), which has one part in flight anyway.
   */
  hashOffThread?: boolean;
  /** Bytes uploaded just now (a delta). Parts kept from an earlier run are not reported. */
  onProgress?(bytes: number): void;
  /** A part was accepted by the destination. */
  onPart?(part: { key: string; partNumber: number; parts: number; size: number }): void;
  /** An earlier run's upload was picked up, keeping `kept` of its `parts`. */
  onResume?(info: { key: string; kept: number; parts: number }): void;
}

export interface ResumableCopyResult extends CopyObjectResult {
  /** Parts kept from an earlier run (not uploaded again). */
  keptParts: number;
  /** Parts uploaded by this call. */
  uploadedParts: number;
  /** Bytes uploaded by this call. */
  uploadedBytes: number;
}

/**
 * Copies one large object into a destination that offers {@link ResumableUploads}, so that a copy
 * killed part-way (kill -9, a crash, a failed part) continues from the parts already uploaded
 * instead of from byte 0.
 *
 * # Contract
 * - The upload handle is journalled before the first part is sent; each part after the destination
 *   accepted it (number, size, CRC32C, provider etag/checksum). A part counts as done on a resume
 *   only if the destination lists it (`listParts`: the provider, not the journal, is the truth)
 *   with the right size, and the journal recorded it with the same etag/checksum where both have one.
 * - The source is read pinned to the version the upload started from (ifMatch). A source that
 *   changed since is PreconditionFailed; the open upload is then aborted and the next attempt
 *   starts over. A source that vanished is NotFound.
 * - SHA-256 of the whole object: on a fresh upload, hashed while streaming. On a resume, the kept
 *   prefix is not uploaded again but still has to be hashed: when the source records its SHA-256
 *   (`cloudmux_sha256`) only the missing parts are read (one ranged get) and the digest is the
 *   source's; otherwise the whole source is read again and the kept parts are only hashed (cost:
 *   one source read of the prefix, no upload). Node cannot serialise a hash state, so there is
 *   no cheaper exact way.
 * - MD5 of the whole object (what Azure records as a block blob's Content-MD5, and GCS checks at
 *   completion): the source's, when it has one; computed while streaming only when the source has
 *   an MD5 but no SHA-256 to check the read against. A source without an MD5 (an S3 multipart
 *   object) gives an Azure destination no Content-MD5: the blob carries `cloudmux_sha256`, which
 *   `cloudmux verify` uses, and every block was checked on arrival by its transactional MD5.
 * - Verification: a fresh upload is verified as the copier verifies a streamed put (digests the
 *   destination reports against those computed while streaming; every part was checked by the
 *   provider on arrival). A resumed one is verified by reading the destination back and comparing
 *   its SHA-256, since part of its bytes were sent by another process (`reread-sha256`).
 * - A failure leaves the upload open for the next attempt when there is a journal; without one the
 *   upload is aborted. An abort (signal) never aborts the upload.
 */
export async function resumableCopy(
  src: BlobStore, key: string, dst: BlobStore & ResumableUploads, opts: ResumableCopyOptions = {},
): Promise<ResumableCopyResult> {
  const signal = opts.signal;
  const journal = opts.journal;
  const mode = opts.verify ?? 'auto';
  throwIfAborted(signal, { provider: src.provider, key });
  const srcMeta = await src.head(key, { signal });
  if (opts.sourceEtag !== undefined && srcMeta.etag !== opts.sourceEtag) {
    throw new PreconditionFailedError(`source etag is ${srcMeta.etag}, not ${opts.sourceEtag}`, { provider: src.provider, key });
  }
  const size = srcMeta.size;

  // Pick up an earlier run's upload if it is for this very source version and still there.
  let prior = await journal?.upload(key);
  if (prior && prior.state !== 'open') prior = undefined;
  let kept = new Map<number, UploadedPart>();
  if (prior && journal) {
    if (prior.srcEtag !== srcMeta.etag || prior.size !== size) {
      await abortQuietly(dst, prior.handle);
      await journal.uploadClosed(key, prior.srcEtag, 'aborted', `source changed (${prior.srcEtag} -> ${srcMeta.etag})`);
      prior = undefined;
    } else {
      const listed = await dst.listParts(prior.handle, { signal }).catch((e: unknown) => {
        // Gone (completed, aborted, expired) or unreadable: start over rather than fail the object.
        if (isCloudmuxError(e, 'NotFound') || isCloudmuxError(e, 'InvalidArgument')) return undefined;
        throw e;
      });
      if (listed === undefined) {
        await journal.uploadClosed(key, prior.srcEtag, 'aborted', 'the destination no longer has the upload');
        prior = undefined;
      } else {
        kept = trustedParts(prior, listed);
        await journal.uploadResumed(key, srcMeta.etag, kept.size, partCount(size, prior.partSize));
        opts.onResume?.({ key, kept: kept.size, parts: partCount(size, prior.partSize) });
      }
    }
  }

  let handle: string;
  let partSize: number;
  if (prior) {
    handle = prior.handle;
    partSize = prior.partSize;
  } else {
    partSize = dst.uploadPartSize(size);
    handle = await dst.startUpload(key, {
      size, partSize, signal, contentType: srcMeta.contentType, metadata: carriedMetadata(srcMeta), sha256: srcMeta.checksums.sha256,
    });
    await journal?.uploadStarted(key, { handle, srcEtag: srcMeta.etag, size, partSize });
  }

  const parts = partCount(size, partSize);
  const resumed = kept.size > 0;
  const firstMissing = firstNotIn(kept, parts);
  const srcSha = srcMeta.checksums.sha256;
  // With the source's own SHA-256 the kept prefix need not be read again (verified by a re-read of the destination).
  const skipPrefix = resumed && srcSha !== undefined;
  const startPart = skipPrefix ? firstMissing : 1;
  // The whole object's CRC32C (each part's is computed anyway, for the journal) only where it is
  // checked: against the source's (GCS), or by a destination that records it (GCS checks it at
  // completion). A second pass is ~0.1 s of CPU per 256 MiB.
  const extra: ChecksumAlgorithm[] = srcMeta.checksums.crc32c !== undefined || dst.capabilities.nativeChecksums.includes('crc32c') ? ['crc32c'] : [];
  // MD5 is the one digest that costs a full software pass (SHA-256 and CRC32C are hardware-assisted):
  // computed only when it is all the source has to check the read against. Otherwise the source's
  // own MD5, where it has one, goes to the destination (the SHA-256 check proves these are its bytes).
  const srcMd5 = srcMeta.checksums.md5;
  if (!skipPrefix && srcMd5 !== undefined && srcSha === undefined) extra.push('md5');
  const deferLast = dst.deferLastPart === true;
  const digests = opts.hashOffThread !== false && !deferLast
    ? sharedPartDigestPool().job(skipPrefix ? [] : ['sha256', ...extra], { provider: dst.provider, key }, signal)
    : undefined;
  const whole = skipPrefix || digests ? undefined : new MultiHasher(extra);
  const wanted = new Set(dst.partDigests ?? []);
  const partWants = { crc32c: true, md5: wanted.has('md5'), sha256: wanted.has('sha256') };

  const uploaded = new Map<number, UploadedPart>();
  let uploadedBytes = 0;
  let completed = false;
  let lastPart: Buffer | undefined;
  try {
    if (startPart <= parts && (size > 0 || !kept.has(1))) {
      await streamParts();
    }
    let checksums: Checksums;
    // What was read from the source: hashed here, or on a digest worker.
    const read = whole ? { ...whole.digest(), bytes: whole.bytes } : digests && !skipPrefix ? await digests.digest() : undefined;
    digests?.abort(); // ended (or, past a kept prefix, only per-part digests): let the worker go
    if (read) {
      const { bytes, ...digested } = read;
      if (bytes !== size) throw new IntegrityError(`read ${bytes} bytes from the source, which reported ${size}`, { provider: src.provider, key });
      checksums = digested;
      const bad = compareChecksums(srcMeta.checksums, checksums, 'auto').mismatch;
      if (bad) throw new IntegrityError(`the source's bytes do not match its recorded ${bad}`, { provider: src.provider, key });
      if (checksums.md5 === undefined && srcMd5 !== undefined) checksums.md5 = srcMd5;
    } else {
      checksums = { sha256: srcSha!, ...(srcMd5 !== undefined ? { md5: srcMd5 } : {}) };
    }
    const all: UploadedPart[] = [];
    for (let n = 1; n <= parts; n++) all.push(uploaded.get(n) ?? kept.get(n) ?? { partNumber: n, size: partRange(size, partSize, n).length });
    throwIfAborted(signal, { provider: dst.provider, key });
    const meta = await dst.completeUpload(handle, all, { signal, checksums: { ...checksums, sha256: checksums.sha256! }, ...(lastPart ? { lastPart } : {}) });
    if (lastPart) {
      uploadedBytes += lastPart.byteLength;
      opts.onProgress?.(lastPart.byteLength);
    }
    completed = true;
    await journal?.uploadClosed(key, srcMeta.etag, 'completed', `${uploaded.size} parts uploaded, ${kept.size} kept`);
    const verifiedBy = await verify(dst, key, meta, checksums, size, mode, resumed, signal);
    return {
      meta, bytes: size, sha256: checksums.sha256, serverSide: false, verifiedBy,
      keptParts: parts - uploaded.size - (lastPart ? 1 : 0), uploadedParts: uploaded.size + (lastPart ? 1 : 0), uploadedBytes,
    };
  } catch (e) {
    digests?.abort();
    if (!completed) {
      if (!journal) await abortQuietly(dst, handle); // nothing could resume it
      else if (!signal?.aborted && (isCloudmuxError(e, 'PreconditionFailed') || isCloudmuxError(e, 'IntegrityError'))) {
        // The source changed or disagrees with itself: these parts can never be completed.
        await abortQuietly(dst, handle);
        await journal.uploadClosed(key, srcMeta.etag, 'aborted', describeError(e));
      }
    }
    throw e;
  }

  /**
   * Reads the source from `startPart` and uploads every part not kept through the part engine
   * (src/core/part-upload.ts): `partConcurrency` at a time, each retried in place.
   */
  async function streamParts(): Promise<void> {
    const from = partRange(size, partSize, startPart).offset;
    const got = await src.get(key, { signal, ifMatch: srcMeta.etag, ...(from > 0 ? { range: { offset: from } } : {}) });
    if (got.meta.etag !== srcMeta.etag) {
      got.body.destroy();
      throw new PreconditionFailedError(`source etag is ${got.meta.etag}, not ${srcMeta.etag}`, { provider: src.provider, key });
    }
    const source = new PartSource(bodyChunks(got.body), { partSize, hasher: whole, signal, provider: src.provider, key, shared: digests !== undefined });
    const backoff = new Backoff({ baseMs: RETRY_BACKOFF.baseMs, capMs: RETRY_BACKOFF.capMs, attempts: opts.partAttempts ?? 3 });
    let last: number;
    try {
      const result = await uploadParts<PartDigests, UploadedPart>(source, async ({ number, bytes, prepared: { crc32c, ...checksums }, signal: partSignal }) => {
        const p = await dst.uploadPart(handle, number, bytes, { signal: partSignal, ...(digests ? { checksums } : {}) });
        uploaded.set(number, p);
        await journal?.partUploaded(key, { partNumber: number, size: p.size, crc32c: crc32c!, etag: p.etag, sha256: p.checksums?.sha256 });
        uploadedBytes += bytes.byteLength;
        opts.onProgress?.(bytes.byteLength);
        opts.onPart?.({ key, partNumber: number, parts, size: bytes.byteLength });
        return p;
      }, {
        // Where the last byte commits the object (GCS), parts go in order and the last one to completeUpload.
        concurrency: deferLast ? 1 : Math.max(1, opts.partConcurrency ?? 4),
        holdLast: deferLast,
        backoff,
        signal,
        firstNumber: startPart,
        maxParts: parts,
        tooManyParts: () => new IntegrityError(`the source has more than the ${size} bytes it reported`, { provider: src.provider, key }),
        // A part already at the destination (same CRC32C as journalled) is hashed, not sent.
        prepare: ({ number, bytes }) => {
          const known = kept.has(number) ? prior?.parts.find((p) => p.partNumber === number) : undefined;
          const keep = (d: PartDigests): PartDigests | null => (known && known.crc32c === d.crc32c ? null : d);
          return digests ? digests.part(bytes, partWants).then(keep) : keep({ crc32c: new Crc32c().update(bytes).hex() });
        },
      });
      last = result.lastNumber;
      if (result.held) lastPart = result.held.bytes;
    } finally {
      if (!got.body.destroyed) got.body.destroy();
      await source.close();
    }
    // An empty object is one empty part, which the source never yields.
    if (size === 0 && !kept.has(1) && !uploaded.has(1)) {
      if (deferLast) lastPart = Buffer.alloc(0);
      else {
        const p = await dst.uploadPart(handle, 1, Buffer.alloc(0), { signal });
        uploaded.set(1, p);
        await journal?.partUploaded(key, { partNumber: 1, size: p.size, crc32c: new Crc32c().hex(), etag: p.etag, sha256: p.checksums?.sha256 });
        opts.onPart?.({ key, partNumber: 1, parts, size: 0 });
      }
    }
    else if (last !== parts) throw new IntegrityError(`the source ended after part ${last} of ${parts}`, { provider: src.provider, key });
  }
}

/**
 * The parts of an earlier upload a resume may keep: listed by the destination with the size the
 * layout needs, and recorded by the journal with the same provider etag / checksum where both
 * have one. A part the destination lists but the journal never saw (the run died between the two)
 * is uploaded again: its bytes cannot be tied to the source without it.
 */
export function trustedParts(prior: JournalUpload, listed: readonly UploadedPart[]): Map<number, UploadedPart> {
  const recorded = new Map(prior.parts.map((p) => [p.partNumber, p]));
  const out = new Map<number, UploadedPart>();
  for (const p of listed) {
    const j = recorded.get(p.partNumber);
    if (!j) continue;
    const want = partRange(prior.size, prior.partSize, p.partNumber).length;
    if (p.size !== want || j.size !== want) continue;
    if (p.etag !== undefined && j.etag !== null && p.etag !== j.etag) continue;
    if (p.checksums?.sha256 !== undefined && j.sha256 !== null && p.checksums.sha256 !== j.sha256) continue;
    // Fill in what the provider did not list but completion needs (S3 part ETag).
    out.set(p.partNumber, { ...p, etag: p.etag ?? j.etag ?? undefined, ...(p.checksums || !j.sha256 ? {} : { checksums: { sha256: j.sha256 } }) });
  }
  return out;
}

function firstNotIn(kept: Map<number, UploadedPart>, parts: number): number {
  for (let n = 1; n <= parts; n++) if (!kept.has(n)) return n;
  return parts + 1;
}

async function verify(
  dst: BlobStore, key: string, meta: ObjectMeta, expected: Checksums, size: number, mode: ChecksumMode, resumed: boolean, signal: AbortSignal | undefined,
): Promise<string> {
  const fail = (why: string): never => {
    throw new IntegrityError(`destination does not verify: ${why}`, { provider: dst.provider, key });
  };
  if (meta.size !== size) fail(`size ${meta.size}, expected ${size}`);
  if (mode === 'size-only') return 'size-only';
  if (!resumed) {
    const cmp = compareChecksums(expected, meta.checksums, mode);
    if (cmp.mismatch) fail(`${cmp.mismatch} mismatch`);
    if (cmp.matched.length > 0) return cmp.matched.join('+');
  }
  const reread = await hashObject(dst, key, { ifMatch: meta.etag, signal });
  if (reread.bytes !== size) fail(`re-read ${reread.bytes} bytes, expected ${size}`);
  if (reread.checksums.sha256 !== expected.sha256) fail('sha256 mismatch on re-read');
  return 'reread-sha256';
}

async function abortQuietly(dst: ResumableUploads, handle: string): Promise<void> {
  try {
    await dst.abortUpload(handle);
  } catch {
    // Best effort: parts left behind expire (S3 lifecycle rule, Azure after 7 days).
  }
}
