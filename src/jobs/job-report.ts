import type { Pool, QueryResultRow } from 'pg';
import { NotFoundError } from '../core/errors.js';
import type { MigrationSummary } from '../replication/stages/summary.js';
import type { PostgresStateStore } from '../state/postgres.js';
import { mapPgError } from '../state/postgres-errors.js';
import type { JobSpec } from './job-store.js';

/** One worker of a job, as `migrate status` shows it. */
export interface JobWorkerStatus {
  worker: string;
  host: string;
  pid: number;
  /** running, finished, stopped; `lost` when a running worker has not been heard of for longer than the lease. */
  state: string;
  objects: number;
  bytes: number;
  errors: number;
  /** Objects it holds a live lease on now. */
  holding: number;
  lastSeenMsAgo: number;
}

export interface JobStatus {
  job: string;
  spec: JobSpec;
  state: 'running' | 'complete';
  /** The job-wide summary: computed from the job's rows only, so it is the same whoever prints it. */
  summary: MigrationSummary;
  /** Objects per state (pending, claimed, copied, identical, failed, vanished). */
  objects: Record<string, number>;
  ranges: { total: number; listing: number; pending: number; done: number };
  /** Bytes copied per second over the job's life (to its end, or to now). */
  bytesPerSecond: number;
  workers: JobWorkerStatus[];
}

/**
 * Reads a job's progress from any machine: objects, bytes, rate, per-worker, errors. Nothing here
 * depends on which process asks (the clock is the database's), so every worker's final summary of
 * a complete job is the same.
 */
export async function readJobStatus(state: PostgresStateStore, job: string, staleMs = 30_000): Promise<JobStatus> {
  const { pool, schema: s } = state.shared();
  const j = (await q<{ spec: string; state: 'running' | 'complete'; duration_ms: number }>(pool,
    `SELECT spec, state, EXTRACT(EPOCH FROM (coalesce(finished_at, clock_timestamp()) - created_at)) * 1000 AS duration_ms FROM ${s}.migration_jobs WHERE name = $1`, [job]))[0];
  if (!j) throw new NotFoundError(`no migration job named ${job} in this state store`);
  const [states, totals, failures, ranges, workers] = await Promise.all([
    q<{ state: string; n: number }>(pool, `SELECT state, count(*)::bigint AS n FROM ${s}.migration_objects WHERE job = $1 GROUP BY state ORDER BY state`, [job]),
    q<{ listed: number; listed_bytes: number; bytes: number; source_deleted: number }>(pool, `SELECT count(*)::bigint AS listed, coalesce(sum(size), 0)::bigint AS listed_bytes,
      coalesce(sum(bytes) FILTER (WHERE state = 'copied'), 0)::bigint AS bytes, count(*) FILTER (WHERE source_deleted)::bigint AS source_deleted
      FROM ${s}.migration_objects WHERE job = $1`, [job]),
    q<{ key: string; reason: string | null }>(pool, `SELECT key, reason FROM ${s}.migration_objects WHERE job = $1 AND state = 'failed' ORDER BY key LIMIT 100`, [job]),
    q<{ total: number; listing: number; pending: number; done: number; extra: number }>(pool, `SELECT count(*)::bigint AS total,
      count(*) FILTER (WHERE state = 'pending' AND lease_until > clock_timestamp())::bigint AS listing,
      count(*) FILTER (WHERE state = 'pending')::bigint AS pending, count(*) FILTER (WHERE state = 'done')::bigint AS done,
      coalesce(sum(extra), 0)::bigint AS extra FROM ${s}.migration_ranges WHERE job = $1`, [job]),
    q<{ worker: string; host: string; pid: number; state: string; seen_ms: number; objects: number; bytes: number; errors: number; holding: number }>(pool,
      `SELECT w.worker, w.host, w.pid, w.state, EXTRACT(EPOCH FROM (clock_timestamp() - w.seen_at)) * 1000 AS seen_ms,
        (SELECT count(*) FROM ${s}.migration_objects o WHERE o.job = $1 AND o.worker = w.worker AND o.state IN ('copied', 'identical'))::bigint AS objects,
        (SELECT coalesce(sum(o.bytes), 0) FROM ${s}.migration_objects o WHERE o.job = $1 AND o.worker = w.worker AND o.state = 'copied')::bigint AS bytes,
        (SELECT count(*) FROM ${s}.migration_objects o WHERE o.job = $1 AND o.worker = w.worker AND o.state = 'failed')::bigint AS errors,
        (SELECT count(*) FROM ${s}.migration_objects o WHERE o.job = $1 AND o.lease_owner = w.worker AND o.state = 'claimed' AND o.lease_until > clock_timestamp())::bigint AS holding
       FROM ${s}.migration_workers w WHERE w.job = $1 ORDER BY w.worker`, [job]),
  ]);
  const objects = Object.fromEntries(states.map((r) => [r.state, Number(r.n)]));
  const n = (k: string): number => objects[k] ?? 0;
  const t = totals[0]!;
  const r = ranges[0]!;
  const durationMs = Math.max(0, Math.round(j.duration_ms));
  const summary: MigrationSummary = {
    listed: Number(t.listed), listedBytes: Number(t.listed_bytes), identical: n('identical'), copied: n('copied'), verified: n('identical') + n('copied'),
    failed: n('failed'), failures: failures.map((f) => ({ key: f.key, reason: f.reason ?? 'failed' })), wouldCopy: 0, vanished: n('vanished'),
    extraAtDestination: Number(r.extra), sourceDeleted: Number(t.source_deleted), bytes: Number(t.bytes), durationMs,
    ...(j.state === 'running' ? { incomplete: 'running' } : {}),
  };
  return {
    job, spec: JSON.parse(j.spec) as JobSpec, state: j.state, summary, objects,
    ranges: { total: Number(r.total), listing: Number(r.listing), pending: Number(r.pending), done: Number(r.done) },
    bytesPerSecond: durationMs > 0 ? Math.round(Number(t.bytes) / (durationMs / 1000)) : 0,
    workers: workers.map((w) => ({
      worker: w.worker, host: w.host, pid: w.pid, state: w.state === 'running' && w.seen_ms > staleMs ? 'lost' : w.state,
      objects: Number(w.objects), bytes: Number(w.bytes), errors: Number(w.errors), holding: Number(w.holding), lastSeenMsAgo: Math.round(w.seen_ms),
    })),
  };
}

/** Every claim of a job in order: what the no-two-workers-at-once checker reads. */
export async function readJobClaims(state: PostgresStateStore, job: string): Promise<ClaimInterval[]> {
  const { pool, schema: s } = state.shared();
  const rows = await q<{ key: string; worker: string; claimed_at: Date; lease_until: Date; released_at: Date | null; outcome: string | null }>(pool,
    `SELECT key, worker, claimed_at, lease_until, released_at, outcome FROM ${s}.migration_claims WHERE job = $1 ORDER BY key, claimed_at, id`, [job]);
  return rows.map((r) => ({ key: r.key, worker: r.worker, from: r.claimed_at.getTime(), to: (r.released_at ?? r.lease_until).getTime(), outcome: r.outcome }));
}

/** The time a worker held an object: from its claim to its release, or (never released: killed) to the end of its last lease. */
export interface ClaimInterval {
  key: string;
  worker: string;
  from: number;
  to: number;
  outcome: string | null;
}

async function q<R extends QueryResultRow>(pool: Pool, sql: string, params: unknown[]): Promise<R[]> {
  try {
    return (await pool.query<R>(sql, params)).rows;
  } catch (e) {
    throw mapPgError(e, 'job status');
  }
}
