import { IntegrityError, InvalidArgumentError } from './errors.js';
import type { BlobStore, ChecksumAlgorithm, Checksums, ObjectMeta, SignalOptions } from './types.js';

/**
 * An upload in progress, serialised: a string the caller may store (a journal row) and hand back
 * to the same kind of store in another process. Its content is the driver's business (S3: the
 * uploadId; Azure: a block-id prefix) plus the key, size and part size the upload was started
 * with; never a credential.
 */
export type UploadHandle = string;

export interface StartUploadOptions extends SignalOptions {
  /** Bytes of the whole object; fixed for the upload. */
  size: number;
  /** Bytes of every part but the last (which holds the rest). Use {@link ResumableUploads.uploadPartSize}. */
  partSize: number;
  contentType?: string;
  /** Portable user metadata (see validateMetadata). `cloudmux_sha256` is set at completion. */
  metadata?: Record<string, string>;
  /**
   * The SHA-256 of the object when known up front (a source that records one). Drivers whose
   * metadata is fixed at start (S3) store it then and skip a metadata rewrite at completion.
   */
  sha256?: string;
}

/** One part the provider holds. */
export interface UploadedPart {
  /** 1-based. Part n holds bytes [(n-1)·partSize, min(n·partSize, size)). */
  partNumber: number;
  size: number;
  /** Provider's tag of the part where it has one (S3 part ETag, quoted as S3 sent it). */
  etag?: string;
  /** Digests of the part's bytes the provider reports or verified (S3 flexible SHA-256). */
  checksums?: Checksums;
}

export interface UploadPartOptions extends SignalOptions {
  /** Digests of the part's bytes, when already computed; the driver sends what its provider checks. */
  checksums?: Checksums;
}

export interface CompleteUploadOptions extends SignalOptions {
  /**
   * Digests of the whole object. `sha256` is required and stored as `cloudmux_sha256`; others are
   * sent where the provider records or checks them (Azure blob Content-MD5).
   */
  checksums: Checksums & { sha256: string };
  /**
   * The last part's bytes, for a store with `deferLastPart` (it never took the last part through
   * `uploadPart`). Ignored by other stores.
   */
  lastPart?: Uint8Array;
}

/**
 * Uploads a large object in fixed-size parts that survive the uploading process: a caller that
 * dies can start again from the parts the provider already holds. An optional ability of a store,
 * declared by `capabilities.resumableUpload` and found with {@link resumableUploads}; BlobStore's
 * required methods do not change.
 *
 * # Contract
 * - Nothing is visible at the key until `completeUpload` returns; an upload never completed leaves
 *   the previous object (or none) in place.
 * - Parts have one size (`partSize`, ≥ the provider's minimum; R2 wants them equal) except the
 *   last; part numbers are 1-based and contiguous. Uploading a part again replaces it (idempotent).
 * - Each part is sent with a checksum its provider verifies (S3 Content-MD5/x-amz-checksum-sha256,
 *   Azure transactional Content-MD5), so a part the provider lists holds the bytes that were sent.
 * - `listParts` is the provider's view and is what a resume trusts; it fails with NotFound when the
 *   upload no longer exists (completed, aborted, expired) where the provider can tell, else lists none.
 * - `completeUpload` takes every part in order and fails with InvalidArgument if they do not tile
 *   the object exactly. It writes unconditionally (last writer wins).
 * - `abortUpload` is best effort and idempotent: where the provider cannot drop parts (Azure's
 *   uncommitted blocks), they expire on their own (Azure: 7 days; S3: a lifecycle rule).
 * - Errors are CloudmuxErrors; nothing here retries (parts are in memory: the caller may resend).
 */
export interface ResumableUploads {
  /** The part size this store uses for an object of `size` bytes (within its part-count limit). */
  uploadPartSize(size: number): number;
  /** Objects above this size go through multipart/block uploads in `put` too. */
  readonly multipartThreshold: number;
  /**
   * True where the upload commits the object with its last byte (a GCS resumable session): parts
   * must then be sent in order, one at a time, and the last one goes to `completeUpload` as
   * `lastPart` instead of through `uploadPart`, so nothing is visible before completion.
   */
  readonly deferLastPart?: boolean;
  /**
   * The digests `uploadPart` sends with each part for the provider to check (Azure block MD5, S3
   * part MD5 or SHA-256). Given in `UploadPartOptions.checksums` they are used as they are;
   * otherwise `uploadPart` computes them. Absent: none.
   */
  readonly partDigests?: readonly ChecksumAlgorithm[];
  startUpload(key: string, opts: StartUploadOptions): Promise<UploadHandle>;
  uploadPart(handle: UploadHandle, partNumber: number, bytes: Uint8Array, opts?: UploadPartOptions): Promise<UploadedPart>;
  listParts(handle: UploadHandle, opts?: SignalOptions): Promise<UploadedPart[]>;
  completeUpload(handle: UploadHandle, parts: readonly UploadedPart[], opts: CompleteUploadOptions): Promise<ObjectMeta>;
  abortUpload(handle: UploadHandle, opts?: SignalOptions): Promise<void>;
}

