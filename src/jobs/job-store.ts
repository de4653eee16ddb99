import type { Pool, PoolClient, QueryResultRow } from 'pg';
import { InvalidConfigError } from '../core/errors.js';
import { compareKeys, type ObjectSummary } from '../core/index.js';
import type { PriorityOptions } from '../core/priority.js';
import type { JournalEntry } from '../replication/journal.js';
import type { MigrationFact } from '../replication/stages/record.js';
import type { PostgresStateStore } from '../state/postgres.js';
import { mapPgError } from '../state/postgres-errors.js';
import { inTransaction } from '../state/postgres-transaction.js';
import { JobUploads } from './job-uploads.js';

/** What a job is: every process joining it must bring the same. Bump JOB_SPEC_VERSION when its meaning changes. */
export interface JobSpec {
  src: string;
  dst: string;
  include: string[];
  exclude: string[];
  /** The checksum mode that proves a copy (after the --delete-source rule). */
  checksum: string;
  deleteSource: boolean;
  /**
   * Priority rules (rules and default class; weights do not apply: claims take the most urgent
   * first). Absent from jobs without them, so a joiner that omits it takes the job's own.
   */
  priority?: Pick<PriorityOptions, 'rules' | 'default'>;
}
export const JOB_SPEC_VERSION = 1;

/** A key range a worker lists: keys after `after` (exclusive) up to `end` (inclusive; undefined: the end). */
export interface RangeLease {
  id: number;
  after?: string;
  end?: string;
  /** Listed through here (resume point of a range taken over). */
  position?: string;
}

/** A range an idle worker probes for a split point: its unlisted rest is `(from, end]`. */
export interface SplitCandidate {
  id: number;
  from?: string;
  end?: string;
}

/** An object a worker holds a lease on. `claimId` fences its records: a record under an older claim is refused. */
export interface ObjectClaim {
  claimId: number;
  key: string;
  src: ObjectSummary;
  dst?: ObjectSummary;
}

/** An object a listed range found, to be compared and copied by whoever claims it. */
export interface ListedObject {
  key: string;
  src: ObjectSummary;
  dst?: ObjectSummary;
  /** Rank of its priority class (PRIORITY_RANK); default normal. */
  rank?: number;
}

/** Which objects a worker claims first, and which not at all. */
export interface ClaimOrder {
  /** By (class, size, key): critical first, small before large. Default: key order. */
  byPriority?: boolean;
  /** Only critical objects (a worker on a metered link). */
  onlyCritical?: boolean;
}

type Outcome = 'copied' | 'identical' | 'failed' | 'vanished';

/**
 * A migration job's rows in the PostgreSQL StateStore: the job's spec, its key ranges (listing
 * work), its objects (copy work) and the history of every claim. All leases expire on the
 * database's clock; claims use `FOR UPDATE SKIP LOCKED`, so workers never wait on each other and
 * never receive the same row; every record is fenced by the claim (or range lease) it was made under.
 */
export class JobStore {
  private readonly pool: Pool;
  private readonly s: string;

  constructor(state: PostgresStateStore, readonly job: string, readonly worker: string) {
    const shared = state.shared();
    this.pool = shared.pool;
    this.s = shared.schema;
  }

