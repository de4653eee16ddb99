import type { Pool, QueryResultRow } from 'pg';
import type { AntiEntropyScanner, ScanReport } from '../replication/anti-entropy.js';
import type { PostgresStateStore } from '../state/postgres.js';
import { mapPgError } from '../state/postgres-errors.js';
import { inTransaction } from '../state/postgres-transaction.js';

/** One key range of a shared scan, as /status shows it. */
export interface ScanRangeStatus {
  id: number;
  after: string | null;
  end: string | null;
  /** Cycles this range has completed. */
  cycle: number;
  /** Scanned through here in the current cycle. */
  position: string | null;
  owner: string | null;
  leaseUntil: Date | null;
  doneAt: Date | null;
}

export interface SharedScanOptions {
  state: PostgresStateStore;
  scanner: AntiEntropyScanner;
  /** This daemon's name among those sharing the state. */
  owner: string;
  /** Name of the scan (one set of ranges per name). Default `anti-entropy`. */
  name?: string;
  /** Ranges the key space is cut into when the scan is first set up (from the catalog's keys). Default 16. */
  ranges?: number;
  /** How long a daemon holds a range between slices. Default 120 000 ms; keep it above a slice's duration. */
  leaseMs?: number;
}

/**
 * Anti-entropy divided between the daemons sharing one PostgreSQL state: the key space is cut into
 * ranges (cut points sampled from the catalog when the scan is first set up); a daemon's scheduled
 * tick leases a range due in the current cycle (or keeps the one it holds) and scans one slice of
 * it from where the range got to. A range done moves to the next cycle; a cycle ends when every
 * range is done, and only then does the next start, so each key is checked once per cycle whatever
 * the number of daemons. A daemon that dies leaves its range to be taken over, from its recorded
 * position, when the lease ends (the slice in flight may then be checked a second time).
 */
export class SharedScan {
  private readonly pool: Pool;
  private readonly s: string;
  private readonly lockSpace: number;
  private readonly name: string;
  private readonly leaseMs: number;
  private readonly rangeCount: number;
  private seeded = false;

  constructor(private readonly opts: SharedScanOptions) {
    const shared = opts.state.shared();
    this.pool = shared.pool;
    this.s = shared.schema;
    this.lockSpace = shared.lockSpace;
    this.name = opts.name ?? 'anti-entropy';
    this.leaseMs = opts.leaseMs ?? 120_000;
    this.rangeCount = Math.max(1, opts.ranges ?? 16);
  }

  /** Scans one slice of a due range; undefined when every range of this cycle is done or held by another daemon. */
  async tick(signal?: AbortSignal): Promise<ScanReport | undefined> {
    if (!this.seeded) await this.seed();
    const r = (await this.q<{ id: number; after_key: string | null; end_key: string | null; position: string | null; cycle: number }>(
      `UPDATE ${this.s}.scan_ranges r SET lease_owner = $2, lease_until = clock_timestamp() + $3 * interval '1 millisecond'
       FROM (SELECT id FROM ${this.s}.scan_ranges WHERE scan = $1 AND cycle = (SELECT min(cycle) FROM ${this.s}.scan_ranges WHERE scan = $1)
               AND (lease_owner = $2 OR lease_until IS NULL OR lease_until < clock_timestamp())
             ORDER BY coalesce(lease_owner = $2, false) DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED) f
       WHERE r.scan = $1 AND r.id = f.id RETURNING r.id, r.after_key, r.end_key, r.position, r.cycle`, [this.name, this.opts.owner, this.leaseMs]))[0];
    if (!r) return undefined;
    const report = await this.opts.scanner.scanRangeSlice(r.position ?? r.after_key ?? undefined, r.end_key ?? undefined, signal);
    const done = (report.to ?? null) === r.end_key;
    // Fenced by owner and cycle: a daemon that lost the range records nothing.
    await this.q(`UPDATE ${this.s}.scan_ranges SET
        cycle = CASE WHEN $5 THEN cycle + 1 ELSE cycle END,
        position = CASE WHEN $5 THEN NULL ELSE $4 END,
        lease_owner = CASE WHEN $5 THEN NULL ELSE lease_owner END,
        lease_until = CASE WHEN $5 THEN NULL ELSE clock_timestamp() + $7 * interval '1 millisecond' END,
        done_at = CASE WHEN $5 THEN clock_timestamp() ELSE done_at END
      WHERE scan = $1 AND id = $2 AND lease_owner = $3 AND cycle = $6`, [this.name, r.id, this.opts.owner, report.to ?? null, done, r.cycle, this.leaseMs]);
    return report;
  }

  /** Every range with who holds it: what /status shows. */
  async ranges(): Promise<ScanRangeStatus[]> {
    const rows = await this.q<{ id: number; after_key: string | null; end_key: string | null; cycle: number; position: string | null; lease_owner: string | null; lease_until: Date | null; done_at: Date | null }>(
      `SELECT id, after_key, end_key, cycle, position, CASE WHEN lease_until > clock_timestamp() THEN lease_owner END AS lease_owner,
         CASE WHEN lease_until > clock_timestamp() THEN lease_until END AS lease_until, done_at
       FROM ${this.s}.scan_ranges WHERE scan = $1 ORDER BY id`, [this.name]);
    return rows.map((r) => ({ id: r.id, after: r.after_key, end: r.end_key, cycle: Number(r.cycle), position: r.position, owner: r.lease_owner, leaseUntil: r.lease_until, doneAt: r.done_at }));
  }

  /** Cuts the key space into ranges once (whoever comes first, under an advisory lock), at keys sampled from the catalog. */
  private async seed(): Promise<void> {
    await inTransaction(this.pool, 'scan seed', async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1::int, hashtext($2))', [this.lockSpace, `scan:${this.name}`]);
      const exists = await client.query(`SELECT 1 FROM ${this.s}.scan_ranges WHERE scan = $1 LIMIT 1`, [this.name]);
      if (exists.rowCount === 0) {
        const n = Number((await client.query<{ n: number }>(`SELECT count(*)::bigint AS n FROM ${this.s}.objects`)).rows[0]!.n);
        const step = Math.max(1, Math.ceil(n / this.rangeCount));
        const cuts = n < this.rangeCount * 2 ? [] : (await client.query<{ key: string }>(
          `SELECT key FROM (SELECT key, row_number() OVER (ORDER BY key) AS rn FROM ${this.s}.objects) t WHERE rn % $1 = 0 ORDER BY key LIMIT $2`,
          [step, this.rangeCount - 1])).rows.map((r) => r.key);
        const bounds = [null, ...cuts, null];
        for (let i = 0; i + 1 < bounds.length; i++) {
          await client.query(`INSERT INTO ${this.s}.scan_ranges (scan, id, after_key, end_key) VALUES ($1, $2, $3, $4)`, [this.name, i + 1, bounds[i], bounds[i + 1]]);
        }
      }
    });
    this.seeded = true;
  }

  private async q<R extends QueryResultRow = QueryResultRow>(sql: string, params: unknown[]): Promise<R[]> {
    try {
      return (await this.pool.query<R>(sql, params)).rows;
    } catch (e) {
      throw mapPgError(e, 'shared scan');
    }
  }
}
