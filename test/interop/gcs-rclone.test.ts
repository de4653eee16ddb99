import { execFile, execFileSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GcsStore } from '../../providers/gcs/index.js';
import { MultiHasher, getBuffer } from '../../src/core/index.js';
import { pseudoRandomBytes, sha256Hex } from '../../src/testing/index.js';
import { startGcsTestServer, type GcsTestServer } from '../emulators/gcs/server.js';
import { tempDir } from '../harness/emulator.js';

/**
 * Our GCS test server against a client we did not write: rclone's GCS backend (Go, on Google's own
 * API client, unmodified). Both ways: what rclone writes (a multipart upload, and a resumable
 * upload above the Go client's 16 MiB chunk size, which sends `X-GUploader-No-308: yes` and needs
 * the server's 200 + `X-Http-Status-Code-Override: 308` answers) cloudmux reads with matching
 * SHA-256, MD5 and CRC32C; what cloudmux writes rclone reads and `rclone check`s against the local
 * files. The server's known differences from GCS are listed in test/harness/gcs.ts.
 */
const run = promisify(execFile);
const MiB = 1024 * 1024;
const BUCKET = 'rclone-interop';

function rcloneInstalled(): boolean {
  try {
    execFileSync('rclone', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe.runIf(rcloneInstalled())('GCS test server interop with rclone\'s GCS backend (needs rclone on PATH)', () => {
  let server: GcsTestServer;
  let store: GcsStore;
  let dir: Awaited<ReturnType<typeof tempDir>>;

  const remote = (path: string): string => `:googlecloudstorage,endpoint='${server.url}/storage/v1/',anonymous=true:${BUCKET}/${path}`;
  const rclone = async (...args: string[]): Promise<Buffer> => {
    const env: NodeJS.ProcessEnv = { ...process.env, RCLONE_CONFIG: join(dir.path, 'rclone.conf') };
    // rclone would try to load a CA bundle meant for the AWS SDK and fail on it.
    delete env.AWS_CA_BUNDLE;
    const { stdout } = await run('rclone', [...args, '--gcs-no-check-bucket', '--retries', '1', '--low-level-retries', '1'], { env, encoding: 'buffer', maxBuffer: 128 * MiB });
    return stdout;
  };

  beforeAll(async () => {
    server = await startGcsTestServer({ buckets: [BUCKET] });
    store = new GcsStore({ bucket: BUCKET, apiEndpoint: server.url, projectId: 'cloudmux-test' });
    dir = await tempDir('gcs-rclone');
    await writeFile(join(dir.path, 'rclone.conf'), '');
  });
  afterAll(async () => {
    await store?.close();
    await server?.close();
    await dir?.remove();
  });

  it.each([
    ['a multipart upload', 300_000 + 7],
    ['a resumable upload in 16 MiB chunks (X-GUploader-No-308)', 40 * MiB + 123],
  ])('what rclone writes (%s), cloudmux reads with the same SHA-256, MD5 and CRC32C', async (_kind, size) => {
    const data = pseudoRandomBytes(size, `rclone-gcs-${size}`);
    const local = join(dir.path, `up-${size}.bin`);
    await writeFile(local, data);
    await rclone('copyto', local, remote(`from-rclone/${size}.bin`));
    const want = hashes(data);
    const head = await store.head(`from-rclone/${size}.bin`);
    expect(head.size).toBe(size);
    expect(head.checksums.md5).toBe(want.md5);
    expect(head.checksums.crc32c).toBe(want.crc32c);
    const got = await getBuffer(store, `from-rclone/${size}.bin`, { verify: true });
    expect(sha256Hex(got)).toBe(want.sha256);
  }, 300_000);

  it('what cloudmux writes, rclone reads byte for byte and `rclone check` finds identical', async () => {
    const local = join(dir.path, 'from-cloudmux');
    await mkdir(local, { recursive: true });
    const files: Record<string, Buffer> = {
      'small.txt': Buffer.from('hello from cloudmux\n'),
      'nested/dir/medium.bin': pseudoRandomBytes(700_000, 'cm-medium'),
      // Above the driver's single-request threshold: its own resumable upload.
      'large.bin': pseudoRandomBytes(20 * MiB + 5, 'cm-large'),
    };
    for (const [key, data] of Object.entries(files)) {
      await store.put(`from-cloudmux/${key}`, data, { contentType: 'application/x-cloudmux' });
      await mkdir(join(local, key, '..'), { recursive: true });
      await writeFile(join(local, key), data);
    }
    for (const [key, data] of Object.entries(files)) {
      expect(sha256Hex(await rclone('cat', remote(`from-cloudmux/${key}`))), key).toBe(sha256Hex(data));
    }
    const listed = JSON.parse((await rclone('lsjson', '-R', '--hash', '--files-only', remote('from-cloudmux'))).toString('utf8')) as { Path: string; Size: number; MimeType: string; Hashes?: { md5?: string } }[];
    expect(listed.map((e) => e.Path).sort()).toEqual(Object.keys(files).sort());
    for (const e of listed) {
      expect(e.Size, e.Path).toBe(files[e.Path]!.byteLength);
      expect(e.MimeType, e.Path).toBe('application/x-cloudmux');
      expect(e.Hashes?.md5, e.Path).toBe(hashes(files[e.Path]!).md5);
    }
    // Sizes and MD5s of every file, both ways; exits non-zero on any difference.
    await rclone('check', local, remote('from-cloudmux'));
    // And a difference is found: the check is not vacuous.
    await writeFile(join(local, 'small.txt'), 'changed\n');
    await expect(rclone('check', local, remote('from-cloudmux'))).rejects.toThrow();
    expect(await readFile(join(local, 'large.bin'))).toHaveLength(files['large.bin']!.byteLength);
  }, 300_000);
});

function hashes(data: Buffer): { sha256: string; md5: string; crc32c: string } {
  const h = new MultiHasher(['md5', 'crc32c']);
  h.update(data);
  const d = h.digest();
  return { sha256: d.sha256!, md5: d.md5!, crc32c: d.crc32c! };
}
