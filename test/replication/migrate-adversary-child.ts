/**
 * Child process of the migration adversary test: migrates a source (an fs directory, or a prefix
 * of the s3rver bucket) into an fs directory through a journal, until it finishes or the parent
 * kills it with SIGKILL. Prints `COPIED <key>`, `DELETED <key>` and, before each delete of a source
 * object, `DELETING <key> <ms>` with the time of the check (head) that preceded it: the window in
 * which a store without conditional delete can lose a concurrent write.
 * Usage: migrate-adversary-child.ts <journal> <fs|s3> <src dir or prefix> <dst dir> <delete-source 0|1> <ops per second>
 */
import { FsStore } from '../../providers/fs/store.js';
import { S3Store } from '../../providers/s3/store.js';
import type { BlobStore, DeleteOptions, SignalOptions } from '../../src/core/index.js';
import { MigrationJournal } from '../../src/replication/journal.js';
import { migrate } from '../../src/replication/migrate.js';
import { emulatorOptions } from '../harness/s3.js';
import { overrideStore } from './helpers.js';

const [journalPath, kind, srcSpec, dstDir, deleteSource, ops] = process.argv.slice(2);
const names = { src: `${kind}:src`, dst: 'fs:dst' };
const inner: BlobStore = kind === 's3' ? new S3Store(emulatorOptions({ prefix: srcSpec! })) : new FsStore({ root: srcSpec!, fsync: false });
const lastHead = new Map<string, number>();
const src = overrideStore(inner, {
  head: (key: string, o?: SignalOptions) => {
    lastHead.set(key, Date.now());
    return inner.head(key, o);
  },
  delete: (key: string, o?: DeleteOptions) => {
    process.stdout.write(`DELETING ${JSON.stringify(key)} ${lastHead.get(key) ?? 0}\n`);
    return inner.delete(key, o);
  },
});
const journal = MigrationJournal.open(journalPath!, names, JSON.stringify({ include: [], exclude: [] }));
const summary = await migrate(src, new FsStore({ root: dstDir!, fsync: false }), {
  journal, names, concurrency: 4, opsPerSecond: Number(ops), deleteSource: deleteSource === '1', preflight: false, retries: 20,
  onEvent: (e) => {
    if (e.type === 'object' && e.outcome === 'copied') process.stdout.write(`COPIED ${JSON.stringify(e.key)}\n`);
    if (e.type === 'source-deleted') process.stdout.write(`DELETED ${JSON.stringify(e.key)}\n`);
  },
});
journal.close();
process.stdout.write(`DONE ${JSON.stringify(summary)}\n`);
process.exit(0);
