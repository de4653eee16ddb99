import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { S3StoreOptions } from '../../providers/s3/config.js';
import type { CaseName } from '../../src/testing/cases.js';
import { freePort, spawnManaged, tempDir, waitForPort, type Emulator } from './emulator.js';

/** The bucket the suite uses on s3rver (and, by docker-compose.test.yml, on MinIO). */
export const S3_TEST_BUCKET = 'cloudmux-test';

/**
 * s3rver's known faults, each listed once with its reason. The S3 test file passes these as
 * `deviations` only when the suite runs against s3rver (CLOUDMUX_S3_EMULATOR=s3rver); MinIO and
 * real S3 run every case. Capabilities s3rver lacks that the driver declares off (conditional
 * writes, flexible checksums) are not deviations: those cases run and check NotSupported.
 */
export const S3RVER_DEVIATIONS: Partial<Record<CaseName, string>> = {
  suffixRanges: 's3rver parses `Range: bytes=-N` as bytes 0..N (suffix ranges broken); the driver detects the wrong Content-Range and fails instead of returning wrong bytes',
  oddKeys: 's3rver stores each key as a file named <last segment>._S3rver_object; the case\'s 299-byte segment exceeds the 255-byte file name limit and the ENAMETOOLONG kills the s3rver process (the other odd keys are checked in s3-driver.test.ts)',
  listByteOrder: 's3rver filters start-after with a JavaScript string comparison (UTF-16 order), so keys outside the BMP sort before U+FF5E and are dropped',
  overwriteWhileReading: 's3rver rewrites the object file in place, so a GET that is still streaming returns a mix of the old and new bytes (S3 and MinIO serve the version current at GET time)',
};

/** s3rver faults that driver tests (not conformance cases) work around, each listed once with its reason. */
export const S3RVER_DRIVER_DEVIATIONS = {
  contentMd5: 's3rver never checks a request\'s Content-MD5 (no BadDigest), so a body that does not match the MD5 it was sent with is stored; S3 and MinIO refuse it',
  conditionalDelete: 's3rver ignores If-Match on DeleteObject and deletes whatever is there (checked in delete-source.test.ts); the driver declares `conditionalDelete` off on custom endpoints (its default), so a delete with ifMatch is NotSupported there and migrate --delete-source re-checks by head right before an unconditional delete (a one-round-trip window)',
  deleteObjectsRace: 's3rver deletes the keys of one DeleteObjects request concurrently and then removes the directories left empty; two keys under one otherwise empty directory race on that clean-up (ENOENT) and the whole request fails with a 500 InternalError although the objects are gone. It is retryable, and the CLI retries it (first-hour.test.ts); S3 and MinIO do not do this',
  multipartEtag: 's3rver stores a completed multipart upload as one plain object whose ETag is the MD5 of the whole content, without the `-N` suffix S3 and MinIO give multipart ETags; the driver then (correctly, for what it sees) reports that MD5',
} as const;

/** s3rver faults that the interop tests with other clients meet, each listed once with its reason. */
export const S3RVER_INTEROP_DEVIATIONS = {
  listMultipartUploads: 's3rver answers ListMultipartUploads (GET /bucket?uploads) with 501 NotImplemented; the minio client lists incomplete uploads before every multipart upload (to resume one), so its multipart path cannot run on s3rver (S3 and MinIO implement the call)',
} as const;

/** Env var the S3 tests read to know they run against s3rver (deviations, on-disk checks). */
export const S3RVER_MARK = 'CLOUDMUX_S3_EMULATOR';

/**
 * Starts s3rver on a free loopback port with a fresh temp directory and the test bucket, unless
 * `S3_ENDPOINT` already points at a running server (MinIO from docker-compose.test.yml,
 * LocalStack), which is then used as is. Sets S3_ENDPOINT, S3_BUCKET, AWS_* for the workers.
 */
export async function startS3(): Promise<Emulator | undefined> {
  if (process.env.S3_ENDPOINT) return undefined;
  const require = createRequire(import.meta.url);
  const bin = join(dirname(require.resolve('s3rver/package.json')), 'bin', 's3rver.js');
  const dir = await tempDir('s3rver');
  const port = await freePort();
  const proc = spawnManaged(process.execPath, [
    bin, '--directory', dir.path, '--address', '127.0.0.1', '--port', String(port), '--silent',
    '--configure-bucket', S3_TEST_BUCKET,
  ], {
    ...process.env,
    // s3rver's signature code uses a digest OpenSSL 3 only offers through the legacy provider.
    NODE_OPTIONS: [process.env.NODE_OPTIONS, '--openssl-legacy-provider'].filter(Boolean).join(' '),
  });
  try {
    await waitForPort(port, 30_000);
  } catch (e) {
    await proc.stop();
    await dir.remove();
    throw new Error(`s3rver did not start: ${(e as Error).message}\n${proc.output()}`, { cause: e });
  }
  return {
    name: 's3rver',
    pid: proc.child.pid,
    env: {
      S3_ENDPOINT: `http://127.0.0.1:${port}`,
      S3_BUCKET: S3_TEST_BUCKET,
      S3_FORCE_PATH_STYLE: 'true',
      // s3rver's fixed dummy account; its continuation tokens also assume us-east-1.
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_REGION: 'us-east-1',
      [S3RVER_MARK]: 's3rver',
      CLOUDMUX_S3RVER_DIR: dir.path,
    },
    async stop() {
      await proc.stop();
      await dir.remove();
    },
  };
}

/** Where s3rver keeps the bytes of `bucketKey` (for corruption and on-disk checks). */
export function s3rverObjectPath(dataDir: string, bucket: string, bucketKey: string): string {
  const parts = bucketKey.split('/');
  const last = parts.pop()!;
  return join(dataDir, bucket, ...parts, `${last}._S3rver_object`);
}

/** Where s3rver keeps the parts of unfinished multipart uploads, one directory per upload id. */
export function s3rverUploadsDir(dataDir: string, bucket: string): string {
  return join(dataDir, bucket, '._S3rver_uploads');
}

/** Options for a store on the endpoint the harness points at (S3_ENDPOINT, S3_BUCKET, AWS_REGION). */
export function emulatorOptions(extra: Partial<S3StoreOptions> = {}): S3StoreOptions {
  return {
    bucket: process.env.S3_BUCKET ?? S3_TEST_BUCKET,
    endpoint: process.env.S3_ENDPOINT,
    region: process.env.AWS_REGION ?? 'us-east-1',
    forcePathStyle: true,
    ...extra,
  };
}
