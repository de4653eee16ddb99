import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createAzureStore } from '../../providers/azure/index.js';
import { FsStore } from '../../providers/fs/store.js';
import { getBuffer } from '../../src/core/index.js';
import type { BlobStore, UploadHandle, UploadPartOptions, UploadedPart } from '../../src/core/index.js';
import { ForwardingStore } from '../../src/layers/forwarding-store.js';
import { MigrationJournal } from '../../src/replication/journal.js';
import { migrate } from '../../src/replication/migrate.js';
import { pseudoRandomBytes, sha256Hex } from '../../src/testing/index.js';
import { spawnManaged, tempDir } from '../harness/emulator.js';
import { expectNoVerifiedRecopy } from './helpers.js';

const MiB = 1024 * 1024;
const connectionString = process.env.AZURE_STORAGE_CONNECTION_STRING;
const container = process.env.AZURE_CONTAINER ?? 'cloudmux-test';

/** Records the part numbers sent through it: the request log of the resumed run. */
class PartLog extends ForwardingStore {
  protected readonly layerName = 'PartLog';
  readonly sent: number[] = [];
  override async uploadPart(handle: UploadHandle, partNumber: number, bytes: Uint8Array, opts?: UploadPartOptions): Promise<UploadedPart> {
    this.sent.push(partNumber);
    return super.uploadPart(handle, partNumber, bytes, opts);
  }
}

/** Resolves once `count` lines starting with `PART ` were printed (or rejects if the child ends first). */
function partsPrinted(child: ReturnType<typeof spawnManaged>, count: number, timeoutMs: number): Promise<void> {
  return new Promise((ok, fail) => {
    let seen = 0;
    let buffered = '';
    const timer = setTimeout(() => fail(new Error(`no ${count} parts within ${timeoutMs} ms:\n${child.output()}`)), timeoutMs);
    child.child.stdout!.on('data', (d: Buffer) => {
      buffered += d.toString('utf8');
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      seen += lines.filter((l) => l.startsWith('PART ')).length;
      if (seen >= count) {
        clearTimeout(timer);
        ok();
      }
    });
    child.child.once('exit', () => {
      clearTimeout(timer);
      fail(new Error(`the child ended before ${count} parts:\n${child.output()}`));
    });
  });
}

describe.runIf(Boolean(connectionString))('resumable migration survives kill -9 (needs Azurite: CLOUDMUX_EMULATORS must include azure)', () => {
  it('a 40 MiB object killed after some 5 MiB parts resumes: finished parts are not sent again and the object verifies', async () => {
    const dir = await tempDir('resumable-kill');
    const prefix = `kill-${randomBytes(3).toString('hex')}`;
    const journalPath = `${dir.path}/journal.sqlite`;
    const srcDir = `${dir.path}/src`;
    const src = new FsStore({ root: srcDir, fsync: false });
    const data = pseudoRandomBytes(40 * MiB, 'resumable-kill');
    await src.put('big/object.bin', data);
    await src.put('small.txt', 'small');
    const dst = createAzureStore({ connectionString, container, prefix, blockSize: 5 * MiB });
    try {
      // 6 MiB/s: the 8 parts take about 7 s, so the kill lands mid-object.
      const child = spawnManaged(process.execPath, ['--import', 'tsx', resolve('test/replication/resumable-kill-child.ts'), journalPath, srcDir, container, prefix, String(6 * MiB)]);
      try {
        await partsPrinted(child, 3, 60_000);
      } finally {
        await child.kill();
      }
      expect(child.output()).not.toContain('DONE');

      const before = MigrationJournal.open(journalPath, { src: 'fs', dst: 'az' });
      const killed = before.upload('big/object.bin')!;
      const killedRun = before.runId - 1;
      before.close();
      expect(killed.state).toBe('open');
      expect(killed.run).toBe(killedRun);
      const finishedBeforeKill = killed.parts.map((p) => p.partNumber);
      expect(finishedBeforeKill.length).toBeGreaterThanOrEqual(3);
      expect(finishedBeforeKill.length).toBeLessThan(8);

      const log = new PartLog(dst);
      const summary = await migrate(src, log as BlobStore, { journal: journalPath, names: { src: 'fs', dst: 'az' }, partConcurrency: 2 });
      expect(summary).toMatchObject({ failed: 0, verified: 2 }); // small.txt may have landed before the kill
      expect(summary.incomplete).toBeUndefined();
      // The request log of the resumed run: none of the parts journalled before the kill went out again.
      expect(log.sent.filter((n) => finishedBeforeKill.includes(n))).toEqual([]);
      expect([...new Set([...finishedBeforeKill, ...log.sent])].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);

      const after = MigrationJournal.open(journalPath, { src: 'fs', dst: 'az' });
      try {
        const u = after.upload('big/object.bin')!;
        expect(u.state).toBe('completed');
        expect(u.parts).toHaveLength(8);
        expect(u.parts.every((p) => p.uploads === 1)).toBe(true); // each part accepted once over both runs
        expect(u.parts.filter((p) => p.run === killedRun).map((p) => p.partNumber)).toEqual(finishedBeforeKill);
        expect(after.events('big/object.bin').map((e) => e.event)).toContain('upload-resume');
        expect(after.lookup('big/object.bin')).toMatchObject({ state: 'verified', verifiedBy: 'reread-sha256' });
        expectNoVerifiedRecopy(after);
      } finally {
        after.close();
      }
      const copied = await getBuffer(dst, 'big/object.bin', { verify: true });
      expect(sha256Hex(copied)).toBe(sha256Hex(data));
      expect((await dst.head('big/object.bin')).checksums.sha256).toBe(sha256Hex(data));
    } finally {
      await dst.deleteMany(['big/object.bin', 'small.txt']).catch(() => undefined);
      await dir.remove();
    }
  }, 120_000);
});