  /**
   * Creates the job with its first range (the whole key space) or joins it. Throws InvalidConfig
   * when the job exists with another spec (source, destination, filters, checksum mode,
   * delete-source, priority rules). Returns the job's spec (a joiner that gave no priority rules
   * gets the job's).
   */
  async join(spec: JobSpec, host: string, pid: number): Promise<JobSpec> {
    if (spec.priority === undefined) delete spec.priority;
    const text = JSON.stringify(spec);
    return this.tx('join', async (c) => {
      let recorded = spec;
      const made = await c.query(`INSERT INTO ${this.s}.migration_jobs (name, spec, spec_version) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING RETURNING name`, [this.job, text, JOB_SPEC_VERSION]);
      if (made.rowCount === 1) {
        await c.query(`INSERT INTO ${this.s}.migration_ranges (job) VALUES ($1)`, [this.job]);
      } else {
        const row = (await c.query<{ spec: string; spec_version: number }>(`SELECT spec, spec_version FROM ${this.s}.migration_jobs WHERE name = $1`, [this.job])).rows[0]!;
        if (row.spec_version !== JOB_SPEC_VERSION) {
          throw new InvalidConfigError(`job ${this.job} was recorded by another cloudmux version (job format ${row.spec_version}, this one ${JOB_SPEC_VERSION})`);
        }
        const theirs = JSON.parse(row.spec) as JobSpec;
        const diff = (Object.keys(spec) as (keyof JobSpec)[]).filter((k) => JSON.stringify(theirs[k]) !== JSON.stringify(spec[k]));
        if (diff.length > 0) {
          const show = (x: JobSpec): string => diff.map((k) => `${k}=${JSON.stringify(x[k])}`).join(' ');
          throw new InvalidConfigError(`job ${this.job} is ${show(theirs)}; this process asked for ${show(spec)}: use the job's own source, destination and options, or another --job name`);
        }
        recorded = theirs;
      }
      await c.query(`INSERT INTO ${this.s}.migration_workers (job, worker, host, pid) VALUES ($1, $2, $3, $4)
        ON CONFLICT (job, worker) DO UPDATE SET seen_at = clock_timestamp(), state = 'running'`, [this.job, this.worker, host, pid]);
      return recorded;
    });
  }

  /** Takes a range nobody lists (free, or its lease expired), or undefined. */
  async claimRange(leaseMs: number): Promise<RangeLease | undefined> {
    const rows = await this.q<{ id: number; after_key: string | null; end_key: string | null; position: string | null }>('claimRange',
      `UPDATE ${this.s}.migration_ranges r SET lease_owner = $2, lease_until = clock_timestamp() + $3 * interval '1 millisecond', split_wanted = false
       FROM (SELECT id FROM ${this.s}.migration_ranges WHERE job = $1 AND state = 'pending' AND (lease_until IS NULL OR lease_until < clock_timestamp())
             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) f
       WHERE r.job = $1 AND r.id = f.id RETURNING r.id, r.after_key, r.end_key, r.position`, [this.job, this.worker, leaseMs]);
    const r = rows[0];
    if (!r) return undefined;
    return { id: r.id, ...(r.after_key !== null ? { after: r.after_key } : {}), ...(r.end_key !== null ? { end: r.end_key } : {}), ...(r.position !== null ? { position: r.position } : {}) };
  }

