import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../harness/emulator.js';
import { SqliteStateStore } from '../../src/state/sqlite.js';
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
