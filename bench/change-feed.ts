/**
 * What a sync round costs to learn what changed in a catalog of `rows` objects: the change feed
 * (`changesSince` from the last round's cursor) against the baseline, a full catalog listing
 * (`listObjects` page by page, what a round without a cursor does), on SQLite and PostgreSQL, with
 * `changes` objects changed since the last round (and with none). Prints medians and the ratio.
 *
 *   npx tsx bench/change-feed.ts [rows=100000] [changes=100] [--rounds=5] [--sqlite-only]
 *
 * The catalog is filled with one bulk INSERT (a realistic row shape; change positions as commits
 * would give them); the changes are real commits through the StateStore. PostgreSQL: the machine's
 * own (CLOUDMUX_TEST_PG_URL or postgres://postgres@127.0.0.1:5432/test), in a scratch schema.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { SqliteStateStore } from '../src/state/sqlite.js';
import { openSqlite } from '../src/state/sqlite-driver.js';
import { PostgresStateStore } from '../src/state/postgres.js';
import type { StateStore } from '../src/state/types.js';

const args = process.argv.slice(2);
const positional = args.filter((a) => !a.startsWith('--'));
const rows = Number(positional[0] ?? 100_000);
const changes = Number(positional[1] ?? 100);
const rounds = Number(args.find((a) => a.startsWith('--rounds='))?.split('=')[1] ?? 5);
const PG_URL = process.env.CLOUDMUX_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

async function listAll(s: StateStore): Promise<number> {
  let n = 0;
  let after: string | undefined;
  for (;;) {
    const page = await s.listObjects({ startAfter: after, limit: 1000 });
    n += page.length;
    if (page.length < 1000) return n;
    after = page[page.length - 1]!.key;
  }
}

async function feedFrom(s: StateStore, cursor: string | undefined): Promise<{ n: number; cursor: string }> {
  let n = 0;
  for (;;) {
    const page = await s.changesSince(cursor, { limit: 1000 });
    n += page.changes.length;
    cursor = page.cursor;
    if (!page.more) return { n, cursor };
  }
}

async function commitChanges(s: StateStore, round: number): Promise<void> {
  for (let i = 0; i < changes; i++) {
    const key = `data/${String((i * 7919 + round * 104729) % rows).padStart(7, '0')}.bin`;
    const version = await s.nextVersion();
    await s.commitPut({ key, version, size: 4096, sha256: 'ab'.repeat(32), metadata: {}, lastModified: new Date(), acked: [{ provider: 'a', version, etag: `e${version}` }], owed: [] });
  }
}

async function measure(name: string, s: StateStore): Promise<void> {
  // Warm-up, and the cursor a previous round would have left.
  await listAll(s);
  let { cursor } = await feedFrom(s, undefined);
  const list: number[] = [];
  const feed: number[] = [];
  const idle: number[] = [];
  let listed = 0;
  let fed = 0;
  for (let r = 0; r < rounds; r++) {
    await commitChanges(s, r);
    let t = process.hrtime.bigint();
    listed = await listAll(s);
    list.push(ms(t));
    t = process.hrtime.bigint();
    const got = await feedFrom(s, cursor);
    feed.push(ms(t));
    fed = got.n;
    cursor = got.cursor;
    t = process.hrtime.bigint();
    const none = await feedFrom(s, cursor);
    idle.push(ms(t));
    if (none.n !== 0) throw new Error(`expected no changes, got ${none.n}`);
  }
  const l = median(list);
  const f = median(feed);
  const z = median(idle);
  console.log(`${name}: full listing ${listed} rows ${l.toFixed(1)} ms | feed, ${fed} changed ${f.toFixed(2)} ms (${(l / f).toFixed(0)}x) | feed, nothing changed ${z.toFixed(2)} ms (${(l / z).toFixed(0)}x)`);
}

async function sqlite(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'cmx-bench-feed-'));
  try {
    const path = join(dir, 'state.db');
    await new SqliteStateStore({ path, durability: 'normal' }).close();
    const db = openSqlite(path);
    db.transaction(() => {
      const ins = db.prepare(`INSERT INTO cmx_objects (key, version, deleted, size, sha256, metadata, updated_at, change_seq) VALUES (?, ?, 0, 4096, ?, '{"cloudmux_sha256":"x"}', ?, ?)`);
      for (let i = 1; i <= rows; i++) ins.run(`data/${String(i - 1).padStart(7, '0')}.bin`, i, 'ab'.repeat(32), Date.now(), i);
      db.prepare('UPDATE cmx_version SET last = ?').run(rows);
      db.prepare('UPDATE cmx_change_feed SET last = ?').run(rows);
    }).immediate();
    db.close();
    const s = new SqliteStateStore({ path, durability: 'normal' });
    await measure('sqlite', s);
    await s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function postgres(): Promise<void> {
  const schema = `cmx_bench_feed_${process.pid}`;
  const s = await PostgresStateStore.open({ url: PG_URL, schema, maxConnections: 2 });
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try {
    await c.query(`INSERT INTO "${schema}".objects (key, version, deleted, size, sha256, metadata, updated_at, change_xid)
      SELECT 'data/' || lpad((g - 1)::text, 7, '0') || '.bin', g, false, 4096, repeat('ab', 32), '{"cloudmux_sha256":"x"}', now(), pg_current_xact_id()::text::bigint
      FROM generate_series(1, $1::int) g`, [rows]);
    await c.query(`SELECT setval('"${schema}".version_seq', $1::bigint)`, [rows]);
    await c.query(`ANALYZE "${schema}".objects`);
    await measure('postgres', s);
  } finally {
    await s.close();
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await c.end();
  }
}

const load = (await import('node:os')).loadavg()[0]!.toFixed(1);
console.log(`change feed vs full listing: ${rows} catalog rows, ${changes} changed per round, ${rounds} rounds (median), load average ${load}`);
await sqlite();
if (!args.includes('--sqlite-only')) await postgres();
