/** What happened to one object in a migration. */
export type ObjectOutcome = 'copied' | 'identical' | 'would-copy' | 'failed' | 'vanished' | 'deferred';

export type MigrationEvent =
  | { type: 'listed'; key: string; size: number }
  | { type: 'listing-done'; objects: number; bytes: number }
  | { type: 'start'; key: string; size: number }
  | { type: 'progress'; bytes: number }
  | { type: 'retry'; key: string; attempt: number; reason: string }
  | { type: 'object'; key: string; outcome: ObjectOutcome; size: number; bytes: number; verifiedBy?: string; reason?: string }
  | { type: 'extra'; key: string }
  | { type: 'source-deleted'; key: string }
  | { type: 'part'; key: string; partNumber: number; parts: number; size: number }
  | { type: 'upload-resumed'; key: string; kept: number; parts: number };

export interface MigrationSummary {
  /** Source objects listed (after filters) and their bytes. */
  listed: number;
  listedBytes: number;
  /** Already identical at the destination (by digest, or by the journal's record of a verified copy). */
  identical: number;
  copied: number;
  /** Objects proven present at the destination: copied and verified, plus identical ones. */
  verified: number;
  failed: number;
  /** The first 100 failures. */
  failures: { key: string; reason: string }[];
  /** Dry run: objects that would be copied. */
  wouldCopy: number;
  /** Listed but deleted from the source before they could be copied. */
  vanished: number;
  /** Not copied on a metered link (not critical): a later unmetered run copies them. */
  deferred?: number;
  /** Objects only at the destination (left alone). */
  extraAtDestination: number;
  sourceDeleted: number;
  /** Bytes copied. */
  bytes: number;
  durationMs: number;
  /** The listing cursor this run resumed after, if any. */
  resumedAfter?: string;
  /** Set when the run stopped early (listing failed, aborted). */
  incomplete?: string;
}

export function emptySummary(): MigrationSummary {
  return {
    listed: 0, listedBytes: 0, identical: 0, copied: 0, verified: 0, failed: 0, failures: [], wouldCopy: 0,
    vanished: 0, deferred: 0, extraAtDestination: 0, sourceDeleted: 0, bytes: 0, durationMs: 0,
  };
}

/**
 * Counts one event into a summary: the summary is derived from the events the stages emit, so a
 * progress bar, a JSON log and the final report can never disagree.
 */
export function tally(summary: MigrationSummary, e: MigrationEvent): void {
  switch (e.type) {
    case 'listed':
      summary.listed++;
      summary.listedBytes += e.size;
      return;
    case 'extra':
      summary.extraAtDestination++;
      return;
    case 'source-deleted':
      summary.sourceDeleted++;
      return;
    case 'object':
      switch (e.outcome) {
        case 'copied':
          summary.copied++;
          summary.verified++;
          summary.bytes += e.size;
          return;
        case 'identical':
          summary.identical++;
          summary.verified++;
          return;
        case 'would-copy':
          summary.wouldCopy++;
          return;
        case 'vanished':
          summary.vanished++;
          return;
        case 'deferred':
          summary.deferred = (summary.deferred ?? 0) + 1;
          return;
        case 'failed':
          summary.failed++;
          if (summary.failures.length < 100) summary.failures.push({ key: e.key, reason: e.reason ?? 'failed' });
          return;
      }
      return;
    default:
      return;
  }
}
