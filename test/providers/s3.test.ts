import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { S3Store } from '../../providers/s3/index.js';
import type { BlobStore } from '../../src/core/index.js';
import { testStore } from '../../src/testing/index.js';
import { partFaultHarness } from '../harness/part-faults.js';
import { S3RVER_DEVIATIONS, S3RVER_MARK, emulatorOptions, s3rverObjectPath } from '../harness/s3.js';

/**
 * The conformance suite against the S3 endpoint the harness points at: s3rver by default, MinIO
 * when S3_ENDPOINT is set (docker-compose.test.yml), and, opt-in, real AWS S3 when
 * CLOUDMUX_TEST_S3_BUCKET is set. Driver-specific behaviour lives in s3-driver.test.ts.
 */

const onS3rver = process.env[S3RVER_MARK] === 's3rver';
/** CLOUDMUX_S3_ALL_CASES=1 runs the listed s3rver deviations too (to re-check them after an s3rver upgrade). */
const applyDeviations = onS3rver && !process.env.CLOUDMUX_S3_ALL_CASES;

const storePrefix = `prefixed-${randomBytes(3).toString('hex')}`;

/** Flips a byte in s3rver's own file for the object, as a failing disk would. */
async function corruptOnS3rver(store: BlobStore, key: string): Promise<void> {
  const s = store as S3Store;
  const path = s3rverObjectPath(process.env.CLOUDMUX_S3RVER_DIR!, s.options.bucket, s.options.prefix + key);
  const data = await readFile(path);
  data[data.length >> 1]! ^= 0x01;
  await writeFile(path, data);
}

if (process.env.S3_ENDPOINT) {
  testStore(onS3rver ? 's3 (s3rver)' : `s3 (${process.env.S3_ENDPOINT})`, {
    // 5 MiB parts: the part window is then 25 MiB of the 48 MiB streamedLargePut budget. With 8 MiB
    // parts (40 MiB) a part still referenced by a socket at a sample put a loaded box over it.
    create: () => new S3Store(emulatorOptions({ prefix: storePrefix, partSize: 5 * 1024 * 1024 })),
    deviations: applyDeviations ? S3RVER_DEVIATIONS : undefined,
    corrupt: onS3rver ? corruptOnS3rver : undefined,
    // 5 MiB parts (S3's minimum), four in flight: 16 MiB make four parts.
    partFaults: partFaultHarness('s3', process.env.S3_ENDPOINT, 16 * 1024 * 1024, (endpoint) => new S3Store(emulatorOptions({ endpoint, prefix: storePrefix, partSize: 5 * 1024 * 1024 }))),
  });
}

const awsBucket = process.env.CLOUDMUX_TEST_S3_BUCKET;
if (awsBucket) {
  // Real AWS S3, opt-in: its own unique prefix; every case removes what it wrote.
  testStore(`s3 (aws ${awsBucket})`, {
    create: () => new S3Store({ bucket: awsBucket, region: process.env.CLOUDMUX_TEST_S3_REGION, prefix: `cloudmux-ci/${Date.now().toString(36)}-${randomBytes(4).toString('hex')}` }),
  });
}
