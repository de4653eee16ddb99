import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { PostgresStateStore, type PostgresStateOptions } from '../../src/state/postgres.js';
import { redactUrl } from '../../src/registry.js';

/**
 * The PostgreSQL the tests use: the machine's own (trust auth, database `test`) unless
 * CLOUDMUX_TEST_PG_URL points elsewhere. There is no skip when it is down: CI always has it, so an
 * unreachable server fails the run with a message saying how to fix it.
 */
export const PG_URL = process.env.CLOUDMUX_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Throws a readable error when the test database cannot be reached. */
export async function requirePostgres(): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (e) {
    throw new Error(`PostgreSQL for the state store tests is unreachable at ${redactUrl(PG_URL)} (${(e as Error).message}). `
      + 'Start it (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) or set CLOUDMUX_TEST_PG_URL.', { cause: e });
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Hands out schemas unique to this test run (`cmx_t_<run>_<n>`) and drops every one of them in
 * `dropAll()`, so parallel test files and reruns never see each other's rows.
 */
export class PgSchemas {
  private readonly run = `cmx_t_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  private n = 0;
  private readonly created: string[] = [];
  private readonly stores: PostgresStateStore[] = [];

  /** A fresh schema name (not created yet). */
  name(): string {
    const name = `${this.run}_${++this.n}`;
    this.created.push(name);
    return name;
  }

  /** Opens a store on `schema` (default: a fresh one); closed by dropAll(). */
  async open(opts: Partial<PostgresStateOptions> = {}): Promise<PostgresStateStore> {
    const store = await PostgresStateStore.open({ url: PG_URL, schema: opts.schema ?? this.name(), maxConnections: 4, ...opts });
    this.stores.push(store);
    return store;
  }

  /** Runs SQL outside any store (for inspection and fault injection). */
  async sql<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, params: unknown[] = []): Promise<R[]> {
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    try {
      return (await client.query<R>(text, params)).rows;
    } finally {
      await client.end();
    }
  }

  async dropAll(): Promise<void> {
    for (const s of this.stores.splice(0)) await s.close();
    const names = this.created.splice(0);
    if (names.length > 0) await this.sql(names.map((s) => `DROP SCHEMA IF EXISTS "${s}" CASCADE;`).join('\n'));
  }
}
