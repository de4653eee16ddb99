import type { Pool } from 'pg';
import type { JournalUpload, UploadJournal } from '../replication/journal.js';
import { mapPgError } from '../state/postgres-errors.js';

/** Who records: the claim the object is held under (records under any other claim are refused). */
export interface UploadFence {
  job: string;
  claimId: number;
  worker: string;
  /** Called when a write is refused because the claim is no longer this worker's; must throw. */
  lost(): never;
}

/**
 * A job's resumable uploads in PostgreSQL (schema migration 9): the upload handle and every part
 * the destination accepted, per object, so that a worker taking an object over (its holder was
 * killed or lost its lease) resumes the open upload from its finished parts (resumable-copy.ts
 * checks them against the destination's own list of parts before keeping any).
 *
 * # Contract
 * - Every write commits before it returns, and is fenced by the claim: a worker whose claim was
 *   taken over has its writes refused (`lost()`), so it cannot replace the new holder's upload or
 *   record parts into it. Reads are not fenced: the new holder reads what the old one recorded.
 * - A started upload replaces the object's earlier upload and its parts in one transaction.
 */
export class JobUploads implements UploadJournal {
  constructor(private readonly pool: Pool, private readonly s: string, private readonly fence: UploadFence) {}

  async upload(key: string): Promise<JournalUpload | undefined> {
    const u = (await this.q<{ handle: string; src_etag: string; size: number; part_size: number; state: JournalUpload['state']; claim_id: number }>('upload',
      `SELECT handle, src_etag, size, part_size, state, claim_id FROM ${this.s}.migration_uploads WHERE job = $1 AND key = $2`, [this.fence.job, key]))[0];
    if (!u) return undefined;
    const parts = await this.q<{ part_number: number; size: number; crc32c: string; etag: string | null; sha256: string | null; claim_id: number; uploads: number }>('upload',
      `SELECT part_number, size, crc32c, etag, sha256, claim_id, uploads FROM ${this.s}.migration_upload_parts WHERE job = $1 AND key = $2 ORDER BY part_number`,
      [this.fence.job, key]);
    return {
      key, handle: u.handle, srcEtag: u.src_etag, size: u.size, partSize: u.part_size, state: u.state, run: u.claim_id,
      parts: parts.map((p) => ({ partNumber: p.part_number, size: p.size, crc32c: p.crc32c, etag: p.etag, sha256: p.sha256, run: p.claim_id, uploads: p.uploads })),
    };
  }

  async uploadStarted(key: string, u: { handle: string; srcEtag: string; size: number; partSize: number }): Promise<void> {
    await this.fenced('uploadStarted', key, `,
      gone AS (DELETE FROM ${this.s}.migration_upload_parts WHERE job = $1 AND key = $2 AND EXISTS (SELECT 1 FROM own))
      INSERT INTO ${this.s}.migration_uploads AS u (job, key, handle, src_etag, size, part_size, state, claim_id, worker)
      SELECT $1, $2, $5, $6, $7, $8, 'open', $3, $4 FROM own
      ON CONFLICT (job, key) DO UPDATE SET handle = EXCLUDED.handle, src_etag = EXCLUDED.src_etag, size = EXCLUDED.size, part_size = EXCLUDED.part_size,
        state = 'open', claim_id = EXCLUDED.claim_id, worker = EXCLUDED.worker, started_at = clock_timestamp(), resumes = 0, detail = NULL
      RETURNING 1`, [u.handle, u.srcEtag, u.size, u.partSize]);
  }

  async partUploaded(key: string, p: { partNumber: number; size: number; crc32c: string; etag?: string; sha256?: string }): Promise<void> {
    await this.fenced('partUploaded', key, `
      INSERT INTO ${this.s}.migration_upload_parts AS p (job, key, part_number, size, crc32c, etag, sha256, claim_id)
      SELECT $1, $2, $5, $6, $7, $8, $9, $3 FROM own
      ON CONFLICT (job, key, part_number) DO UPDATE SET size = EXCLUDED.size, crc32c = EXCLUDED.crc32c, etag = EXCLUDED.etag, sha256 = EXCLUDED.sha256,
        claim_id = EXCLUDED.claim_id, uploads = p.uploads + 1, at = clock_timestamp()
      RETURNING 1`, [p.partNumber, p.size, p.crc32c, p.etag ?? null, p.sha256 ?? null]);
  }

  async uploadResumed(key: string, _srcEtag: string, kept: number, total: number): Promise<void> {
    await this.fenced('uploadResumed', key, `
      UPDATE ${this.s}.migration_uploads SET resumes = resumes + 1, claim_id = $3, worker = $4, detail = $5
      WHERE job = $1 AND key = $2 AND EXISTS (SELECT 1 FROM own) RETURNING 1`, [`kept ${kept} of ${total} parts`]);
  }

  async uploadClosed(key: string, _srcEtag: string, state: 'completed' | 'aborted', detail?: string): Promise<void> {
    await this.fenced('uploadClosed', key, `
      UPDATE ${this.s}.migration_uploads SET state = $5, detail = $6
      WHERE job = $1 AND key = $2 AND EXISTS (SELECT 1 FROM own) RETURNING 1`, [state, detail ?? null]);
  }

  /** Runs `sql` (which follows a CTE `own`: the claim, when still this worker's) and refuses when it wrote nothing. $1..$4: job, key, claim, worker. */
  private async fenced(op: string, key: string, sql: string, params: unknown[]): Promise<void> {
    const f = this.fence;
    const rows = await this.q(op, `WITH own AS (SELECT 1 FROM ${this.s}.migration_objects
        WHERE job = $1 AND key = $2 AND claim_id = $3 AND lease_owner = $4 AND state = 'claimed' FOR UPDATE)${sql.startsWith(',') ? '' : ' '}${sql}`,
    [f.job, key, f.claimId, f.worker, ...params]);
    if (rows.length === 0) f.lost();
  }

  private async q<R extends Record<string, unknown>>(op: string, sql: string, params: unknown[]): Promise<R[]> {
    try {
      return (await this.pool.query<R>(sql, params)).rows;
    } catch (e) {
      throw mapPgError(e, `job ${op}`);
    }
  }
}
