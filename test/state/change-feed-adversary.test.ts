import pg from 'pg';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { tempDir } from '../harness/emulator.js';
import { openSqlite } from '../../src/state/sqlite-driver.js';
import { SqliteStateStore } from '../../src/state/sqlite.js';
import type { CatalogChangePage, PutRecord, StateStore } from '../../src/state/types.js';
import { PG_URL, PgSchemas, requirePostgres } from './postgres-fixture.js';
import { checkFeedHistory, feedSeed, prng, type FeedEntry, type FeedHistory } from './change-feed-checker.js';

const FILE = 'test/state/change-feed-adversary.test.ts';
const schemas = new PgSchemas();
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await schemas.dropAll();
});

function put(key: string, version: number): PutRecord {
  return { key, version, size: 1, metadata: {}, lastModified: new Date(), acked: [{ provider: 'a', version }], owed: [] };
}

/** Commits one op; returns the entry when the commit was acknowledged as applied. */
async function commit(s: StateStore, op: { key: string; deleted: boolean }, version: number): Promise<FeedEntry | undefined> {
  const res = op.deleted ? await s.commitDelete({ key: op.key, version, alsoOn: [] }) : await s.commitPut(put(op.key, version));
  return res.committed ? { key: op.key, version, deleted: op.deleted } : undefined;
}

const entries = (p: CatalogChangePage): FeedEntry[] => p.changes.map((c) => ({ key: c.key, version: c.version, deleted: c.deleted }));

/** The reader that pages by version stamp: the known-bad design the feed replaces. */
class ByVersionReader {
  cursor = 0;
  readonly pages: FeedEntry[][] = [];
  constructor(private readonly query: (after: number, limit: number) => Promise<FeedEntry[]>) {}
  async page(limit: number): Promise<void> {
    const rows = await this.query(this.cursor, limit);
    this.pages.push(rows);
    for (const r of rows) this.cursor = Math.max(this.cursor, r.version);
  }
}

describe('change feed checker', () => {
  const good: FeedHistory = {
    commits: [{ key: 'a', version: 1, deleted: false }, { key: 'b', version: 3, deleted: false }, { key: 'a', version: 2, deleted: true }],
    pages: [[{ key: 'b', version: 3, deleted: false }], [{ key: 'a', version: 2, deleted: true }]],
    final: new Map([['a', { version: 2, deleted: true }], ['b', { version: 3, deleted: false }]]),
  };

  it('accepts a good history (a compacted one included)', () => {
    expect(checkFeedHistory(good)).toEqual([]);
  });

  it('finds each kind of violation in known-bad histories', () => {
    const kinds = (h: FeedHistory): string[] => [...new Set(checkFeedHistory(h).map((v) => v.split(':')[0]!))].sort();
    // A lower version committed late and never delivered.
    expect(kinds({ ...good, commits: [...good.commits, { key: 'c', version: 0, deleted: false }] })).toEqual(['skipped']);
    // A key going back.
    expect(kinds({ ...good, pages: [...good.pages, [{ key: 'b', version: 3, deleted: false }], [{ key: 'a', version: 1, deleted: false }]] })).toEqual(['back', 'final']);
    // Something nobody wrote, or a delete reported as live.
    expect(kinds({ ...good, pages: [...good.pages, [{ key: 'z', version: 9, deleted: false }]] })).toEqual(['phantom']);
    expect(kinds({ ...good, pages: [[{ key: 'b', version: 3, deleted: false }], [{ key: 'a', version: 2, deleted: false }]] })).toEqual(['final', 'phantom']);
    // The reader stopped short of the catalog's final state, or a key came twice in one page.
    expect(kinds({ ...good, final: new Map([...good.final, ['b', { version: 4, deleted: false }]]) })).toEqual(['final']);
    expect(kinds({ ...good, pages: [[{ key: 'b', version: 3, deleted: false }, { key: 'b', version: 3, deleted: false }], good.pages[1]!] })).toEqual(['twice']);
  });
});

