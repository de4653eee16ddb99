/**
 * Child process for the kill-after-a-batch test: migrates one fs directory into another through a
 * journal opened with the given commit interval, printing `COPIED <key>` as each copy verifies,
 * until the parent kills it with SIGKILL.
 * Usage: kill-batch-child.ts <journal> <srcDir> <dstDir> <flushMs> <opsPerSecond> [--delete-source]
 */
import { FsStore } from '../../providers/fs/store.js';
import { MigrationJournal } from '../../src/replication/journal.js';
import { migrate } from '../../src/replication/migrate.js';

const [journalPath, srcDir, dstDir, flushMs, ops] = process.argv.slice(2);
const names = { src: 'fs:src', dst: 'fs:dst' };
const journal = MigrationJournal.open(journalPath!, names, JSON.stringify({ include: [], exclude: [] }), { flushMs: Number(flushMs), maxBatch: 1_000_000 });
const summary = await migrate(new FsStore({ root: srcDir!, fsync: false }), new FsStore({ root: dstDir!, fsync: false }), {
  journal, names, concurrency: 4, opsPerSecond: Number(ops), deleteSource: process.argv.includes('--delete-source'),
  onEvent: (e) => {
    if (e.type === 'object' && e.outcome === 'copied') process.stdout.write(`COPIED ${JSON.stringify(e.key)}\n`);
    if (e.type === 'source-deleted') process.stdout.write(`DELETED ${JSON.stringify(e.key)}\n`);
  },
});
journal.close();
process.stdout.write(`DONE ${JSON.stringify(summary)}\n`);
