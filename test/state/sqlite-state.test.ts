import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../harness/emulator.js';
import { SQLITE_SCHEMA_VERSION, SqliteStateStore } from '../../src/state/sqlite.js';
import { openSqlite } from '../../src/state/sqlite-driver.js';
import type { PutRecord, StateStore } from '../../src/state/types.js';
import { stateStoreCases } from './state-cases.js';

const open: StateStore[] = [];
const dirs: { remove(): Promise<void> }[] = [];

afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
  for (const d of dirs.splice(0)) await d.remove();
});

async function fresh(clock?: () => number): Promise<SqliteStateStore> {
  const dir = await tempDir('state');
  dirs.push(dir);
  const s = new SqliteStateStore({ path: `${dir.path}/state.db`, durability: 'normal', now: clock });
  open.push(s);
  return s;
}

stateStoreCases('sqlite', fresh);

describe('sqlite state: change feed schema', () => {
  it('a schema-1 database gains the change feed on open; its rows are delivered', async () => {
    const dir = await tempDir('state');
    dirs.push(dir);
    const path = `${dir.path}/state.db`;
    const a = new SqliteStateStore({ path, durability: 'normal' });
    const v = await a.nextVersion();
    await a.commitPut({ key: 'old', version: v, size: 1, metadata: {}, lastModified: new Date(), acked: [{ provider: 'a', version: v }], owed: [] });
    await a.close();
    // Back to schema 1 as an older cloudmux left it.
    const raw = openSqlite(path);
    raw.exec(`DROP TRIGGER cmx_objects_seq_insert; DROP TRIGGER cmx_objects_seq_update;
      DROP INDEX cmx_objects_change; ALTER TABLE cmx_objects DROP COLUMN change_seq; DROP TABLE cmx_change_feed;
      DROP INDEX cmx_outbox_class_due; ALTER TABLE cmx_outbox DROP COLUMN priority;
      UPDATE cmx_meta SET value = '1' WHERE name = 'schema';`);
    raw.close();
    const b = new SqliteStateStore({ path, durability: 'normal' });
    open.push(b);
    const page = await b.changesSince(undefined, { limit: 10 });
    expect(page.changes.map((c) => `${c.key}@${c.version}`)).toEqual([`old@${v}`]);
    const v2 = await b.nextVersion();
    await b.commitPut({ key: 'new', version: v2, size: 1, metadata: {}, lastModified: new Date(), acked: [{ provider: 'a', version: v2 }], owed: [] });
    expect((await b.changesSince(page.cursor, { limit: 10 })).changes.map((c) => c.key)).toEqual(['new']);
  });
});

describe('sqlite state: schema version', () => {
  it('refuses a database a newer cloudmux wrote (InvalidConfig naming both versions) and leaves it untouched', async () => {
    const dir = await tempDir('state');
    dirs.push(dir);
    const path = `${dir.path}/state.db`;
    const a = new SqliteStateStore({ path, durability: 'normal' });
    await a.close();
    const raw = openSqlite(path);
    raw.exec(`UPDATE cmx_meta SET value = '${SQLITE_SCHEMA_VERSION + 1}' WHERE name = 'schema'; CREATE TABLE cmx_from_the_future (x INTEGER);`);
    raw.close();
    expect(() => new SqliteStateStore({ path, durability: 'normal' })).toThrow(expect.objectContaining({
      code: 'InvalidConfig', message: expect.stringMatching(new RegExp(`schema version ${SQLITE_SCHEMA_VERSION + 1}, newer than this cloudmux understands \\(${SQLITE_SCHEMA_VERSION}\\)`)) as unknown,
    }));
    const after = openSqlite(path);
    expect((after.prepare("SELECT value FROM cmx_meta WHERE name = 'schema'").get() as { value: string }).value).toBe(String(SQLITE_SCHEMA_VERSION + 1));
    after.close();
  });
});

describe('sqlite state: an older cloudmux on the same file', () => {
  it('rows it writes (no change sequence) are still delivered', async () => {
    const dir = await tempDir('state');
    dirs.push(dir);
    const path = `${dir.path}/state.db`;
    const s = new SqliteStateStore({ path, durability: 'normal' });
    open.push(s);
    const v = await s.nextVersion();
    await s.commitPut({ key: 'k', version: v, size: 1, metadata: {}, lastModified: new Date(), acked: [{ provider: 'a', version: v }], owed: [] });
    const seen = await s.changesSince(undefined, { limit: 10 });
    // What schema-1 code writes: the insert takes change_seq's default, the update leaves it.
    const [o1, o2] = [await s.nextVersion(), await s.nextVersion()];
    const raw = openSqlite(path);
    raw.exec(`INSERT INTO cmx_objects (key, version, deleted, size, metadata, updated_at) VALUES ('old-insert', ${o1}, 0, 1, '{}', 0);
      UPDATE cmx_objects SET version = ${o2} WHERE key = 'k';`);
    raw.close();
    const next = await s.changesSince(seen.cursor, { limit: 10 });
    expect(next.changes.map((c) => `${c.key}@${c.version}`)).toEqual([`old-insert@${o1}`, `k@${o2}`]);
    // This code's own writes do not fire the triggers: one sequence step per commit.
    const v2 = await s.nextVersion();
    await s.commitPut({ key: 'k', version: v2, size: 1, metadata: {}, lastModified: new Date(), acked: [{ provider: 'a', version: v2 }], owed: [] });
    const last = await s.changesSince(next.cursor, { limit: 10 });
    expect(last.changes.map((c) => `${c.key}@${c.version}`)).toEqual([`k@${v2}`]);
    expect(Number(last.cursor.split('.').pop()) - Number(next.cursor.split('.').pop())).toBe(1);
  });
});

describe('sqlite state: durability', () => {
  it('keeps catalog, outbox and the version counter across reopen', async () => {
    const dir = await tempDir('state');
    dirs.push(dir);
    const path = `${dir.path}/state.db`;
    const a = new SqliteStateStore({ path, durability: 'full' });
    const v = await a.nextVersion();
    const rec: PutRecord = { key: 'k', version: v, size: 3, sha256: 'ab', metadata: {}, lastModified: new Date(), acked: [{ provider: 'a', version: v }], owed: ['b'] };
    await a.commitPut(rec);
    await a.close();
    const b = new SqliteStateStore({ path, durability: 'full' });
    open.push(b);
    expect(await b.nextVersion()).toBeGreaterThan(v);
    const found = await b.lookup('k');
    expect(found.state).toBe('live');
    expect((await b.backlog()).count).toBe(1);
  });
});