  /**
   * Records what a range's lister found since its last call (objects to copy, extras at the
   * destination) and how far it got (`position`: the last key it listed, exactly), renews its lease,
   * and applies a split an idle worker proposed when the lister has not listed past it. Returns the
   * range's end now (it may have moved closer), or undefined when the lease was lost (someone else
   * lists it now: stop, nothing was recorded).
   */
  async rangeProgress(range: RangeLease, found: ListedObject[], extra: number, position: string | undefined, leaseMs: number): Promise<{ end: string | undefined } | undefined> {
    return this.tx('rangeProgress', async (c) => {
      const own = await c.query<{ end_key: string | null; split_at: string | null }>(`SELECT end_key, split_at FROM ${this.s}.migration_ranges
        WHERE job = $1 AND id = $2 AND lease_owner = $3 AND state = 'pending' FOR UPDATE`, [this.job, range.id, this.worker]);
      const row = own.rows[0];
      if (!row) return undefined;
      if (found.length > 0) {
        // A key listed again (a lister taken over mid-page) keeps its row: ON CONFLICT DO NOTHING.
        await c.query(`INSERT INTO ${this.s}.migration_objects (job, key, state, size, listing, src_etag, priority)
          SELECT $1, k, 'pending', sz, l, e, p FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::smallint[]) AS t(k, sz, l, e, p)
          ON CONFLICT (job, key) DO NOTHING`,
        [this.job, found.map((o) => o.key), found.map((o) => o.src.size), found.map((o) => JSON.stringify({ src: o.src, dst: o.dst })), found.map((o) => o.src.etag),
          found.map((o) => o.rank ?? 1)]);
      }
      let end = row.end_key ?? undefined;
      const at = row.split_at ?? undefined;
      const from = position ?? range.position ?? range.after;
      if (at !== undefined && (from === undefined || compareKeys(at, from) > 0) && (end === undefined || compareKeys(at, end) < 0)) {
        await c.query(`INSERT INTO ${this.s}.migration_ranges (job, after_key, end_key) VALUES ($1, $2, $3)`, [this.job, at, end ?? null]);
        end = at;
      }
      await c.query(`UPDATE ${this.s}.migration_ranges SET position = coalesce($3, position), end_key = $4, split_at = NULL,
        listed = listed + $5, extra = extra + $6, lease_until = clock_timestamp() + $7 * interval '1 millisecond' WHERE job = $1 AND id = $2`,
      [this.job, range.id, position ?? null, end ?? null, found.length, extra, leaseMs]);
      return { end };
    });
  }

  /** Extends a range's lease while its lister works on a page. */
  async renewRange(range: RangeLease, leaseMs: number): Promise<void> {
    await this.q('renewRange', `UPDATE ${this.s}.migration_ranges SET lease_until = clock_timestamp() + $4 * interval '1 millisecond'
      WHERE job = $1 AND id = $2 AND lease_owner = $3 AND state = 'pending'`, [this.job, range.id, this.worker, leaseMs]);
  }

  /** The range is listed to its end. False when the lease was lost meanwhile. */
  async finishRange(range: RangeLease): Promise<boolean> {
    const rows = await this.q('finishRange', `UPDATE ${this.s}.migration_ranges SET state = 'done', lease_owner = NULL, lease_until = NULL
      WHERE job = $1 AND id = $2 AND lease_owner = $3 AND state = 'pending' RETURNING id`, [this.job, range.id, this.worker]);
    return rows.length === 1;
  }

  /** True while some range is not listed to its end. */
  async rangesLeft(): Promise<boolean> {
    return (await this.q('rangesLeft', `SELECT 1 FROM ${this.s}.migration_ranges WHERE job = $1 AND state = 'pending' LIMIT 1`, [this.job])).length > 0;
  }

  /**
   * Picks a range being listed that nobody probed for `cooldownMs` (least recently probed first)
   * and marks it probed now, for this worker to look for a split point in (see range-probe.ts).
   * Rate-limits splitting: one probe per range per cooldown, none once a range is too small.
   */
  async reserveSplit(cooldownMs: number): Promise<SplitCandidate | undefined> {
    const rows = await this.q<{ id: number; after_key: string | null; end_key: string | null; position: string | null }>('reserveSplit',
      `UPDATE ${this.s}.migration_ranges r SET split_after = clock_timestamp() + $2 * interval '1 millisecond'
       FROM (SELECT id FROM ${this.s}.migration_ranges WHERE job = $1 AND state = 'pending' AND lease_until > clock_timestamp() AND split_at IS NULL
               AND (split_after IS NULL OR split_after < clock_timestamp())
             ORDER BY split_after NULLS FIRST, id LIMIT 1 FOR UPDATE SKIP LOCKED) f
       WHERE r.job = $1 AND r.id = f.id RETURNING r.id, r.after_key, r.end_key, r.position`, [this.job, cooldownMs]);
    const r = rows[0];
    if (!r) return undefined;
    return { id: r.id, from: r.position ?? r.after_key ?? undefined, ...(r.end_key !== null ? { end: r.end_key } : {}) };
  }