describe('change feed adversary: sqlite', () => {
  it('writers committing out of version order on several connections, a reader paging throughout: nothing skipped', async () => {
    const rnd = prng(feedSeed('change feed adversary: sqlite', FILE));
    const dir = await tempDir('feed');
    cleanups.push(() => dir.remove());
    const path = `${dir.path}/state.db`;
    const writers = [0, 1, 2].map(() => new SqliteStateStore({ path, durability: 'normal' }));
    const reader = new SqliteStateStore({ path, durability: 'normal' });
    const raw = openSqlite(path);
    cleanups.push(async () => {
      raw.close();
      for (const s of [...writers, reader]) await s.close();
    });
    const naive = new ByVersionReader(async (after, limit) => (raw.prepare('SELECT key, version, deleted FROM cmx_objects WHERE version > ? ORDER BY version LIMIT ?')
      .all(after, limit) as { key: string; version: number; deleted: number }[]).map((r) => ({ key: r.key, version: r.version, deleted: r.deleted !== 0 })));
    const history: FeedHistory = { commits: [], pages: [], final: new Map() };
    let cursor: string | undefined;
    const read = async (limit: number): Promise<boolean> => {
      const page = await reader.changesSince(cursor, { limit });
      history.pages.push(entries(page));
      cursor = page.cursor;
      await naive.page(limit);
      return page.more;
    };
    const keys = Array.from({ length: 12 }, (_, i) => `k${i}`);
    const pending: { key: string; deleted: boolean; version: number }[] = [];
    // The case the design exists for, first: a high version commits and is read before a lower one.
    const low = await writers[0]!.nextVersion();
    const high = await writers[1]!.nextVersion();
    history.commits.push((await commit(writers[1]!, { key: 'first-high', deleted: false }, high))!);
    await read(10);
    history.commits.push((await commit(writers[0]!, { key: 'first-low', deleted: false }, low))!);
    for (let step = 0; step < 600; step++) {
      const r = rnd.int(10);
      if (r < 4 || pending.length === 0) {
        pending.push({ key: rnd.pick(keys), deleted: rnd.chance(0.2), version: await rnd.pick(writers).nextVersion() });
      } else if (r < 8) {
        const [op] = pending.splice(rnd.int(pending.length), 1);
        const done = await commit(rnd.pick(writers), op!, op!.version);
        if (done) history.commits.push(done);
      } else {
        await read(1 + rnd.int(6));
      }
    }
    for (const op of rnd.shuffle(pending.splice(0))) {
      const done = await commit(rnd.pick(writers), op, op.version);
      if (done) history.commits.push(done);
    }
    while (await read(50));
    for (const k of [...keys, 'first-high', 'first-low']) {
      const found = await reader.lookup(k);
      if (found.state === 'live') history.final.set(k, { version: found.object.version, deleted: false });
      if (found.state === 'deleted') history.final.set(k, { version: found.version, deleted: true });
    }
    expect(checkFeedHistory(history)).toEqual([]);
    // The same run seen by the by-version reader: its skips are what the checker is for.
    const bad = checkFeedHistory({ ...history, pages: naive.pages });
    expect(bad.some((v) => v.startsWith('skipped: first-low@'))).toBe(true);
  });
});

