import type { JournalEntry, MigrationJournal, UploadJournal } from '../journal.js';
import type { MigrationSummary } from './summary.js';

/**
 * A fact the copy and verify stages learned about one object, for the record stage to keep. The
 * stages never write a journal themselves: they hand facts down to a {@link ObjectRecorder}.
 */
export type MigrationFact =
  /** A copy of this source version is about to write to the destination. */
  | { type: 'copying'; key: string; size: number; srcEtag: string }
  /** The destination holds the source's bytes, proven by `verifiedBy` under `mode`; `copied`: this run wrote them. */
  | { type: 'verified'; key: string; size: number; srcEtag: string; dstEtag: string; sha256?: string; verifiedBy: string; mode: string; copied: boolean }
  | { type: 'failed'; key: string; srcEtag?: string; reason: string }
  | { type: 'source-deleted'; key: string; srcEtag: string };

export type { UploadJournal };

/**
 * Where the facts about objects go. A local run records them in its SQLite journal
 * ({@link JournalRecorder}); a PostgreSQL job in its job tables (src/jobs/job-recorder.ts).
 *
 * # Contract
 * - `record` keeps facts in call order per key; it may buffer them (group commit).
 * - `durable` resolves once every fact recorded before the call survives a kill -9: callers that act
 *   outside the journal on a fact (deleting a source object) wait for it first.
 * - `known` is the last verified fact of an earlier run (or this one), as proof for a later compare.
 */
export interface ObjectRecorder {
  known(key: string): JournalEntry | undefined | Promise<JournalEntry | undefined>;
  record(fact: MigrationFact): void | Promise<void>;
  durable(): Promise<void>;
  /** Where resumable uploads keep their handle and parts; undefined: an interrupted upload starts over. */
  readonly uploads: UploadJournal | undefined;
}

/** Records nothing and knows nothing (no journal, or a dry run). */
export const NO_RECORD: ObjectRecorder = {
  known: () => undefined,
  record: () => {},
  durable: () => Promise.resolve(),
  uploads: undefined,
};

/**
 * The record stage of a local run: the SQLite {@link MigrationJournal}, plus the listing cursor
 * (every key at or before it is settled) and how the run ended.
 */
export class JournalRecorder implements ObjectRecorder {
  constructor(private readonly journal: MigrationJournal, private readonly owned: boolean) {}

  get uploads(): UploadJournal {
    return this.journal;
  }

  known(key: string): JournalEntry | undefined {
    return this.journal.lookup(key);
  }

  record(f: MigrationFact): void {
    switch (f.type) {
      case 'copying':
        this.journal.copying(f.key, f.size, f.srcEtag);
        return;
      case 'verified':
        this.journal.verified(f.key, { size: f.size, srcEtag: f.srcEtag, dstEtag: f.dstEtag, sha256: f.sha256, verifiedBy: f.verifiedBy, mode: f.mode, copied: f.copied });
        return;
      case 'failed':
        this.journal.failed(f.key, f.srcEtag, f.reason);
        return;
      case 'source-deleted':
        this.journal.sourceDeleted(f.key, f.srcEtag);
        return;
    }
  }

  durable(): Promise<void> {
    return this.journal.durable();
  }

  /** Where the last run stopped listing (exclusive), if it did not finish its pass. */
  resumeAfter(): string | undefined {
    return this.journal.cursor();
  }

  /** Every key at or before `key` is settled. */
  settledThrough(key: string): void {
    this.journal.setCursor(key);
  }

  /** Records how the run ended; a finished pass makes the next run list from the top. Closes a journal this recorder opened. */
  finish(status: 'complete' | 'incomplete' | 'aborted', summary: MigrationSummary): void {
    try {
      if (status === 'complete') this.journal.passComplete();
      this.journal.finishRun(status, summary);
    } finally {
      if (this.owned) this.journal.close();
    }
  }
}
