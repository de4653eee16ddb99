import type { Pool } from 'pg';
import { sleep, throwIfAborted } from '../core/index.js';
import { TokenBucket } from '../layers/token-bucket.js';
import type { PostgresStateStore } from '../state/postgres.js';
import { mapPgError } from '../state/postgres-errors.js';

export interface SharedTokenBucketOptions {
  /** Tokens added per second, for all processes together. */
  ratePerSec: number;
  /** Most tokens held at once (the burst), for all processes together. Default: a tenth of a second's worth, at least `batch`. */
  capacity?: number;
  /**
   * Tokens this process takes from the database at once and hands out locally (fewer round trips).
   * Default: a twentieth of a second's worth, at least 1. Tokens taken and not used are not given back.
   */
  batch?: number;
}

/**
 * A token bucket kept in PostgreSQL (schema migration 10, table `rate_buckets`), so that every
 * process using the same name stays, together, under one limit: a provider's request rate shared
 * by N migration workers on K machines. A drop-in {@link TokenBucket} for {@link RateLimitStore}.
 *
 * # Contract
 * - Tokens are refilled on the database's clock and taken with one statement under the row's lock,
 *   so over any window of database time the processes together are granted at most
 *   `ratePerSec × window + capacity` tokens, whatever their clocks and their number.
 * - Each process takes up to `batch` tokens per round trip and serves its callers from them,
 *   first come, first served; tokens it took but did not use are lost (never over the limit).
 * - The row's rate and capacity are those of the last process that opened the bucket.
 * - A database error fails the take (mapped: Transient when unreachable): a job needs its
 *   database anyway, and a limit that silently stopped limiting would be worse.
 */
export class SharedTokenBucket extends TokenBucket {
  private local = 0;
  private turn: Promise<void> = Promise.resolve();
  private readonly batch: number;
  private readonly shared: number;
  private readonly sharedCapacity: number;

  private constructor(private readonly pool: Pool, private readonly s: string, readonly name: string, options: SharedTokenBucketOptions) {
    super({ ratePerSec: options.ratePerSec });
    this.shared = options.ratePerSec;
    this.batch = Math.max(1, Math.floor(options.batch ?? options.ratePerSec / 20));
    this.sharedCapacity = options.capacity ?? Math.max(this.batch, options.ratePerSec / 10);
  }

  /** Opens (creating, or setting the rate of) the bucket `name` in the state's database. */
  static async open(state: PostgresStateStore, name: string, options: SharedTokenBucketOptions): Promise<SharedTokenBucket> {
    if (!(options.ratePerSec > 0)) throw new RangeError(`ratePerSec must be > 0, got ${options.ratePerSec}`);
    const { pool, schema } = state.shared();
    const b = new SharedTokenBucket(pool, schema, name, options);
    try {
      await pool.query(`INSERT INTO ${schema}.rate_buckets (name, rate, capacity, tokens, refilled_at) VALUES ($1, $2, $3, $3, clock_timestamp())
        ON CONFLICT (name) DO UPDATE SET rate = EXCLUDED.rate, capacity = EXCLUDED.capacity`, [name, b.shared, b.sharedCapacity]);
    } catch (e) {
      throw mapPgError(e, 'rate bucket open');
    }
    return b;
  }

  override describeRate(unit: string): string {
    return `${this.shared}${unit} shared (${this.name})`;
  }

  override take(n: number, signal?: AbortSignal): Promise<void> {
    const t = this.turn.then(() => this.grantShared(n, signal));
    this.turn = t.catch(() => {});
    return t;
  }

  /** Tokens this process holds now (taken from the database, not yet handed out). */
  override available(): number {
    return this.local;
  }

  private async grantShared(n: number, signal: AbortSignal | undefined): Promise<void> {
    for (;;) {
      if (this.local >= n) {
        this.local -= n;
        return;
      }
      throwIfAborted(signal);
      const need = n - this.local;
      const r = await this.takeShared(Math.max(need, this.batch), need);
      this.local += r.granted;
      if (this.local >= n) {
        this.local -= n;
        return;
      }
      await sleep(Math.max(1, Math.ceil(r.waitMs)), signal);
    }
  }

  /**
   * One round trip: refills the row to the database's now and grants between `min` and `want`
   * tokens when at least `min` (or, for a request over the capacity, a full bucket) are there;
   * else grants none and says how long until there will be.
   */
  private async takeShared(want: number, min: number): Promise<{ granted: number; waitMs: number }> {
    try {
      const rows = (await this.pool.query<{ granted: number; wait_ms: number }>(`
        WITH now AS (SELECT clock_timestamp() AS t),
        cur AS (
          SELECT b.name, b.rate, b.capacity, GREATEST(b.refilled_at, now.t) AS at,
            LEAST(b.capacity, b.tokens + GREATEST(0, EXTRACT(EPOCH FROM (now.t - b.refilled_at))) * b.rate) AS avail
          FROM ${this.s}.rate_buckets b, now WHERE b.name = $1 FOR UPDATE OF b),
        g AS (
          SELECT cur.*, CASE WHEN cur.avail >= LEAST($3::float8, cur.capacity) THEN GREATEST($3::float8, LEAST($2::float8, floor(cur.avail))) ELSE 0 END AS granted FROM cur),
        u AS (
          UPDATE ${this.s}.rate_buckets b SET tokens = g.avail - g.granted, refilled_at = g.at, granted = b.granted + g.granted FROM g WHERE b.name = g.name RETURNING b.name)
        SELECT g.granted::float8 AS granted, (GREATEST(0, LEAST($3::float8, g.capacity) - g.avail) / g.rate * 1000)::float8 AS wait_ms FROM g, u`,
      [this.name, want, min])).rows;
      const r = rows[0];
      if (!r) throw new Error(`rate bucket ${this.name} is missing`);
      return { granted: r.granted, waitMs: r.wait_ms };
    } catch (e) {
      throw mapPgError(e, 'rate bucket take');
    }
  }
}
