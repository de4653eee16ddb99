import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { JOURNAL_VERSION, MigrationJournal } from '../../src/replication/journal.js';
import { openSqlite, type SqlDatabase } from '../../src/state/sqlite-driver.js';

const pair = { src: 's3://a', dst: 'az://b' };
const dirs: string[] = [];
const open: { close(): void }[] = [];
function journalPath(): string {
  const d = mkdtempSync(join(tmpdir(), 'cloudmux-journal-test-'));
  dirs.push(d);
  return join(d, 'journal.sqlite');
}
afterEach(() => {
  for (const o of open.splice(0)) o.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Another connection to the file: it sees exactly what is committed, as a process started after a kill -9 would. */
function onDisk(path: string): { state(key: string): string | undefined; cursor(): string | undefined; events(): string[]; uploads(): string[] } {
  const db: SqlDatabase = openSqlite(path);
  open.push(db);
  return {
    state: (key) => db.prepare<[string], { state: string }>('SELECT state FROM objects WHERE key = ?').get(key)?.state,
    cursor: () => db.prepare<[], { value: string }>("SELECT value FROM meta WHERE name = 'cursor'").get()?.value,
    events: () => db.prepare<[], { key: string; event: string }>('SELECT key, event FROM events ORDER BY seq').all().map((e) => `${e.key}:${e.event}`),
    uploads: () => db.prepare<[], { key: string; state: string }>('SELECT key, state FROM uploads ORDER BY key').all().map((u) => `${u.key}:${u.state}`),
  };
}

function openJournal(path: string, opts?: Parameters<typeof MigrationJournal.open>[3]): MigrationJournal {
  const j = MigrationJournal.open(path, pair, '', opts);
  open.push(j);
  return j;
}

const verifiedBy = (key: string) => ({ size: 3, srcEtag: `e-${key}`, dstEtag: `d-${key}`, sha256: 'ab'.repeat(32), verifiedBy: 'sha256', copied: true });

describe('migration journal: group commit', () => {
  it('buffers per-object records and the cursor, and commits them together when asked to be durable', async () => {
    const path = journalPath();
    const j = openJournal(path, { flushMs: 60_000 });
    const disk = onDisk(path);
    j.copying('a', 3, 'e-a');
    j.verified('a', verifiedBy('a'));
    j.setCursor('a');
    expect(disk.state('a')).toBeUndefined();
    expect(disk.cursor()).toBeUndefined();
    // The journal's own reads see what it buffered.
    expect(j.lookup('a')).toMatchObject({ state: 'verified', copies: 1, size: 3, srcEtag: 'e-a', dstEtag: 'd-a', verifiedBy: 'sha256' });
    j.failed('b', 'e-b', 'Transient: nope');
    await Promise.all([j.durable(), j.durable()]);
    expect(disk.state('a')).toBe('verified');
    expect(disk.state('b')).toBe('failed');
    expect(disk.cursor()).toBe('a');
    expect(disk.events()).toEqual(['a:copy-start', 'a:verified', 'b:failed']);
    await j.durable(); // nothing buffered: resolves at once
  });

  it('merges the records of one key the way applying them in order would (copies summed, size and source etag kept)', async () => {
    const path = journalPath();
    const j = openJournal(path, { flushMs: 60_000 });
    j.copying('k', 10, 'e1');
    j.failed('k', undefined, 'first attempt');
    j.copying('k', 10, 'e1');
    j.verified('k', { size: 10, srcEtag: 'e1', dstEtag: 'd1', verifiedBy: 'crc32c', copied: true });
    j.flush();
    j.copying('k', 10, 'e1');
    j.sourceDeleted('k', 'e1');
    expect(j.lookup('k')).toMatchObject({ state: 'source-deleted', copies: 3, size: 10, srcEtag: 'e1', dstEtag: null, reason: null });
    j.verified('k', { size: 10, srcEtag: 'e1', dstEtag: 'd1', verifiedBy: 'crc32c', copied: false });
    j.sourceDeleted('k', 'e1');
    expect(j.lookup('k')).toMatchObject({ state: 'source-deleted', copies: 3, dstEtag: 'd1', verifiedBy: 'crc32c' });
    expect(j.events('k').map((e) => e.event)).toEqual(['copy-start', 'failed', 'copy-start', 'verified', 'copy-start', 'source-deleted', 'identical', 'source-deleted']);
  });

  it('commits on its own within flushMs, and at once when maxBatch records wait', async () => {
    const path = journalPath();
    const j = openJournal(path, { flushMs: 20, maxBatch: 1000 });
    const disk = onDisk(path);
    j.verified('timed', verifiedBy('timed'));
    expect(disk.state('timed')).toBeUndefined();
    await new Promise((r) => setTimeout(r, 150));
    expect(disk.state('timed')).toBe('verified');

    const k = openJournal(journalPath(), { flushMs: 60_000, maxBatch: 4 });
    const disk2 = onDisk(k.path);
    k.verified('x', verifiedBy('x')); // 2 records: the row and its event
    expect(disk2.state('x')).toBeUndefined();
    k.verified('y', verifiedBy('y')); // 4: committed before the call returns
    expect(disk2.state('x')).toBe('verified');
    expect(disk2.state('y')).toBe('verified');
  });

  it('never has the cursor on disk ahead of the records of the keys it passed, wherever a batch ends', () => {
    const path = journalPath();
    const j = openJournal(path, { flushMs: 60_000, maxBatch: 7 }); // a prime: batches end at every step of the pattern
    const disk = onDisk(path);
    const keys = Array.from({ length: 40 }, (_, i) => `k${String(i).padStart(3, '0')}`);
    const check = (): void => {
      const c = disk.cursor();
      for (const k of keys) if (c !== undefined && k <= c) expect(disk.state(k), `${k} behind the cursor ${c}`).toBe('verified');
    };
    for (const key of keys) {
      j.copying(key, 3, `e-${key}`);
      check();
      j.verified(key, verifiedBy(key));
      check();
      j.setCursor(key);
      check();
    }
    j.passComplete();
    j.finishRun('complete', {});
    expect(disk.cursor()).toBeUndefined();
    expect(keys.every((k) => disk.state(k) === 'verified')).toBe(true);
  });

  it('commits upload records before returning, with every record buffered before them', () => {
    const path = journalPath();
    const j = openJournal(path, { flushMs: 60_000 });
    const disk = onDisk(path);
    j.verified('small', verifiedBy('small'));
    j.copying('big', 100, 'e-big');
    j.uploadStarted('big', { handle: 'h', srcEtag: 'e-big', size: 100, partSize: 50 });
    // The handle is on disk before any part is sent, and so is what came before it.
    expect(disk.uploads()).toEqual(['big:open']);
    expect(disk.state('big')).toBe('copying');
    expect(disk.state('small')).toBe('verified');
    j.partUploaded('big', { partNumber: 1, size: 50, crc32c: '00000000', etag: '"p1"' });
    const other = MigrationJournal.open(path, pair);
    try {
      expect(other.upload('big')?.parts.map((p) => p.partNumber)).toEqual([1]);
    } finally {
      other.close();
    }
    j.uploadClosed('big', 'e-big', 'completed');
    expect(disk.uploads()).toEqual(['big:completed']);
    expect(disk.events()).toEqual(['small:verified', 'big:copy-start', 'big:upload-start', 'big:upload-complete']);
  });

  it('writes a large batch in call order (events keep their sequence)', () => {
    const j = openJournal(journalPath(), { flushMs: 60_000, maxBatch: 100_000 });
    const keys = Array.from({ length: 157 }, (_, i) => `k${String(i).padStart(3, '0')}`).reverse();
    for (const key of keys) j.copying(key, 3, `e-${key}`);
    for (const key of keys) j.verified(key, verifiedBy(key));
    j.flush();
    expect(j.events().map((e) => `${e.key}:${e.event}`)).toEqual([...keys.map((k) => `${k}:copy-start`), ...keys.map((k) => `${k}:verified`)]);
    expect(j.counts()).toEqual({ verified: keys.length });
    expect(j.lookup('k100')).toMatchObject({ state: 'verified', copies: 1, dstEtag: 'd-k100' });
  });

  it('commits what is buffered on finishRun and on close', () => {
    const path = journalPath();
    const j = MigrationJournal.open(path, pair, '', { flushMs: 60_000 });
    const disk = onDisk(path);
    j.verified('a', verifiedBy('a'));
    j.finishRun('aborted', {});
    expect(disk.state('a')).toBe('verified');
    j.verified('b', verifiedBy('b'));
    j.setCursor('b');
    j.close();
    expect(disk.state('b')).toBe('verified');
    expect(disk.cursor()).toBe('b');
  });
});

describe('migration journal: file format', () => {
  it('opens and resumes a journal written before group commit (same schema, rows written one autocommit at a time)', () => {
    const path = journalPath();
    // What the previous version wrote for one verified object, one in flight, and the cursor.
    const old = openSqlite(path);
    old.exec(`
      CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE objects (key TEXT PRIMARY KEY, state TEXT NOT NULL, size INTEGER, src_etag TEXT, dst_etag TEXT, sha256 TEXT, verified_by TEXT, reason TEXT, copies INTEGER NOT NULL DEFAULT 0, updated_at INTEGER NOT NULL);
      CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, run INTEGER NOT NULL, key TEXT NOT NULL, src_etag TEXT, event TEXT NOT NULL, detail TEXT, at INTEGER NOT NULL);
      CREATE INDEX events_key ON events(key, seq);
      CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, started_at INTEGER NOT NULL, finished_at INTEGER, status TEXT, summary TEXT);
      CREATE TABLE uploads (key TEXT PRIMARY KEY, handle TEXT NOT NULL, src_etag TEXT NOT NULL, size INTEGER NOT NULL, part_size INTEGER NOT NULL, state TEXT NOT NULL, run INTEGER NOT NULL, started_at INTEGER NOT NULL);
      CREATE TABLE upload_parts (key TEXT NOT NULL, part_number INTEGER NOT NULL, size INTEGER NOT NULL, crc32c TEXT NOT NULL, etag TEXT, sha256 TEXT, run INTEGER NOT NULL, uploads INTEGER NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (key, part_number));
      INSERT INTO meta VALUES ('pair', 's3://a -> az://b'), ('filter', ''), ('cursor', 'a');
      INSERT INTO runs(started_at, status) VALUES (1, 'running');
      INSERT INTO objects VALUES ('a', 'verified', 3, 'e-a', 'd-a', NULL, 'md5', NULL, 1, 1), ('b', 'copying', 5, 'e-b', NULL, NULL, NULL, NULL, 1, 1);
      INSERT INTO events(run, key, src_etag, event, detail, at) VALUES (1, 'a', 'e-a', 'copy-start', NULL, 1), (1, 'a', 'e-a', 'verified', 'md5', 1), (1, 'b', 'e-b', 'copy-start', NULL, 1);
    `);
    old.close();
    const j = openJournal(path);
    expect(j.runId).toBe(2);
    expect(j.cursor()).toBe('a');
    expect(j.lookup('a')).toMatchObject({ state: 'verified', srcEtag: 'e-a', dstEtag: 'd-a', copies: 1 });
    j.copying('b', 5, 'e-b');
    j.verified('b', { size: 5, srcEtag: 'e-b', dstEtag: 'd-b', verifiedBy: 'md5', copied: true });
    expect(j.lookup('b')).toMatchObject({ state: 'verified', copies: 2 });
    expect(j.events().map((e) => `${e.run}:${e.key}:${e.event}`)).toEqual(['1:a:copy-start', '1:a:verified', '1:b:copy-start', '2:b:copy-start', '2:b:verified']);
  });
});

describe('migration journal: format version', () => {
  it('records version 1, and refuses a journal a newer cloudmux wrote without touching it', () => {
    const path = journalPath();
    MigrationJournal.open(path, pair).close();
    const raw = openSqlite(path);
    expect(raw.prepare<[], { value: string }>("SELECT value FROM meta WHERE name = 'version'").get()?.value).toBe(String(JOURNAL_VERSION));
    raw.prepare("UPDATE meta SET value = ? WHERE name = 'version'").run(String(JOURNAL_VERSION + 1));
    const runs = (): number => raw.prepare<[], { n: number }>('SELECT count(*) AS n FROM runs').get()!.n;
    const before = runs();
    expect(() => MigrationJournal.open(path, pair)).toThrow(expect.objectContaining({
      code: 'InvalidConfig', message: `--journal ${path} is journal version ${JOURNAL_VERSION + 1}, newer than this cloudmux understands (${JOURNAL_VERSION})`,
    }));
    expect(runs()).toBe(before);
    raw.close();
  });
});