  /**
   * Proposes splitting a range at `at` (its lister applies it at its next progress record when it
   * has not listed past it). False when the range changed meanwhile (its end moved, it finished,
   * its recorded position passed `at`, or another proposal is pending).
   */
  async proposeSplit(c: SplitCandidate, at: string): Promise<boolean> {
    const rows = await this.q('proposeSplit', `UPDATE ${this.s}.migration_ranges SET split_at = $3
      WHERE job = $1 AND id = $2 AND state = 'pending' AND split_at IS NULL AND end_key IS NOT DISTINCT FROM $4::text
        AND (position IS NULL OR position < $3::text COLLATE "C") RETURNING id`, [this.job, c.id, at, c.end ?? null]);
    return rows.length === 1;
  }

  /** The rest of this range is too small to split: nobody probes it again (it only shrinks). */
  async unsplittable(c: SplitCandidate): Promise<void> {
    await this.q('unsplittable', `UPDATE ${this.s}.migration_ranges SET split_after = 'infinity' WHERE job = $1 AND id = $2 AND end_key IS NOT DISTINCT FROM $3::text`,
      [this.job, c.id, c.end ?? null]);
  }

  /**
   * Leases up to `limit` objects nobody holds (pending, or their lease expired), in key order or
   * as `order` says, and records each claim. Returned in the order claimed.
   */
  async claimObjects(limit: number, leaseMs: number, order: ClaimOrder = {}): Promise<ObjectClaim[]> {
    const by = order.byPriority ? 'priority, size, key' : 'key';
    const rows = await this.q<{ id: number; key: string; listing: string }>('claimObjects',
      `WITH f AS (
         SELECT key, priority, size FROM ${this.s}.migration_objects WHERE job = $1 AND (state = 'pending' OR (state = 'claimed' AND lease_until < clock_timestamp()))
           ${order.onlyCritical ? 'AND priority = 0' : ''}
         ORDER BY ${by} LIMIT $2 FOR UPDATE SKIP LOCKED),
       c AS (
         INSERT INTO ${this.s}.migration_claims (job, key, worker, claimed_at, lease_until)
         SELECT $1, key, $3, clock_timestamp(), clock_timestamp() + $4 * interval '1 millisecond' FROM f RETURNING id, key, lease_until),
       u AS (
         UPDATE ${this.s}.migration_objects o SET state = 'claimed', lease_owner = $3, lease_until = c.lease_until, claim_id = c.id, worker = $3,
           updated_at = clock_timestamp()
         FROM c WHERE o.job = $1 AND o.key = c.key RETURNING o.key, o.listing, c.id, o.priority, o.size)
       SELECT id, key, listing FROM u ORDER BY ${by}`, [this.job, limit, this.worker, leaseMs]);
    return rows.map((r) => {
      const l = JSON.parse(r.listing) as { src: ObjectSummary; dst?: ObjectSummary };
      return { claimId: r.id, key: r.key, src: revive(l.src)!, dst: revive(l.dst) };
    });
  }

  /** Extends the leases of these claims; returns the claim ids still held (a claim missing from it was taken over). */
  async renew(claimIds: number[], leaseMs: number): Promise<Set<number>> {
    if (claimIds.length === 0) return new Set();
    const rows = await this.tx('renew', async (c) => {
      const held = await c.query<{ claim_id: number }>(`UPDATE ${this.s}.migration_objects SET lease_until = clock_timestamp() + $3 * interval '1 millisecond'
        WHERE job = $1 AND claim_id = ANY($2::bigint[]) AND lease_owner = $4 AND state = 'claimed' AND lease_until >= clock_timestamp() RETURNING claim_id`,
      [this.job, claimIds, leaseMs, this.worker]);
      const ids = held.rows.map((r) => r.claim_id);
      // The claim's history ends where the object's lease does, to the microsecond: a later clock
      // reading here would make a take-over right at the lease's end look like two holders at once.
      await c.query(`UPDATE ${this.s}.migration_claims c SET lease_until = o.lease_until FROM ${this.s}.migration_objects o
        WHERE c.id = ANY($1::bigint[]) AND o.job = $2 AND o.key = c.key AND o.claim_id = c.id`, [ids, this.job]);
      await c.query(`UPDATE ${this.s}.migration_workers SET seen_at = clock_timestamp() WHERE job = $1 AND worker = $2`, [this.job, this.worker]);
      return ids;
    });
    return new Set(rows);
  }