const METHODS = ['uploadPartSize', 'startUpload', 'uploadPart', 'listParts', 'completeUpload', 'abortUpload'] as const;

/**
 * The store's resumable uploads, or undefined when it does not offer them. Both the declared flag
 * and the methods must be there: a layer that forwards the methods reports its inner store's flag,
 * and one that cannot pass parts through unchanged (encryption) declares the flag off.
 */
export function resumableUploads(store: BlobStore): (BlobStore & ResumableUploads) | undefined {
  if (store.capabilities.resumableUpload !== true) return undefined;
  const s = store as Partial<Record<(typeof METHODS)[number], unknown>>;
  return METHODS.every((m) => typeof s[m] === 'function') ? store as BlobStore & ResumableUploads : undefined;
}

/** Number of parts of an object of `size` bytes (at least one, so an empty object has one empty part). */
export function partCount(size: number, partSize: number): number {
  return Math.max(1, Math.ceil(size / partSize));
}

/** The byte range of part `partNumber` (1-based). */
export function partRange(size: number, partSize: number, partNumber: number): { offset: number; length: number } {
  const offset = (partNumber - 1) * partSize;
  return { offset, length: Math.max(0, Math.min(partSize, size - offset)) };
}

/**
 * Checks a part number and its byte count against the upload's layout (InvalidArgument if wrong),
 * so a driver never stores a part that could not tile the object.
 */
export function checkPart(layout: { size: number; partSize: number }, partNumber: number, bytes: number, provider: string, key: string): void {
  const count = partCount(layout.size, layout.partSize);
  if (!Number.isSafeInteger(partNumber) || partNumber < 1 || partNumber > count) {
    throw new InvalidArgumentError(`part number ${partNumber} is outside 1..${count}`, { provider, key });
  }
  const want = partRange(layout.size, layout.partSize, partNumber).length;
  if (bytes !== want) throw new InvalidArgumentError(`part ${partNumber} has ${bytes} bytes, expected ${want}`, { provider, key });
}

/** Checks that `parts` are exactly parts 1..n of the layout, in order, with the right sizes. */
export function checkPartsTile(layout: { size: number; partSize: number }, parts: readonly UploadedPart[], provider: string, key: string): void {
  const count = partCount(layout.size, layout.partSize);
  if (parts.length !== count) throw new InvalidArgumentError(`${parts.length} parts given, the object needs ${count}`, { provider, key });
  parts.forEach((p, i) => {
    if (p.partNumber !== i + 1) throw new InvalidArgumentError(`part ${i + 1} is missing or out of order (got ${p.partNumber})`, { provider, key });
    checkPart(layout, p.partNumber, p.size, provider, key);
  });
}

/**
 * The SHA-256 a completion stamps (lowercase): `given`, which must equal the one the upload was
 * started with when it was known then (IntegrityError otherwise: nothing is completed).
 */
export function completionSha256(started: string | undefined, given: string, provider: string, key: string): string {
  const sha256 = given.toLowerCase();
  if (started !== undefined && started !== sha256) {
    throw new IntegrityError(`the upload was started for SHA-256 ${started}, the bytes have ${sha256}; not completed`, { provider, key });
  }
  return sha256;
}

/** Encodes a driver's handle fields (JSON with a version tag). */
export function encodeHandle(provider: string, fields: Record<string, unknown>): UploadHandle {
  return JSON.stringify({ v: 1, provider, ...fields });
}

/** Decodes a handle made by {@link encodeHandle} for `provider`; InvalidArgument if it is not one. */
export function decodeHandle<T extends { key: string; size: number; partSize: number }>(handle: UploadHandle, provider: string): T {
  let parsed: unknown;
  try {
    parsed = JSON.parse(handle);
  } catch {
    parsed = undefined;
  }
  const h = parsed as (T & { v?: unknown; provider?: unknown }) | undefined;
  if (!h || h.v !== 1 || h.provider !== provider || typeof h.key !== 'string' || !Number.isSafeInteger(h.size) || !Number.isSafeInteger(h.partSize) || h.partSize < 1) {
    throw new InvalidArgumentError(`not a ${provider} upload handle`, { provider });
  }
  return h;
}
