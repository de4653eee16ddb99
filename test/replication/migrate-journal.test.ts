import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import type { SignalOptions, UploadHandle, UploadPartOptions } from '../../src/core/index.js';
import { MigrationJournal } from '../../src/replication/journal.js';
import { migrate } from '../../src/replication/migrate.js';
import { openSqlite, type SqlDatabase } from '../../src/state/sqlite-driver.js';
import { FakeResumableStore } from './fake-resumable.js';
import { overrideStore, payload } from './helpers.js';

const names = { src: 'src', dst: 'dst' };
const filter = JSON.stringify({ include: [], exclude: [] });
const cleanup: (() => void)[] = [];
function journalPath(): string {
  const d = mkdtempSync(join(tmpdir(), 'cloudmux-migrate-journal-'));
  cleanup.push(() => rmSync(d, { recursive: true, force: true }));
  return join(d, 'journal.sqlite');
}
afterEach(() => {
  for (const c of cleanup.splice(0).reverse()) c();
});

/** What a process started after a kill -9 would read: another connection sees only committed rows. */
function committedState(path: string): (key: string) => string | undefined {
  const db: SqlDatabase = openSqlite(path);
  cleanup.push(() => db.close());
  const stmt = db.prepare<[string], { state: string }>('SELECT state FROM objects WHERE key = ?');
  return (key) => stmt.get(key)?.state;
}

/** A journal that would keep every record in memory for the whole run unless something asks for it to be durable. */
function lazyJournal(path: string): MigrationJournal {
  const j = MigrationJournal.open(path, names, filter, { flushMs: 600_000, maxBatch: 1_000_000 });
  cleanup.push(() => j.close());
  return j;
}

describe('migrate: the order of journal commits', () => {
  it('deletes a source object only once its verified record is committed (copied or found identical)', async () => {
    const inner = new MemoryStore();
    const dst = new MemoryStore();
    for (let i = 0; i < 30; i++) await inner.put(`k${i}`, payload(10 + i, i));
    for (let i = 0; i < 5; i++) await dst.put(`k${i}`, payload(10 + i, i)); // already there: the identical path
    const path = journalPath();
    const journal = lazyJournal(path);
    const onDisk = committedState(path);
    const deleted: string[] = [];
    const src = overrideStore(inner, {
      delete: async (key: string, opts?: SignalOptions) => {
        expect(onDisk(key), `${key} deleted before its verified record was committed`).toBe('verified');
        deleted.push(key);
        return inner.delete(key, opts);
      },
    });
    const s = await migrate(src, dst, { journal, names, deleteSource: true, concurrency: 8 });
    expect(s).toMatchObject({ failed: 0, copied: 25, identical: 5, sourceDeleted: 30 });
    expect(deleted).toHaveLength(30);
    expect(journal.counts()).toEqual({ 'source-deleted': 30 });
  });

  it('commits a large object\'s copying record and upload handle before its first part is sent', async () => {
    const src = new MemoryStore();
    await src.put('big', payload(23, 7));
    await src.put('small', 'abc');
    const dst = new FakeResumableStore();
    const path = journalPath();
    const journal = lazyJournal(path);
    const db = openSqlite(path);
    cleanup.push(() => db.close());
    const onDisk = committedState(path);
    const upload = db.prepare<[string], { state: string }>('SELECT state FROM uploads WHERE key = ?');
    let parts = 0;
    const sendPart = dst.uploadPart.bind(dst);
    dst.uploadPart = async (handle: UploadHandle, n: number, bytes: Uint8Array, opts?: UploadPartOptions) => {
      expect(upload.get('big')?.state).toBe('open');
      expect(onDisk('big')).toBe('copying');
      parts++;
      return sendPart(handle, n, bytes, opts);
    };
    const s = await migrate(src, dst, { journal, names, partConcurrency: 2 });
    expect(s).toMatchObject({ failed: 0, copied: 2 });
    expect(parts).toBe(5);
    expect(onDisk('big')).toBe('verified');
    expect(journal.upload('big')?.parts.map((p) => p.uploads)).toEqual([1, 1, 1, 1, 1]);
  });
});
