import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { ContainerSASPermissions, StorageSharedKeyCredential, generateBlobSASQueryParameters } from '@azure/storage-blob';
import { afterAll, describe, expect, it } from 'vitest';
import { removeAllUnder } from '../../src/core/remove.js';
import type { BlobStore } from '../../src/core/index.js';
import { openStore } from '../../src/registry.js';
import { migrate } from '../../src/replication/migrate.js';
import { treesMatch, verifyTrees } from '../../src/replication/verify.js';
import { seedDataset } from './dataset.js';

/**
 * Migrations between real drivers on the emulators the harness starts (s3rver, Azurite, the GCS
 * test server) and the fs store, on a dataset with empty objects, unicode keys, nested prefixes
 * and one object above every driver's multipart threshold (8 MiB). Each pair is skipped, with its
 * reason, when an emulator is not running (CLOUDMUX_EMULATORS).
 */

const run = randomUUID().slice(0, 8);
const local = mkdtempSync(join(tmpdir(), 'cloudmux-e2e-'));
const opened: BlobStore[] = [];
afterAll(async () => {
  await Promise.allSettled(opened.map(async (s) => {
    await removeAllUnder(s, '');
    await s.close();
  }));
  rmSync(local, { recursive: true, force: true });
});

type Side = 's3' | 'azure' | 'gcs' | 'fs';

function url(side: Side, prefix: string): string | undefined {
  const env = process.env;
  switch (side) {
    case 's3':
      return env.S3_ENDPOINT ? `s3://${env.S3_BUCKET}/${prefix}?endpoint=${encodeURIComponent(env.S3_ENDPOINT)}&forcePathStyle=true` : undefined;
    case 'azure':
      return env.AZURE_STORAGE_CONNECTION_STRING ? `az://devstoreaccount1/${env.AZURE_CONTAINER ?? 'cloudmux-test'}/${prefix}` : undefined;
    case 'gcs':
      return env.GCS_EMULATOR_HOST ? `gs://${env.GCS_BUCKET}/${prefix}?apiEndpoint=${encodeURIComponent(env.GCS_EMULATOR_HOST)}` : undefined;
    case 'fs':
      return pathToFileURL(join(local, prefix)).href;
  }
}

async function open(u: string): Promise<BlobStore> {
  const s = await openStore(u);
  opened.push(s);
  return s;
}

const pairs: [Side, Side][] = [['s3', 'azure'], ['azure', 'gcs'], ['gcs', 's3'], ['fs', 's3']];

describe('migrate end to end on the emulators', () => {
  for (const [from, to] of pairs) {
    const srcUrl = url(from, `e2e-${run}/${from}-to-${to}/src`);
    const dstUrl = url(to, `e2e-${run}/${from}-to-${to}/dst`);
    const missing = [!srcUrl && from, !dstUrl && to].filter(Boolean).join(' and ');
    it.skipIf(!srcUrl || !dstUrl)(`${from} → ${to}: copies everything, verify finds no difference, a rerun copies nothing${missing ? ` (skipped: ${missing} emulator not running)` : ''}`, async () => {
      const src = await open(srcUrl!);
      const dst = await open(dstUrl!);
      const keys = await seedDataset(src, { small: 20, large: 1 });
      const s = await migrate(src, dst, { concurrency: 4 });
      expect(s.failures).toEqual([]);
      expect(s.copied).toBe(keys.length);
      const report = await verifyTrees(src, dst);
      expect(report.problems).toEqual([]);
      expect(report.matching).toBe(keys.length);
      expect(treesMatch(await verifyTrees(src, dst, { download: true }))).toBe(true);
      const big = await dst.head('large/big-0.bin');
      expect(big.metadata.idx).toBe((await src.head('large/big-0.bin')).metadata.idx);
      const again = await migrate(src, dst, { concurrency: 4 });
      expect(again).toMatchObject({ copied: 0, identical: keys.length, failed: 0 });
    }, 180_000);
  }

  const rclone = promisify(execFile)('rclone', ['version']).then(() => true, () => false);
  it.skipIf(!url('s3', '') || !url('azure', ''))('rclone check agrees that S3 → Azure left no difference (skipped without both emulators)', async (ctx) => {
    if (!(await rclone)) ctx.skip('rclone is not installed (Debian package rclone)');
    const srcUrl = url('s3', `e2e-${run}/rclone/src`)!;
    const dstUrl = url('azure', `e2e-${run}/rclone/dst`)!;
    const src = await open(srcUrl);
    const dst = await open(dstUrl);
    const keys = await seedDataset(src, { small: 10 });
    expect((await migrate(src, dst)).copied).toBe(keys.length);
    const { args, env } = rcloneRemotes(`e2e-${run}/rclone/src`, `e2e-${run}/rclone/dst`);
    // --fast-list: rclone's per-directory (delimited) walk misses nested keys on s3rver.
    const r = await promisify(execFile)('rclone', ['check', '--fast-list', ...args], { env }).then(
      (o) => ({ code: 0, out: o.stderr }),
      (e: { code: number; stderr: string }) => ({ code: e.code, out: e.stderr }),
    );
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/0 differences found/);
  }, 120_000);
});

/** rclone remotes for the S3 and Azure emulators, configured through the environment only. */
export function rcloneRemotes(srcPrefix: string, dstPrefix: string): { args: string[]; env: NodeJS.ProcessEnv } {
  const e = process.env;
  const cs = Object.fromEntries((e.AZURE_STORAGE_CONNECTION_STRING ?? '').split(';').filter(Boolean).map((kv) => {
    const i = kv.indexOf('=');
    return [kv.slice(0, i), kv.slice(i + 1)];
  })) as Record<string, string | undefined>;
  const container = e.AZURE_CONTAINER ?? 'cloudmux-test';
  const env: NodeJS.ProcessEnv = {
    ...e,
    RCLONE_CONFIG: '/dev/null',
    RCLONE_CONFIG_SRC_TYPE: 's3',
    RCLONE_CONFIG_SRC_PROVIDER: 'Other',
    RCLONE_CONFIG_SRC_ENDPOINT: e.S3_ENDPOINT,
    RCLONE_CONFIG_SRC_ACCESS_KEY_ID: e.AWS_ACCESS_KEY_ID,
    RCLONE_CONFIG_SRC_SECRET_ACCESS_KEY: e.AWS_SECRET_ACCESS_KEY,
    RCLONE_CONFIG_SRC_REGION: e.AWS_REGION ?? 'us-east-1',
    RCLONE_CONFIG_SRC_FORCE_PATH_STYLE: 'true',
    // Debian's rclone (1.60) builds https://<account>.<endpoint> from an endpoint; a container
    // SAS URL is the one way to point it at an emulator on a random port.
    RCLONE_CONFIG_DST_TYPE: 'azureblob',
    RCLONE_CONFIG_DST_SAS_URL: `${cs.BlobEndpoint}/${container}?${generateBlobSASQueryParameters({
      containerName: container,
      permissions: ContainerSASPermissions.parse('racwdl'),
      expiresOn: new Date(Date.now() + 3600_000),
    }, new StorageSharedKeyCredential(cs.AccountName!, cs.AccountKey!)).toString()}`,
  };
  delete env.AWS_CA_BUNDLE;
  return { args: [`src:${e.S3_BUCKET}/${srcPrefix}`, `dst:${container}/${dstPrefix}`], env };
}
