// What the migration journal records, and the contract of a resumable upload's recorder.
/**
 * Where one object stands in a migration: `copying` from the moment a copy starts writing (a run
 * killed then may leave it so; the next run compares with the destination before copying again,
 * whatever the journal says, so a copy in one request may reach the disk already verified: see
 * the durability notes on {@link MigrationJournal}); terminal: verified, failed (with a reason),
 * source-deleted.
 */
export type JournalState = 'copying' | 'verified' | 'failed' | 'source-deleted';

export interface JournalEntry {
  key: string;
  state: JournalState;
  size: number | null;
  srcEtag: string | null;
  dstEtag: string | null;
  sha256: string | null;
  verifiedBy: string | null;
  /**
   * The checksum mode the verification ran under (null in journals written before it was
   * recorded). A record is taken as proof only where `verifiedBy` is proof under the mode of the
   * run reading it (see provesUnder): a `size-only` record proves nothing to a default run or to
   * `--delete-source`.
   */
  checksumMode: string | null;
  reason: string | null;
  /** Copies started for this key over all runs. */
  copies: number;
}

/** One row of the audit trail: what happened to which key (and source version) in which run. */
export interface JournalEvent {
  seq: number;
  run: number;
  key: string;
  srcEtag: string | null;
  event: 'copy-start' | 'verified' | 'identical' | 'failed' | 'source-deleted' | 'upload-start' | 'upload-resume' | 'upload-complete' | 'upload-abort';
  detail: string | null;
}

/** A resumable upload of one object, as the journal recorded it (see resumable-copy.ts). */
export interface JournalUpload {
  key: string;
  /** The destination's serialised upload handle. */
  handle: string;
  /** The source version the parts were read from; another version means starting over. */
  srcEtag: string;
  size: number;
  partSize: number;
  state: 'open' | 'completed' | 'aborted';
  /** The run that started it. */
  run: number;
  parts: JournalPart[];
}

/** One part the journal saw the destination accept. */
export interface JournalPart {
  partNumber: number;
  size: number;
  /** CRC32C of the part's bytes (hex), as read from the source. */
  crc32c: string;
  /** The provider's tag of the part, when it has one (S3 part ETag). */
  etag: string | null;
  /** The provider's SHA-256 of the part, when it reports one. */
  sha256: string | null;
  /** The run that last uploaded it, and how many times it was uploaded over all runs. */
  run: number;
  uploads: number;
}

/**
 * Where a resumable upload records its handle and parts (resumable-copy.ts): the local journal
 * (SQLite) or a job's tables in PostgreSQL (src/jobs/job-uploads.ts).
 *
 * # Contract
 * - Every method has committed what it records when it returns (or its promise resolves): the copy
 *   sends no part before its upload is recorded, and counts a part as kept on a resume only when
 *   the record of it survived.
 * - A recorder may refuse (throw Aborted) when the caller no longer owns the object (a job's claim
 *   was taken over); the copy then stops without aborting the upload, which the new owner resumes.
 */
export interface UploadJournal {
  /** The upload recorded for `key` (any state) with its parts in order, or undefined. */
  upload(key: string): JournalUpload | undefined | Promise<JournalUpload | undefined>;
  /** A new upload of `key` started, replacing an earlier one and its parts. */
  uploadStarted(key: string, u: { handle: string; srcEtag: string; size: number; partSize: number }): void | Promise<void>;
  /** The destination accepted a part. */
  partUploaded(key: string, p: { partNumber: number; size: number; crc32c: string; etag?: string; sha256?: string }): void | Promise<void>;
  /** An open upload was picked up, keeping `kept` of its `total` parts. */
  uploadResumed(key: string, srcEtag: string, kept: number, total: number): void | Promise<void>;
  /** The upload was completed or given up. */
  uploadClosed(key: string, srcEtag: string, state: 'completed' | 'aborted', detail?: string): void | Promise<void>;
}
