import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ContainerSASPermissions, StorageSharedKeyCredential, generateBlobSASQueryParameters } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAzureStore, parseConnectionString, type AzureStore } from '../../providers/azure/index.js';
import { getBuffer, listAll } from '../../src/core/helpers.js';
import { generatedStream, pseudoRandomBytes } from '../../src/testing/index.js';

/**
 * cloudmux and rclone (the Debian package, azureblob backend) against the same Azurite: what one
 * writes the other reads with the same bytes, MD5, content type and modification time (rclone
 * keeps it in the `mtime` metadata). rclone 1.60's azureblob backend carries no other user
 * metadata, so `mtime` is the metadata both sides can speak.
 */

const run = promisify(execFile);
const connectionString = process.env.AZURE_STORAGE_CONNECTION_STRING;
const containerName = process.env.AZURE_CONTAINER ?? 'cloudmux-test';
const parsed = connectionString ? parseConnectionString(connectionString) : undefined;

async function rcloneAvailable(): Promise<boolean> {
  try {
    await run('rclone', ['version'], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}
const haveRclone = await rcloneAvailable();
const skipReason = !haveRclone
  ? 'rclone is not installed (apt-get install rclone)'
  : !parsed?.accountKey || !parsed.blobEndpoint
    ? 'needs AZURE_STORAGE_CONNECTION_STRING with an account key (the Azurite harness sets one)'
    : undefined;

const MiB = 1024 * 1024;
const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');

interface LsEntry { Path: string; Size: number; MimeType: string; ModTime: string; IsDir: boolean; Hashes?: { md5?: string } }

describe.skipIf(skipReason !== undefined)(`interop: cloudmux <-> rclone on Azure${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  const prefix = `rclone-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  let store: AzureStore;
  let env: NodeJS.ProcessEnv;
  let dir: string;
  /** rclone's path for a cloudmux key. */
  const remote = (key = ''): string => `az:${containerName}/${prefix}${key ? `/${key}` : ''}`;
  const rclone = async (...args: string[]): Promise<string> => (await run('rclone', args, { env, timeout: 60_000, maxBuffer: 64 * MiB, encoding: 'buffer' })).stdout.toString('utf8');
  const rcloneBytes = async (...args: string[]): Promise<Buffer> => (await run('rclone', args, { env, timeout: 60_000, maxBuffer: 64 * MiB, encoding: 'buffer' })).stdout;

  beforeAll(async () => {
    store = createAzureStore({ connectionString, container: containerName, prefix, blockSize: MiB, singleShotThreshold: MiB });
    // rclone 1.60 builds https://<account>.<endpoint> from account+key; a container SAS URL is how it reaches an emulator on any port.
    const sas = generateBlobSASQueryParameters({
      containerName,
      permissions: ContainerSASPermissions.parse('racwdl'),
      expiresOn: new Date(Date.now() + 3600_000),
      version: '2019-12-12',
    }, new StorageSharedKeyCredential(parsed!.accountName!, parsed!.accountKey!)).toString();
    env = { ...process.env, RCLONE_CONFIG_AZ_TYPE: 'azureblob', RCLONE_CONFIG_AZ_SAS_URL: `${parsed!.blobEndpoint!.replace(/\/$/, '')}/${containerName}?${sas}`, RCLONE_CONFIG: join(tmpdir(), 'cloudmux-no-rclone.conf') };
    delete env.AWS_CA_BUNDLE;
    dir = await mkdtemp(join(tmpdir(), 'cloudmux-rclone-'));
  });

  afterAll(async () => {
    if (store) for await (const item of store.list()) if (item.type === 'object') await store.delete(item.key);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('rclone reads what cloudmux wrote: bytes, MD5 (also of block uploads), content type, mtime', async () => {
    const mtime = '2001-02-03T04:05:06.123456789Z';
    const big = generatedStream(3 * MiB + 17, { seed: 'to-rclone', chunkSize: 200_000 });
    const bigMeta = await store.put('from-cloudmux/big.bin', big.stream, { contentType: 'application/x-big', metadata: { mtime } });
    const small = Buffer.from('small body\n');
    await store.put('from-cloudmux/dir/ü ñ+x.txt', small, { contentType: 'text/plain', metadata: { mtime } });

    const listed = JSON.parse(await rclone('lsjson', '-R', '--hash', '--files-only', remote('from-cloudmux'))) as LsEntry[];
    const byPath = new Map(listed.map((e) => [e.Path, e]));
    expect([...byPath.keys()].sort()).toEqual(['big.bin', 'dir/ü ñ+x.txt']);
    const bigEntry = byPath.get('big.bin')!;
    expect(bigEntry).toMatchObject({ Size: 3 * MiB + 17, MimeType: 'application/x-big', ModTime: mtime });
    // Azure leaves a block blob's MD5 empty unless the writer sets it; cloudmux does, so rclone can check it.
    expect(bigEntry.Hashes?.md5).toBe(bigMeta.checksums.md5);
    expect(byPath.get('dir/ü ñ+x.txt')).toMatchObject({ Size: small.length, MimeType: 'text/plain', ModTime: mtime, Hashes: { md5: md5(small) } });

    const bigBytes = await rcloneBytes('cat', remote('from-cloudmux/big.bin'));
    expect(createHash('sha256').update(bigBytes).digest('hex')).toBe(big.sha256());
    expect((await rcloneBytes('cat', remote('from-cloudmux/dir/ü ñ+x.txt'))).equals(small)).toBe(true);

    // rclone check compares by MD5: a local copy of the bytes must show no differences.
    await writeFile(join(dir, 'big.bin'), bigBytes);
    const check = await run('rclone', ['check', '--one-way', dir, remote('from-cloudmux'), '--include', 'big.bin'], { env, timeout: 60_000 });
    expect(check.stderr).toMatch(/0 differences found/);
    expect(check.stderr).toMatch(/1 matching files/);
  });

  it('cloudmux reads what rclone wrote: bytes, MD5, mtime, verified reads, copies keep them', async () => {
    const data = pseudoRandomBytes(3 * MiB + 5, 'from-rclone');
    const file = join(dir, 'up.bin');
    await writeFile(file, data);
    const when = new Date('2010-06-07T08:09:10Z');
    await utimes(file, when, when);
    // Chunked so rclone stages several blocks and commits them itself.
    await rclone('copyto', file, remote('from-rclone/up.bin'), '--azureblob-chunk-size', '1M', '--azureblob-upload-cutoff', '1M');
    await writeFile(join(dir, 'tiny.txt'), 'tiny');
    await rclone('copyto', join(dir, 'tiny.txt'), remote('from-rclone/tiny.txt'));

    const head = await store.head('from-rclone/up.bin');
    expect(head.size).toBe(data.length);
    expect(head.checksums).toEqual({ md5: md5(data) });
    expect(new Date(head.metadata.mtime!).getTime()).toBe(when.getTime());
    expect((await getBuffer(store, 'from-rclone/up.bin', { verify: true })).equals(data)).toBe(true);
    expect((await getBuffer(store, 'from-rclone/tiny.txt', { verify: true })).toString()).toBe('tiny');

    const listed = await listAll(store, { prefix: 'from-rclone/' });
    expect(listed.map((i) => (i.type === 'object' ? [i.key, i.size, i.checksums?.md5] : [i.prefix]))).toEqual([
      ['from-rclone/tiny.txt', 4, md5(Buffer.from('tiny'))],
      ['from-rclone/up.bin', data.length, md5(data)],
    ]);

    // A cloudmux copy and a metadata update stay readable to rclone with the right hash and time.
    await store.copy('from-rclone/up.bin', 'from-rclone/copy.bin');
    const later = '2020-01-02T03:04:05Z';
    await store.updateMetadata('from-rclone/tiny.txt', { metadata: { mtime: later } });
    const back = JSON.parse(await rclone('lsjson', '--hash', '--files-only', remote('from-rclone'))) as LsEntry[];
    const byPath = new Map(back.map((e) => [e.Path, e]));
    expect(byPath.get('copy.bin')).toMatchObject({ Size: data.length, Hashes: { md5: md5(data) } });
    expect(new Date(byPath.get('copy.bin')!.ModTime).getTime()).toBe(when.getTime());
    expect(new Date(byPath.get('tiny.txt')!.ModTime).getTime()).toBe(Date.parse(later));
    expect((await readFile(file)).equals(await rcloneBytes('cat', remote('from-rclone/copy.bin')))).toBe(true);
  });
});
