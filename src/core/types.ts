import type { Readable } from 'node:stream';

/** What `put` accepts. Strings are written as UTF-8. */
export type Body = Uint8Array | string | Readable | AsyncIterable<Uint8Array>;

export type ChecksumAlgorithm = 'sha256' | 'md5' | 'crc32c';

/** Digests of an object's bytes, lowercase hex. crc32c is the big-endian 32-bit value (8 hex digits). */
export interface Checksums {
  sha256?: string;
  md5?: string;
  crc32c?: string;
}

/** What a store knows about one object. */
export interface ObjectMeta {
  key: string;
  /** Bytes of the whole object (not of a range). */
  size: number;
  /** Opaque entity tag without quotes; changes whenever the content or metadata is rewritten. Not an MD5. */
  etag: string;
  /** Provider version (S3 versionId, GCS generation, Azure versionId) where the provider has one. */
  version?: string;
  lastModified: Date;
  contentType?: string;
  /** Metadata as stored, including cloudmux's own `cloudmux_*` keys. */
  metadata: Record<string, string>;
  /** Digests known without reading the bytes: `sha256` from `cloudmux_sha256`, native ones from the provider. */
  checksums: Checksums;
}

/** A listed object. Listings carry less than `head` does. */
export interface ObjectSummary {
  key: string;
  size: number;
  etag: string;
  lastModified: Date;
  version?: string;
  checksums?: Checksums;
}

export type ListItem =
  | ({ type: 'object' } & ObjectSummary)
  | { type: 'prefix'; prefix: string };

/** A byte range: `{ offset, length? }` (open end when length is absent) or `{ suffix }` (last N bytes). */
export type ByteRange = { offset: number; length?: number } | { suffix: number };

export interface SignalOptions {
  signal?: AbortSignal;
}

export interface PutOptions extends SignalOptions {
  contentType?: string;
  /** Portable user metadata (see validateMetadata); reserved `cloudmux_*` names are refused. */
  metadata?: Record<string, string>;
  /** `'*'`: create only; fails with AlreadyExists if the key exists. Needs `capabilities.conditionalPut`. */
  ifNoneMatch?: '*';
  /** Compare-and-swap: write only if the current etag equals this; else PreconditionFailed (NotFound if absent). Needs `capabilities.conditionalPut`. */
  ifMatch?: string;
  /** Byte count when the caller knows it (lets drivers pick single-shot vs multipart without buffering). */
  size?: number;
  /** Expected digests of the body; the put fails with IntegrityError (and writes nothing) on mismatch. */
  expect?: Checksums;
}

export interface GetOptions extends SignalOptions {
  range?: ByteRange;
  /** Fail with PreconditionFailed unless the current etag equals this. */
  ifMatch?: string;
  /** Fail with NotModified if the current etag equals this. */
  ifNoneMatch?: string;
  /**
   * Hash the bytes as they stream and fail the stream with IntegrityError at the end if they do
   * not match the stored digest. Ignored for ranged reads (no digest covers a range).
   */
  verify?: boolean;
}

export interface GetResult {
  meta: ObjectMeta;
  /** The bytes; errors surface as stream errors (CloudmuxError). */
  body: Readable;
  /** The range actually returned (offset, length), clamped to the object. Absent for whole reads. */
  range?: { offset: number; length: number };
}

export interface ListOptions extends SignalOptions {
  /** Only keys starting with this (plain string prefix, not a directory). */
  prefix?: string;
  /** Roll up keys containing the delimiter after the prefix into `prefix` items. Only `/` is portable. */
  delimiter?: string;
  /** Only keys strictly greater (UTF-8 byte order) than this. */
  startAfter?: string;
  /** Objects per provider request; a hint. */
  pageSize?: number;
}

export interface CopyOptions extends SignalOptions {
  /** `'*'`: fail with AlreadyExists if the destination exists. Needs `capabilities.conditionalPut`. */
  ifNoneMatch?: '*';
  /** Copy only if the source's etag equals this. */
  sourceIfMatch?: string;
  /** Replace the user metadata (and content type) instead of carrying the source's over; reserved `cloudmux_*` names are refused. */
  metadata?: Record<string, string>;
  contentType?: string;
}

export interface UpdateMetadataOptions extends SignalOptions {
  /** The new user metadata; it replaces all metadata but `cloudmux_sha256`, which is kept. Reserved `cloudmux_*` names are refused. */
  metadata: Record<string, string>;
  contentType?: string;
  /** Update only if the current etag equals this. */
  ifMatch?: string;
}

export interface DeleteOptions extends SignalOptions {
  /**
   * Delete only if the current etag equals this, checked by the provider atomically with the
   * delete; else PreconditionFailed and nothing is deleted. A missing key still succeeds (delete is
   * idempotent). Needs `capabilities.conditionalDelete`; NotSupported without.
   */
  ifMatch?: string;
}

export interface PresignOptions {
  method: 'GET' | 'PUT';
  /** Seconds the URL stays valid. */
  expiresIn: number;
  contentType?: string;
}

export interface DeleteManyResult {
  /** Keys now absent (including ones that were already missing). */
  deleted: string[];
  errors: { key: string; error: Error }[];
}

