import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Store } from '../../providers/s3/index.js';
import { SHA256_KEY, getBuffer, listAll } from '../../src/core/index.js';
import { pseudoRandomBytes, sha256Hex } from '../../src/testing/index.js';
import { tempDir } from '../harness/emulator.js';
import { emulatorOptions } from '../harness/s3.js';

/**
 * Interop with a plain S3 tool: what cloudmux writes, rclone reads byte for byte with its size,
 * content type and metadata; what rclone writes, cloudmux reads the same way. Needs rclone
 * (`apt-get install rclone`) and the harness endpoint (s3rver or MinIO).
 */

const run = promisify(execFile);
const MiB = 1024 * 1024;

function rcloneInstalled(): boolean {
  try {
    execFileSync('rclone', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const ready = Boolean(process.env.S3_ENDPOINT) && rcloneInstalled();

describe.runIf(ready)('s3 interop with rclone (needs rclone on PATH and S3_ENDPOINT from the harness)', () => {
  const prefix = `rclone-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  const opts = emulatorOptions({ prefix, partSize: 5 * MiB });
  let store: S3Store;
  let dir: Awaited<ReturnType<typeof tempDir>>;

  /** rclone configured entirely through env vars: a remote named `cmx` on the harness endpoint. */
  const rcloneEnv = (): NodeJS.ProcessEnv => {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      RCLONE_CONFIG: join(dir.path, 'rclone.conf'),
      RCLONE_CONFIG_CMX_TYPE: 's3',
      RCLONE_CONFIG_CMX_PROVIDER: 'Other',
      RCLONE_CONFIG_CMX_ENDPOINT: opts.endpoint!,
      RCLONE_CONFIG_CMX_REGION: opts.region!,
      RCLONE_CONFIG_CMX_FORCE_PATH_STYLE: 'true',
      RCLONE_CONFIG_CMX_ACCESS_KEY_ID: process.env.AWS_ACCESS_KEY_ID,
      RCLONE_CONFIG_CMX_SECRET_ACCESS_KEY: process.env.AWS_SECRET_ACCESS_KEY,
    };
    // rclone would try to load a CA bundle meant for the SDK and fail on it.
    delete env.AWS_CA_BUNDLE;
    return env;
  };
  const rclone = async (...args: string[]): Promise<Buffer> => {
    const { stdout } = await run('rclone', [...args, '--s3-no-check-bucket'], { env: rcloneEnv(), encoding: 'buffer', maxBuffer: 64 * MiB });
    return stdout;
  };
  const remote = (key: string): string => `cmx:${opts.bucket}/${prefix}/${key}`;

  beforeAll(async () => {
    store = new S3Store(opts);
    dir = await tempDir('rclone');
    await writeFile(join(dir.path, 'rclone.conf'), '');
  });
  afterAll(async () => {
    const all = await listAll(store);
    await store.deleteMany(all.flatMap((i) => (i.type === 'object' ? [i.key] : [])));
    await store.close();
    await dir.remove();
  });

  it.each([
    ['single PutObject', 300_000],
    ['multipart with copy-in-place digest', 12 * MiB + 3],
  ])('an object cloudmux writes (%s) reads identical through rclone, with size, content type and metadata', async (_kind, size) => {
    const data = pseudoRandomBytes(size, `cm-${size}`);
    const key = `from-cloudmux/${size}.bin`;
    await store.put(key, data, { contentType: 'application/x-cloudmux', metadata: { owner: 'team_a' } });
    const bytes = await rclone('cat', remote(key));
    expect(bytes.byteLength).toBe(size);
    expect(sha256Hex(bytes)).toBe(sha256Hex(data));
    const [entry] = JSON.parse((await rclone('lsjson', '-M', remote(key))).toString('utf8')) as { Size: number; MimeType: string; Metadata: Record<string, string> }[];
    expect(entry!.Size).toBe(size);
    expect(entry!.MimeType).toBe('application/x-cloudmux');
    expect(entry!.Metadata.owner).toBe('team_a');
    expect(entry!.Metadata[SHA256_KEY]).toBe(sha256Hex(data));
  });

  it('an object rclone writes reads identical through cloudmux, with size, content type and metadata', async () => {
    const data = pseudoRandomBytes(2 * MiB + 5, 'rclone');
    const local = join(dir.path, 'upload.bin');
    await writeFile(local, data);
    await rclone('copyto', local, remote('from-rclone/upload.bin'), '-M', '--metadata-set', 'owner=rclone', '--metadata-set', 'content-type=text/x-rclone');
    const head = await store.head('from-rclone/upload.bin');
    expect(head.size).toBe(data.byteLength);
    expect(head.contentType).toBe('text/x-rclone');
    expect(head.metadata.owner).toBe('rclone');
    // Written outside cloudmux: no cloudmux_sha256, so a verified read can only check the size.
    expect(head.checksums.sha256).toBeUndefined();
    const got = await getBuffer(store, 'from-rclone/upload.bin', { verify: true });
    expect(sha256Hex(got)).toBe(sha256Hex(data));
    const listed = await listAll(store, { prefix: 'from-rclone/' });
    expect(listed).toMatchObject([{ type: 'object', key: 'from-rclone/upload.bin', size: data.byteLength }]);
  });
});