  /** Where a copy under `claim` records its resumable upload (fenced by the claim; `lost` must throw). */
  uploads(claim: ObjectClaim, lost: () => never): JobUploads {
    return new JobUploads(this.pool, this.s, { job: this.job, claimId: claim.claimId, worker: this.worker, lost });
  }

  /** The last verified record of `key` in this job, as journal proof. */
  async known(key: string): Promise<JournalEntry | undefined> {
    const r = (await this.q<{ src_etag: string | null; dst_etag: string | null; sha256: string | null; verified_by: string | null; checksum_mode: string | null; size: number; copies: number; reason: string | null }>('known',
      `SELECT src_etag, dst_etag, sha256, verified_by, checksum_mode, size, copies, reason FROM ${this.s}.migration_objects WHERE job = $1 AND key = $2`, [this.job, key]))[0];
    if (!r) return undefined;
    return {
      key, state: r.verified_by !== null ? 'verified' : 'copying', size: r.size, srcEtag: r.src_etag, dstEtag: r.dst_etag, sha256: r.sha256,
      verifiedBy: r.verified_by, checksumMode: r.checksum_mode, reason: r.reason, copies: r.copies,
    };
  }

  /**
   * Records a fact about a claimed object, fenced by its claim: false (nothing written) when the
   * claim is no longer this worker's (its lease expired and another worker took the object).
   */
  async record(claim: ObjectClaim, f: MigrationFact): Promise<boolean> {
    const fence = `WHERE job = $1 AND key = $2 AND claim_id = $3 AND lease_owner = $4 AND state = 'claimed'`;
    const base = [this.job, claim.key, claim.claimId, this.worker];
    let rows: unknown[];
    switch (f.type) {
      case 'copying':
        rows = await this.q('record', `UPDATE ${this.s}.migration_objects SET copies = copies + 1, src_etag = $5, size = $6, verified_by = NULL, updated_at = clock_timestamp() ${fence} RETURNING key`,
          [...base, f.srcEtag, f.size]);
        break;
      case 'verified':
        rows = await this.q('record', `UPDATE ${this.s}.migration_objects SET src_etag = $5, size = $6, dst_etag = $7, sha256 = $8, verified_by = $9, checksum_mode = $10,
          bytes = bytes + $11, reason = NULL, updated_at = clock_timestamp() ${fence} RETURNING key`,
        [...base, f.srcEtag, f.size, f.dstEtag, f.sha256 ?? null, f.verifiedBy, f.mode, f.copied ? f.size : 0]);
        break;
      case 'failed':
        rows = await this.q('record', `UPDATE ${this.s}.migration_objects SET reason = $5, updated_at = clock_timestamp() ${fence} RETURNING key`, [...base, f.reason]);
        break;
      case 'source-deleted':
        rows = await this.q('record', `UPDATE ${this.s}.migration_objects SET source_deleted = true, updated_at = clock_timestamp() ${fence} RETURNING key`, base);
        break;
    }
    return rows.length === 1;
  }