/** Optional abilities, declared by each store, never detected by trial. */
export interface Capabilities {
  /** put/copy honour ifNoneMatch '*' and put honours ifMatch atomically. */
  conditionalPut: boolean;
  /** The provider keeps versions and `version` is meaningful. */
  versioning: boolean;
  /** Digests the provider itself verifies on upload. */
  nativeChecksums: ChecksumAlgorithm[];
  /** presign() returns working URLs. */
  presign: boolean;
  /** Bodies stream through in bounded memory (false for the memory store). */
  streaming: boolean;
  /** The store offers `ResumableUploads` (src/core/resumable.ts): parts that survive the uploader. Absent: false. */
  resumableUpload?: boolean;
  /**
   * A streamed put above the store's threshold is written in parts (S3 multipart, Azure blocks, GCS
   * resumable chunks), each retried in place by the part engine, so one failed part does not fail
   * the put. Absent: false (the stream is written whole).
   */
  multipartPut?: boolean;
  /**
   * The store offers `CopyFromStore` (src/core/copy-from-store.ts): server-side copy from another
   * store of the same provider and account. Absent: false.
   */
  copyFromStore?: boolean;
  /** delete honours `ifMatch` atomically (GCS ifGenerationMatch, Azure If-Match, S3 If-Match where the endpoint has it). Absent: false. */
  conditionalDelete?: boolean;
  /** The store offers `ChangeFeed` (src/core/change-feed.ts): what changed since a cursor. Absent: false. */
  changeFeed?: boolean;
}

/**
 * The one contract every store fills in completely: drivers over a provider, layers over another
 * store, the router over several. Helpers (getBuffer, exists, …) are functions over it.
 *
 * # Contract
 * - Keys follow the portable rules (validateKey) and are checked before any I/O: InvalidKey.
 * - Every failure is a CloudmuxError with a code from the taxonomy.
 * - An aborted signal fails the call with Aborted and leaves no partial object.
 * - Metadata names starting `cloudmux_` are cloudmux's own (`cloudmux_sha256`, the encryption
 *   header). Every write path (put, copy with metadata, updateMetadata) refuses them from a
 *   caller with InvalidArgument before any I/O, so nothing a caller writes can stand in for a
 *   recorded digest or header. cloudmux's own layers, the router and the copier hand theirs to
 *   the store below through one internal channel (src/core/system-metadata.ts, not exported),
 *   checked by validateMetadata; `cloudmux_sha256` is only ever written by the store that hashed
 *   the bytes, never passed down. A driver stores what it is given as is.
 */
export interface BlobStore {
  /** Short provider name used in errors and metrics: `memory`, `fs`, `s3`, `gcs`, `azure`, or a layer's. */
  readonly provider: string;
  readonly capabilities: Capabilities;

  /**
   * Writes a whole object, atomically: readers see the old object or the new one, never a part.
   * Streams of any size are written in bounded memory. The SHA-256 of the bytes is stored as
   * `cloudmux_sha256` (and returned in `checksums`). A failed or aborted put leaves the previous
   * object (or none) in place.
   * Errors: InvalidKey, InvalidArgument (metadata), AlreadyExists (ifNoneMatch), PreconditionFailed
   * (ifMatch), NotSupported (conditions without the capability), IntegrityError (`expect`).
   */
  put(key: string, body: Body, opts?: PutOptions): Promise<ObjectMeta>;

  /**
   * Reads an object or a range of it. A range is clamped to the object's end; an offset at or past
   * the end of a non-empty object is InvalidRange. The returned stream reads the version that was
   * current when get was called, even if it is overwritten while reading.
   * Errors: NotFound, PreconditionFailed (ifMatch), NotModified (ifNoneMatch), InvalidRange;
   * IntegrityError from the stream with `verify`.
   */
  get(key: string, opts?: GetOptions): Promise<GetResult>;

  /** Metadata of an object. Errors: NotFound. */
  head(key: string, opts?: SignalOptions): Promise<ObjectMeta>;

  /**
   * Removes an object. Idempotent: deleting a missing key succeeds. Errors: PreconditionFailed
   * (`ifMatch`), NotSupported (`ifMatch` without `capabilities.conditionalDelete`).
   */
  delete(key: string, opts?: DeleteOptions): Promise<void>;

  /** Removes many objects, using the provider's batch API where one exists. Invalid keys are reported per key. */
  deleteMany(keys: Iterable<string>, opts?: SignalOptions): Promise<DeleteManyResult>;

  /**
   * Lists objects in UTF-8 byte order of keys, fetching pages lazily as the iterator is pulled.
   * With a delimiter, keys containing it after the prefix are rolled up into one `prefix` item each,
   * in order among the objects. Not a snapshot: concurrent writes may or may not appear.
   */
  list(opts?: ListOptions): AsyncIterable<ListItem>;

  /**
   * Server-side copy within this store; bytes, content type and metadata are carried over unless
   * replaced. Errors: NotFound (source), AlreadyExists (ifNoneMatch), PreconditionFailed (sourceIfMatch).
   */
  copy(src: string, dst: string, opts?: CopyOptions): Promise<ObjectMeta>;

  /** Replaces an object's metadata without rewriting its bytes (where the provider allows). Errors: NotFound, PreconditionFailed. */
  updateMetadata(key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta>;

  /** A URL that lets its bearer GET or PUT one key without credentials. NotSupported without `capabilities.presign`. */
  presign(key: string, opts: PresignOptions): Promise<string>;

  /** Releases clients, sockets and file handles. */
  close(): Promise<void>;

  /** Nested description for logs, e.g. `Retry(Breaker(s3://bucket/prefix))`. Never contains secrets. */
  toString(): string;
}