describe('change feed adversary: postgres', () => {
  beforeAll(requirePostgres);

  it('writers on several connections, some held open mid-commit while others commit, a reader paging throughout: nothing skipped', async () => {
    const rnd = prng(feedSeed('change feed adversary: postgres', FILE));
    const schema = schemas.name();
    const writers = await Promise.all([0, 1, 2, 3].map(() => schemas.open({ schema, maxConnections: 2 })));
    const reader = await schemas.open({ schema, maxConnections: 1 });
    // A commit of a `slow/` key waits, inside its transaction and after it has its id, on an
    // advisory lock the test holds: the test decides when it ends (events, not sleeps).
    await schemas.sql(`CREATE FUNCTION "${schema}".gate() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.key LIKE 'slow/%' THEN PERFORM pg_advisory_xact_lock_shared(hashtext(TG_TABLE_SCHEMA || '/' || NEW.key)); END IF; RETURN NEW; END $$;
      CREATE TRIGGER gate BEFORE INSERT OR UPDATE ON "${schema}".objects FOR EACH ROW EXECUTE FUNCTION "${schema}".gate();`);
    const gate = new pg.Client({ connectionString: PG_URL });
    await gate.connect();
    const raw = new pg.Client({ connectionString: PG_URL });
    await raw.connect();
    cleanups.push(async () => {
      await gate.end();
      await raw.end();
    });
    const naive = new ByVersionReader(async (after, limit) => (await raw.query<{ key: string; version: string; deleted: boolean }>(
      `SELECT key, version, deleted FROM "${schema}".objects WHERE version > $1 ORDER BY version LIMIT $2`, [after, limit])).rows
      .map((r) => ({ key: r.key, version: Number(r.version), deleted: r.deleted })));

    const keys = Array.from({ length: 10 }, (_, i) => `k${i}`);
    let slowN = 0;
    const ops = Array.from({ length: 160 }, (_, i) => (i === 0 || rnd.chance(0.12)
      ? { key: `slow/${slowN++}`, deleted: false }
      : { key: rnd.pick(keys), deleted: rnd.chance(0.2) }));
    const history: FeedHistory = { commits: [], pages: [], final: new Map() };
    const held = new Map<string, { version: number; released: boolean }>();
    let active = writers.length;
    const release = async (key: string): Promise<void> => {
      const h = held.get(key);
      if (!h || h.released) return;
      h.released = true;
      await gate.query('SELECT pg_advisory_unlock(hashtext($1))', [`${schema}/${key}`]);
    };
    const work = async (s: StateStore): Promise<void> => {
      for (let op = ops.shift(); op; op = ops.shift()) {
        const version = await s.nextVersion();
        if (op.key.startsWith('slow/')) {
          await gate.query('SELECT pg_advisory_lock(hashtext($1))', [`${schema}/${op.key}`]);
          held.set(op.key, { version, released: false });
        }
        const done = await commit(s, op, version);
        if (done) history.commits.push(done);
      }
      active--;
    };
    const writing = Promise.all(writers.map(work));
    let cursor: string | undefined;
    const read = async (limit: number): Promise<CatalogChangePage> => {
      const page = await reader.changesSince(cursor, { limit });
      history.pages.push(entries(page));
      cursor = page.cursor;
      await naive.page(limit);
      return page;
    };
    let finished = false;
    void writing.then(() => { finished = true; }, () => { finished = true; });
    while (!finished) {
      await read(1 + rnd.int(3));
      // Let a held commit finish once the by-version reader has passed its version (the race),
      // by chance, or when every live writer is held (else nothing moves).
      const waiting = [...held].filter(([, h]) => !h.released);
      for (const [key, h] of waiting) {
        if (naive.cursor > h.version || rnd.chance(0.05)) await release(key);
      }
      const stillHeld = [...held].filter(([, h]) => !h.released);
      if (stillHeld.length > 0 && stillHeld.length >= active) await release(rnd.pick(stillHeld)[0]);
    }
    await writing;
    for (const key of held.keys()) await release(key);

    const final = (await raw.query<{ key: string; version: string; deleted: boolean }>(`SELECT key, version, deleted FROM "${schema}".objects`)).rows;
    for (const r of final) history.final.set(r.key, { version: Number(r.version), deleted: r.deleted });
    // Drain: a transaction elsewhere in the cluster may hold the horizon back for a moment.
    const caughtUp = (): boolean => [...history.final].every(([k, f]) => history.pages.flat().some((d) => d.key === k && d.version === f.version));
    for (let i = 0; i < 600 && !caughtUp(); i++) {
      const page = await read(100);
      if (!page.more && page.changes.length === 0) await sleep(100);
    }
    const violations = checkFeedHistory(history);
    expect(violations, violations.join('\n')).toEqual([]);
    const bad = checkFeedHistory({ ...history, pages: naive.pages });
    expect(bad.filter((v) => v.startsWith('skipped: slow/')).length, 'the by-version reader skipped a held commit').toBeGreaterThan(0);
  });
});