  /** Ends a claim with the object's outcome (terminal) and closes its interval in the claim history. False when the claim was lost. */
  async release(claim: ObjectClaim, outcome: Outcome): Promise<boolean> {
    return this.tx('release', async (c) => {
      const done = await c.query(`UPDATE ${this.s}.migration_objects SET state = $5, lease_owner = NULL, lease_until = NULL, updated_at = clock_timestamp()
        WHERE job = $1 AND key = $2 AND claim_id = $3 AND lease_owner = $4 AND state = 'claimed' RETURNING key`, [this.job, claim.key, claim.claimId, this.worker, outcome]);
      await c.query(`UPDATE ${this.s}.migration_claims SET released_at = clock_timestamp(), outcome = $2 WHERE id = $1`, [claim.claimId, done.rowCount === 1 ? outcome : 'lost']);
      return done.rowCount === 1;
    });
  }

  /**
   * Notes in the claim history that this worker learned it lost the claim (its lease ended and the
   * object was taken over). The claim's interval keeps ending at its lease: the lease is the fence.
   */
  async markLost(claim: ObjectClaim): Promise<void> {
    await this.q('markLost', `UPDATE ${this.s}.migration_claims SET outcome = 'lost' WHERE id = $1 AND outcome IS NULL AND released_at IS NULL`, [claim.claimId]);
  }

  /** Marks the job complete when every range is listed and every object settled; true once it is complete (by anyone). */
  async tryComplete(): Promise<boolean> {
    const rows = await this.q<{ state: string }>('tryComplete', `UPDATE ${this.s}.migration_jobs j SET state = 'complete', finished_at = clock_timestamp()
      WHERE name = $1 AND state = 'running'
        AND NOT EXISTS (SELECT 1 FROM ${this.s}.migration_ranges WHERE job = $1 AND state = 'pending')
        AND NOT EXISTS (SELECT 1 FROM ${this.s}.migration_objects WHERE job = $1 AND state IN ('pending', 'claimed'))
      RETURNING state`, [this.job]);
    if (rows.length > 0) return true;
    const j = await this.q<{ state: string }>('tryComplete', `SELECT state FROM ${this.s}.migration_jobs WHERE name = $1`, [this.job]);
    return j[0]?.state === 'complete';
  }

  /**
   * For a worker that copies only critical objects: once every range is listed and no critical
   * object is left to copy (pending, or held by anyone), how many other objects wait for an
   * unmetered worker; undefined while critical work may still come or is in flight.
   */
  async deferredOnly(): Promise<number | undefined> {
    const rows = await this.q<{ ranges: boolean; critical: boolean; deferred: string }>('deferredOnly',
      `SELECT EXISTS (SELECT 1 FROM ${this.s}.migration_ranges WHERE job = $1 AND state = 'pending') AS ranges,
         EXISTS (SELECT 1 FROM ${this.s}.migration_objects WHERE job = $1 AND state IN ('pending', 'claimed') AND priority = 0) AS critical,
         (SELECT count(*) FROM ${this.s}.migration_objects WHERE job = $1 AND state IN ('pending', 'claimed') AND priority > 0) AS deferred`, [this.job]);
    const r = rows[0]!;
    return r.ranges || r.critical ? undefined : Number(r.deferred);
  }

  /** This worker stopped (finished, or interrupted): shown in status. */
  async leave(state: 'finished' | 'stopped'): Promise<void> {
    await this.q('leave', `UPDATE ${this.s}.migration_workers SET state = $3, seen_at = clock_timestamp() WHERE job = $1 AND worker = $2`, [this.job, this.worker, state]);
  }

  private async q<R extends QueryResultRow = QueryResultRow>(op: string, sql: string, params: unknown[]): Promise<R[]> {
    try {
      return (await this.pool.query<R>(sql, params)).rows;
    } catch (e) {
      throw mapPgError(e, `job ${op}`);
    }
  }

  private async tx<T>(op: string, fn: (c: PoolClient) => Promise<T>): Promise<T> {
    return inTransaction(this.pool, `job ${op}`, fn);
  }
}

/** An ObjectSummary back from JSON (its date). */
function revive(o: ObjectSummary | undefined): ObjectSummary | undefined {
  if (!o) return undefined;
  return { ...o, lastModified: new Date(o.lastModified as unknown as string) };
}
