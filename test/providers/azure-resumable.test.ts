import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createAzureStore } from '../../providers/azure/index.js';
import { SHA256_KEY, exists, getBuffer, resumableUploads } from '../../src/core/index.js';
import type { UploadedPart } from '../../src/core/index.js';
import { pseudoRandomBytes, sha256Hex } from '../../src/testing/index.js';

const MiB = 1024 * 1024;
const connectionString = process.env.AZURE_STORAGE_CONNECTION_STRING;
const container = process.env.AZURE_CONTAINER ?? 'cloudmux-test';

describe.runIf(Boolean(connectionString))('azure resumable uploads (needs AZURE_STORAGE_CONNECTION_STRING: CLOUDMUX_EMULATORS must include azure)', () => {
  const run = `resumable-${randomBytes(3).toString('hex')}`;
  const open = (prefix = run) => createAzureStore({ connectionString, container, prefix, blockSize: MiB });
  const data = pseudoRandomBytes(3 * MiB + 1234, 'az-resumable');
  const part = (n: number): Buffer => data.subarray((n - 1) * MiB, Math.min(data.byteLength, n * MiB));

  it('declares the capability; part size grows to fit 50,000 blocks', () => {
    const s = open();
    expect(resumableUploads(s)).toBe(s);
    expect(s.uploadPartSize(10 * MiB)).toBe(MiB);
    expect(s.uploadPartSize(100_000 * MiB)).toBe(2 * MiB);
    expect(s.multipartThreshold).toBe(s.config.singleShotThreshold);
  });

  it('stages parts in any order under ids derived from the handle; another process lists them; commit writes MD5 and SHA-256', async () => {
    const s = open();
    const key = 'obj.bin';
    const handle = await s.startUpload(key, { size: data.byteLength, partSize: MiB, contentType: 'application/x-test', metadata: { owner: 'me' } });
    await s.uploadPart(handle, 3, part(3));
    await s.uploadPart(handle, 1, part(1));
    expect(await exists(s, key)).toBe(false); // nothing visible before the commit
    const other = open(); // a fresh client, as a resumed process would have
    expect(await other.listParts(handle)).toEqual([{ partNumber: 1, size: MiB }, { partNumber: 3, size: MiB }]);
    // A second upload of the same key sees none of the first's blocks.
    const second = await other.startUpload(key, { size: data.byteLength, partSize: MiB });
    expect(await other.listParts(second)).toEqual([]);
    await other.uploadPart(handle, 2, part(2));
    await other.uploadPart(handle, 4, part(4));
    const parts: UploadedPart[] = await other.listParts(handle);
    expect(parts.map((p) => p.size)).toEqual([MiB, MiB, MiB, 1234]);
    const md5 = createHash('md5').update(data).digest('hex');
    const meta = await other.completeUpload(handle, parts, { checksums: { sha256: sha256Hex(data), md5 } });
    expect(meta).toMatchObject({ key, size: data.byteLength, contentType: 'application/x-test', checksums: { sha256: sha256Hex(data), md5 } });
    expect((await getBuffer(s, key, { verify: true })).equals(data)).toBe(true);
    const head = await s.head(key);
    expect(head.metadata).toEqual({ owner: 'me', [SHA256_KEY]: sha256Hex(data) });
    expect(head.checksums.md5).toBe(md5);
    // The commit discarded the uncommitted blocks: the upload lists nothing any more.
    expect(await s.listParts(handle)).toEqual([]);
    await s.delete(key);
  });

  it('refuses a part of the wrong size, a commit of blocks never staged, and a handle of another store', async () => {
    const s = open();
    const handle = await s.startUpload('refused', { size: data.byteLength, partSize: MiB });
    await expect(s.uploadPart(handle, 1, Buffer.alloc(10))).rejects.toMatchObject({ code: 'InvalidArgument' });
    await s.uploadPart(handle, 1, part(1));
    const fabricated = [1, 2, 3, 4].map((n) => ({ partNumber: n, size: part(n).byteLength }));
    // InvalidBlockList: retryable, since a resume lists the parts again and re-sends the missing ones.
    await expect(s.completeUpload(handle, fabricated, { checksums: { sha256: sha256Hex(data) } })).rejects.toMatchObject({ code: 'Transient' });
    expect(await exists(s, 'refused')).toBe(false);
    await expect(open(`${run}-elsewhere`).listParts(handle)).rejects.toMatchObject({ code: 'InvalidArgument' });
    await s.abortUpload(handle); // nothing to drop on Azure; must not fail
  });
});
