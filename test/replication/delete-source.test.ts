import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import { deleteIfUnchanged, getBuffer, type BlobStore, type DeleteOptions } from '../../src/core/index.js';
import { provesUnder } from '../../src/replication/copier.js';
import { MigrationJournal } from '../../src/replication/journal.js';
import { migrate } from '../../src/replication/migrate.js';
import { expectCode } from '../../src/testing/cases.js';
import { overrideStore } from './helpers.js';
import { S3Store } from '../../providers/s3/store.js';
import { S3RVER_MARK, emulatorOptions } from '../harness/s3.js';

/**
 * Issue 14, item 4 and the removeSource finding: a source object is deleted only after a
 * digest-verified copy of the very version being deleted exists.
 */

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function journalPath(): string {
  const d = mkdtempSync(join(tmpdir(), 'cloudmux-delete-source-'));
  dirs.push(d);
  return join(d, 'journal.sqlite');
}

/** Every key of `want` holds these bytes at the source or at the destination (the invariant). */
async function assertNothingLost(src: BlobStore, dst: BlobStore, want: Record<string, string>): Promise<void> {
  for (const [key, bytes] of Object.entries(want)) {
    const at = async (s: BlobStore): Promise<string | undefined> => getBuffer(s, key).then((b) => b.toString(), () => undefined);
    const [a, b] = await Promise.all([at(src), at(dst)]);
    expect(a === bytes || b === bytes, `${key}: source ${a}, destination ${b}, want ${bytes}`).toBe(true);
  }
}

describe('--delete-source never trusts sizes', () => {
  it('a size-only journal record is no proof to a default run with --delete-source (issue 14 repro)', async () => {
    const src = new MemoryStore();
    const dst = new MemoryStore();
    await src.put('k', 'the only copy: AAAA');
    await dst.put('k', 'same size, other: B'); // same length, other content
    const journal = journalPath();
    const first = await migrate(src, dst, { checksum: 'size-only', journal, preflight: false });
    expect(first.identical).toBe(1);
    const second = await migrate(src, dst, { deleteSource: true, journal, preflight: false });
    expect(second.failed).toBe(0);
    await assertNothingLost(src, dst, { k: 'the only copy: AAAA' });
    expect((await getBuffer(dst, 'k')).toString()).toBe('the only copy: AAAA');
    expect(second.copied).toBe(1);
    expect(second.sourceDeleted).toBe(1);
    const j = MigrationJournal.open(journal, { src: src.toString(), dst: dst.toString() });
    try {
      expect(j.lookup('k')).toMatchObject({ state: 'source-deleted', checksumMode: 'auto' });
    } finally {
      j.close();
    }
  });

  it('--checksum size-only with --delete-source compares and verifies by digest', async () => {
    const src = new MemoryStore();
    const dst = new MemoryStore();
    await src.put('k', 'AAAA');
    await dst.put('k', 'BBBB');
    const summary = await migrate(src, dst, { checksum: 'size-only', deleteSource: true, preflight: false });
    expect(summary.failed).toBe(0);
    expect((await getBuffer(dst, 'k')).toString()).toBe('AAAA');
    await expectCode(src.head('k'), 'NotFound');
  });

  it('provesUnder: sizes prove nothing but to size-only', () => {
    expect(provesUnder('size-only', 'auto')).toBe(false);
    expect(provesUnder('journal:size-only', 'auto')).toBe(false);
    expect(provesUnder('journal:size-only', 'size-only')).toBe(true);
    expect(provesUnder('sha256+crc32c', 'auto')).toBe(true);
    expect(provesUnder('crc32c', 'sha256')).toBe(false);
    expect(provesUnder('reread-sha256', 'native')).toBe(true);
    expect(provesUnder('md5', 'native')).toBe(true);
  });
});

describe('a source rewritten between verification and delete is kept', () => {
  for (const conditional of [true, false]) {
    it(conditional ? 'conditional delete (ifMatch): the provider refuses the stale delete' : 'no conditional delete: the re-check right before the delete catches it', async () => {
      const mem = new MemoryStore();
      const dst = new MemoryStore();
      await mem.put('k', 'version one');
      let rewrites = 0;
      let heads = 0;
      // The rewrite lands in the last moment the migration can be surprised by: with a conditional
      // delete, between its check and the delete; without, between the copy and the check.
      const src = overrideStore(mem, {
        capabilities: { ...mem.capabilities, conditionalDelete: conditional },
        head: async (key: string, o?: DeleteOptions) => {
          heads++;
          if (!conditional && rewrites === 0 && heads === 1) {
            rewrites++;
            await mem.put(key, 'version two, written meanwhile');
          }
          return mem.head(key, o);
        },
        delete: async (key: string, o?: DeleteOptions) => {
          if (conditional && rewrites === 0) {
            rewrites++;
            await mem.put(key, 'version two, written meanwhile');
          }
          if (!conditional) expect(o?.ifMatch).toBeUndefined();
          return mem.delete(key, o);
        },
      });
      const summary = await migrate(src, dst, { deleteSource: true, preflight: false, concurrency: 1 });
      expect(rewrites).toBe(1);
      expect(summary.failed).toBe(0);
      // The new version was copied again before its source went.
      expect((await getBuffer(dst, 'k')).toString()).toBe('version two, written meanwhile');
      await assertNothingLost(mem, dst, { k: 'version two, written meanwhile' });
    });
  }

  it('deleteIfUnchanged compares etag and sha256, and reports a missing object', async () => {
    const s = new MemoryStore();
    const v1 = await s.put('k', 'one');
    await s.put('k', 'two');
    await expectCode(deleteIfUnchanged(s, 'k', { etag: v1.etag }), 'PreconditionFailed');
    const v2 = await s.head('k');
    await expectCode(deleteIfUnchanged(s, 'k', { etag: v2.etag, sha256: v1.checksums.sha256 }), 'PreconditionFailed');
    expect(await deleteIfUnchanged(s, 'k', { etag: v2.etag, sha256: v2.checksums.sha256 })).toBe(true);
    expect(await deleteIfUnchanged(s, 'k', { etag: v2.etag })).toBe(false);
  });
});

describe.runIf(process.env.S3_ENDPOINT && process.env[S3RVER_MARK] === 's3rver')('s3rver and If-Match on DeleteObject', () => {
  it('s3rver ignores it (the listed deviation: conditionalDelete stays off there); off by default, a conditional delete is NotSupported', async () => {
    const prefix = `cd-${Date.now().toString(36)}`;
    const plain = new S3Store(emulatorOptions({ prefix }));
    expect(plain.capabilities.conditionalDelete).toBe(false);
    const v = await plain.put('k', 'x');
    await expectCode(plain.delete('k', { ifMatch: v.etag }), 'NotSupported');
    // Forced on: s3rver deletes despite an etag that matches nothing.
    const forced = new S3Store(emulatorOptions({ prefix, conditionalDelete: true }));
    await forced.delete('k', { ifMatch: 'deadbeef' }).catch(() => undefined);
    await expectCode(plain.head('k'), 'NotFound');
    await Promise.all([plain.close(), forced.close()]);
  });
});
