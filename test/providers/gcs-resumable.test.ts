import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GcsStore } from '../../providers/gcs/index.js';
import { MemoryStore } from '../../providers/memory/index.js';
import { Crc32c, InvalidArgumentError, SHA256_KEY, exists, getBuffer, resumableUploads } from '../../src/core/index.js';
import type { BlobStore, UploadHandle, UploadPartOptions, UploadedPart } from '../../src/core/index.js';
import { ForwardingStore } from '../../src/layers/forwarding-store.js';
import { migrate } from '../../src/replication/migrate.js';
import { pseudoRandomBytes, sha256Hex } from '../../src/testing/index.js';

const KiB = 1024;
const CHUNK = 256 * KiB;
const endpoint = process.env.GCS_EMULATOR_HOST;
const bucket = process.env.GCS_BUCKET ?? 'cloudmux-test';

/** Records part numbers sent through it and refuses the ones listed in `refuse` once. */
class PartGate extends ForwardingStore {
  protected readonly layerName = 'PartGate';
  readonly sent: number[] = [];
  readonly refuse = new Set<number>();
  override async uploadPart(handle: UploadHandle, partNumber: number, bytes: Uint8Array, opts?: UploadPartOptions): Promise<UploadedPart> {
    if (this.refuse.delete(partNumber)) throw new InvalidArgumentError(`part ${partNumber} refused (test)`);
    this.sent.push(partNumber);
    return super.uploadPart(handle, partNumber, bytes, opts);
  }
}

describe.runIf(Boolean(endpoint))('gcs resumable uploads (needs GCS_EMULATOR_HOST: CLOUDMUX_EMULATORS must include gcs)', () => {
  const run = `gcs-resumable/${randomBytes(3).toString('hex')}`;
  const open = (): GcsStore => new GcsStore({ bucket, apiEndpoint: endpoint!, projectId: 'test-project', prefix: run, chunkSize: CHUNK, singleRequestThreshold: CHUNK });
  const data = pseudoRandomBytes(3 * CHUNK + 1000, 'gcs-resumable');
  const part = (n: number): Buffer => data.subarray((n - 1) * CHUNK, Math.min(data.byteLength, n * CHUNK));
  const crc32c = new Crc32c().update(data).hex();

  it('parts go in order into the session, a resend is a no-op, and the last part commits at completion', async () => {
    const s = open();
    expect(resumableUploads(s)).toBe(s);
    expect(s.deferLastPart).toBe(true);
    const handle = await s.startUpload('obj', { size: data.byteLength, partSize: CHUNK, contentType: 'text/x', metadata: { a: 'b' } });
    await s.uploadPart(handle, 1, part(1));
    await s.uploadPart(handle, 2, part(2));
    await s.uploadPart(handle, 1, part(1)); // the session has it: nothing is sent
    const fresh = open();
    expect(await fresh.listParts(handle)).toEqual([{ partNumber: 1, size: CHUNK }, { partNumber: 2, size: CHUNK }]);
    await expect(fresh.uploadPart(handle, 4, part(4))).rejects.toMatchObject({ code: 'InvalidArgument' }); // the last part waits for completion
    await fresh.uploadPart(handle, 3, part(3));
    expect(await exists(s, 'obj')).toBe(false);
    const parts = [...await fresh.listParts(handle), { partNumber: 4, size: 1000 }];
    const meta = await fresh.completeUpload(handle, parts, { checksums: { sha256: sha256Hex(data), crc32c }, lastPart: part(4) });
    expect(meta).toMatchObject({ key: 'obj', size: data.byteLength, contentType: 'text/x', checksums: { sha256: sha256Hex(data), crc32c } });
    expect((await getBuffer(s, 'obj', { verify: true })).equals(data)).toBe(true);
    expect((await s.head('obj')).metadata).toEqual({ a: 'b', [SHA256_KEY]: sha256Hex(data) });
    await expect(s.listParts(handle)).rejects.toMatchObject({ code: 'NotFound' });
  });

  it('GCS refuses a completion whose CRC32C does not match, and nothing is written', async () => {
    const s = open();
    const handle = await s.startUpload('bad', { size: data.byteLength, partSize: CHUNK, sha256: sha256Hex(data) });
    for (const n of [1, 2, 3]) await s.uploadPart(handle, n, part(n));
    const parts = [1, 2, 3, 4].map((n) => ({ partNumber: n, size: part(n).byteLength }));
    await expect(s.completeUpload(handle, parts, { checksums: { sha256: sha256Hex(data), crc32c: '00000000' }, lastPart: part(4) })).rejects.toMatchObject({ code: 'IntegrityError' });
    await expect(s.completeUpload(handle, parts, { checksums: { sha256: '0'.repeat(64), crc32c }, lastPart: part(4) })).rejects.toMatchObject({ code: 'IntegrityError' });
    await expect(s.completeUpload(handle, parts, { checksums: { sha256: sha256Hex(data) } })).rejects.toMatchObject({ code: 'InvalidArgument' });
    expect(await exists(s, 'bad')).toBe(false);
    await s.abortUpload(handle);
  });

  it('a migration that failed mid-object resumes its session: the parts already there are not sent again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cloudmux-gcs-resumable-'));
    try {
      const src = new MemoryStore();
      await src.put('big', data);
      const gate = new PartGate(open());
      gate.refuse.add(3);
      const journal = join(dir, 'j.sqlite');
      const names = { src: 'mem', dst: 'gcs' };
      expect((await migrate(src, gate as BlobStore, { journal, names, retries: 0 })).failed).toBe(1);
      expect(gate.sent).toEqual([1, 2]);
      const again = new PartGate(open());
      const s = await migrate(src, again as BlobStore, { journal, names });
      expect(s).toMatchObject({ copied: 1, failed: 0 });
      expect(again.sent).toEqual([3]); // and the last part at completion
      expect((await getBuffer(again, 'big', { verify: true })).equals(data)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
