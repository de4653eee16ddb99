import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FsStore } from '../../providers/fs/store.js';
import type { BlobStore, PutOptions } from '../../src/core/index.js';
import { MigrationJournal } from '../../src/replication/journal.js';
import { migrate } from '../../src/replication/migrate.js';
import { treesMatch, verifyTrees } from '../../src/replication/verify.js';
import { spawnManaged, tempDir } from '../harness/emulator.js';
import { seedDataset } from './dataset.js';
import { expectNoVerifiedRecopy, overrideStore } from './helpers.js';

const names = { src: 'fs:src', dst: 'fs:dst' };
const filter = JSON.stringify({ include: [], exclude: [] });

/** Runs the child until it has printed `count` lines starting with `prefix`, then kills it with SIGKILL; returns the keys those lines named. */
async function killAfter(args: string[], prefix: string, count: number): Promise<{ keys: string[]; output: string }> {
  const child = spawnManaged(process.execPath, ['--import', 'tsx', resolve('test/replication/kill-batch-child.ts'), ...args]);
  const keys: string[] = [];
  try {
    await new Promise<void>((ok, fail) => {
      let buffered = '';
      const timer = setTimeout(() => fail(new Error(`no ${count} ${prefix} lines within 60 s:\n${child.output()}`)), 60_000);
      child.child.stdout!.on('data', (d: Buffer) => {
        buffered += d.toString('utf8');
        const lines = buffered.split('\n');
        buffered = lines.pop()!;
        for (const l of lines) if (l.startsWith(`${prefix} `)) keys.push(JSON.parse(l.slice(prefix.length + 1)) as string);
        if (keys.length >= count) {
          clearTimeout(timer);
          child.child.kill('SIGKILL'); // at once, from this callback: the batch just copied is still in the child's memory
          ok();
        }
      });
      child.child.once('exit', () => {
        clearTimeout(timer);
        fail(new Error(`the child ended before ${count} ${prefix} lines:\n${child.output()}`));
      });
    });
  } finally {
    await child.kill();
  }
  return { keys, output: child.output() };
}

/** A destination that counts the puts of each key: the request log of the rerun. */
function countingPuts(dst: BlobStore): { store: BlobStore; puts: Map<string, number> } {
  const puts = new Map<string, number>();
  const store = overrideStore(dst, {
    put: (key: string, body: Parameters<BlobStore['put']>[1], opts?: PutOptions) => {
      puts.set(key, (puts.get(key) ?? 0) + 1);
      return dst.put(key, body, opts);
    },
  });
  return { store, puts };
}

describe('migrate: kill -9 right after a batch of copies', () => {
  it('loses no object and copies none twice, even when none of the batch reached the journal', async () => {
    const dir = await tempDir('kill-batch');
    try {
      const journalPath = `${dir.path}/journal.sqlite`;
      const src = new FsStore({ root: `${dir.path}/src`, fsync: false });
      const dst = new FsStore({ root: `${dir.path}/dst`, fsync: false });
      const keys = await seedDataset(src, { small: 60 });
      // A commit interval far longer than the run: every record of the killed run is still buffered.
      const killed = await killAfter([journalPath, `${dir.path}/src`, `${dir.path}/dst`, '600000', '150'], 'COPIED', 20);
      expect(killed.output).not.toContain('DONE');

      const before = MigrationJournal.open(journalPath, names, filter);
      try {
        // The worst case the group commit allows: copies on the destination, none of them in the journal, no cursor.
        expect(before.counts()).toEqual({});
        expect(before.cursor()).toBeUndefined();
      } finally {
        before.close();
      }
      for (const k of killed.keys) expect((await dst.head(k)).size).toBe((await src.head(k)).size);

      const { store, puts } = countingPuts(dst);
      const events: string[] = [];
      const s = await migrate(src, store, {
        journal: journalPath, names, concurrency: 4,
        onEvent: (e) => {
          if (e.type === 'object') events.push(`${e.outcome}:${e.key}`);
        },
      });
      expect(s).toMatchObject({ failed: 0, verified: keys.length });
      expect(s.incomplete).toBeUndefined();
      // The planner compared them with the destination and found them identical: not one was sent again.
      for (const k of killed.keys) {
        expect(puts.get(k), `${k} copied again`).toBeUndefined();
        expect(events).toContain(`identical:${k}`);
      }
      expect(s.copied + killed.keys.length).toBeLessThanOrEqual(keys.length);
      expect([...puts.values()].every((n) => n === 1)).toBe(true);

      expect(treesMatch(await verifyTrees(src, dst, { download: true }))).toBe(true);
      const j = MigrationJournal.open(journalPath, names, filter);
      try {
        expect(j.counts()).toEqual({ verified: keys.length });
        expectNoVerifiedRecopy(j);
      } finally {
        j.close();
      }
    } finally {
      await dir.remove();
    }
  }, 120_000);

  it('with --delete-source, every source deleted before the kill has its verified record on disk', async () => {
    const dir = await tempDir('kill-batch-delete');
    try {
      const journalPath = `${dir.path}/journal.sqlite`;
      const src = new FsStore({ root: `${dir.path}/src`, fsync: false });
      const dst = new FsStore({ root: `${dir.path}/dst`, fsync: false });
      const keys = await seedDataset(src, { small: 60 });
      const killed = await killAfter([journalPath, `${dir.path}/src`, `${dir.path}/dst`, '600000', '150', '--delete-source'], 'DELETED', 10);

      const before = MigrationJournal.open(journalPath, names, filter);
      try {
        for (const k of killed.keys) {
          await expect(src.head(k)).rejects.toMatchObject({ code: 'NotFound' });
          // Deleted from the source: its verified record was committed first (the source-deleted mark may be lost).
          expect(['verified', 'source-deleted']).toContain(before.lookup(k)?.state);
        }
      } finally {
        before.close();
      }

      const s = await migrate(src, dst, { journal: journalPath, names, concurrency: 4, deleteSource: true });
      expect(s).toMatchObject({ failed: 0 });
      expect(s.incomplete).toBeUndefined();
      // Everything is at the destination, and nothing is left at the source.
      const left: string[] = [];
      for await (const item of src.list()) if (item.type === 'object') left.push(item.key);
      expect(left).toEqual([]);
      for (const k of keys) expect((await dst.head(k)).size).toBeGreaterThanOrEqual(0);
      const j = MigrationJournal.open(journalPath, names, filter);
      try {
        expectNoVerifiedRecopy(j);
        expect(Object.values(j.counts()).reduce((a, b) => a + b, 0)).toBe(keys.length);
      } finally {
        j.close();
      }
    } finally {
      await dir.remove();
    }
  }, 120_000);
});
