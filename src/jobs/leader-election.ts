import { EventEmitter } from 'node:events';
import type { Pool, PoolClient } from 'pg';
import type { PostgresStateStore } from '../state/postgres.js';
import { mapPgError } from '../state/postgres-errors.js';

export interface LeaderElectionOptions {
  state: PostgresStateStore;
  /** The singleton's name: one leader per role. */
  role: string;
  /** This process's name. */
  owner: string;
  /** How often a follower tries to take over and a leader checks its session. Default 5 000 ms. */
  checkMs?: number;
}

export interface LeaderEvents {
  elected: [];
  deposed: [string];
}

/** Who leads a role, as /status shows it. */
export interface LeaderStatus {
  role: string;
  owner: string;
  since: Date;
  seenAt: Date;
}

/**
 * A leader for a singleton job among the processes sharing one PostgreSQL state: whoever holds the
 * session advisory lock of the role leads. The lock lives as long as the leader's connection, so a
 * leader that dies (kill -9, a crash: the server sees the connection close) hands over at the
 * followers' next try, within `checkMs`. A machine that vanishes without closing its connection
 * holds the lock until the server's TCP keepalive gives up on it (see docs/deploy.md). A leader
 * that loses its connection stops leading at once (`deposed`). No home-made consensus: the lock is
 * PostgreSQL's; the `leaders` row only says who holds it, for /status.
 */
export class LeaderElection extends EventEmitter<LeaderEvents> {
  private readonly pool: Pool;
  private readonly s: string;
  private readonly lockSpace: number;
  private readonly checkMs: number;
  private client: PoolClient | undefined;
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly opts: LeaderElectionOptions) {
    super();
    const shared = opts.state.shared();
    this.pool = shared.pool;
    this.s = shared.schema;
    this.lockSpace = shared.lockSpace;
    this.checkMs = opts.checkMs ?? 5_000;
  }

  get isLeader(): boolean {
    return this.client !== undefined;
  }

  /** Tries at once, then every `checkMs`. */
  start(): void {
    this.stopped = false;
    const tick = (): void => {
      this.checking = this.check().finally(() => {
        this.checking = undefined;
        if (!this.stopped) this.timer = setTimeout(tick, this.checkMs).unref();
      });
    };
    tick();
  }

  /** One round: a follower tries to take the lock, a leader checks it still has its session. */
  async check(): Promise<void> {
    if (this.client) {
      try {
        await this.client.query(`UPDATE ${this.s}.leaders SET seen_at = clock_timestamp() WHERE role = $1 AND owner = $2`, [this.opts.role, this.opts.owner]);
      } catch (e) {
        this.drop(e);
      }
      return;
    }
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch {
      return; // PostgreSQL unreachable: nobody can lead; try again next round
    }
    try {
      const got = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1::int, hashtext($2)) AS ok', [this.lockSpace, `leader:${this.opts.role}`]);
      if (!got.rows[0]?.ok) {
        client.release();
        return;
      }
      await client.query(`INSERT INTO ${this.s}.leaders (role, owner, since, seen_at) VALUES ($1, $2, clock_timestamp(), clock_timestamp())
        ON CONFLICT (role) DO UPDATE SET owner = EXCLUDED.owner, since = EXCLUDED.since, seen_at = EXCLUDED.seen_at`, [this.opts.role, this.opts.owner]);
      // The session holds the lock: keep this connection out of the pool while leading.
      client.on('error', (e) => this.drop(e));
      this.client = client;
      this.emit('elected');
    } catch (e) {
      client.release(e instanceof Error ? e : true);
    }
  }

  /** Who leads the role now (from the table; undefined before anyone led). */
  async current(): Promise<LeaderStatus | undefined> {
    try {
      const r = (await this.pool.query<{ owner: string; since: Date; seen_at: Date }>(`SELECT owner, since, seen_at FROM ${this.s}.leaders WHERE role = $1`, [this.opts.role])).rows[0];
      return r ? { role: this.opts.role, owner: r.owner, since: r.since, seenAt: r.seen_at } : undefined;
    } catch (e) {
      throw mapPgError(e, 'leader status');
    }
  }

  /** Stops trying; a leader gives the lock back (its connection is closed, which releases it). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.checking;
    const c = this.client;
    this.client = undefined;
    // Destroying the connection releases the session lock even if an unlock would fail.
    if (c) c.release(true);
  }

  private drop(e: unknown): void {
    const c = this.client;
    if (!c) return;
    this.client = undefined;
    c.release(true);
    this.emit('deposed', e instanceof Error ? e.message : String(e));
  }
}
