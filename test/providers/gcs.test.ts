import { generateKeyPairSync } from 'node:crypto';
import { it } from 'vitest';
import { GcsStore } from '../../providers/gcs/index.js';
import type { BlobStore } from '../../src/core/index.js';
import { testStore } from '../../src/testing/index.js';
import { partFaultHarness } from '../harness/part-faults.js';

/**
 * The conformance suite against the GCS test server started by the harness (or whatever
 * GCS_EMULATOR_HOST points at, e.g. fake-gcs-server), and, opt-in, against real GCS when
 * CLOUDMUX_TEST_GCS_BUCKET names a bucket the ambient credentials (ADC) can write.
 */

const endpoint = process.env.GCS_EMULATOR_HOST;
const bucket = process.env.GCS_BUCKET ?? 'cloudmux-test';

/** A throwaway service-account key: enough for the SDK to sign V4 URLs locally. */
function signingCredentials(): { client_email: string; private_key: string } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { client_email: 'cloudmux-test@test-project.iam.gserviceaccount.com', private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

async function ensureBucket(apiEndpoint: string, name: string): Promise<void> {
  const res = await fetch(`${apiEndpoint}/storage/v1/b?project=test-project`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name }) });
  if (!res.ok && res.status !== 409) throw new Error(`cannot create bucket ${name}: HTTP ${res.status}`);
}

/** Our test server can flip a stored byte; fake-gcs-server cannot. */
async function hasControls(apiEndpoint: string): Promise<boolean> {
  try {
    return (await fetch(`${apiEndpoint}/_emulator/stats`)).ok;
  } catch {
    return false;
  }
}

if (endpoint) {
  const controls = await hasControls(endpoint);
  testStore('gcs (test server)', {
    create: async () => {
      await ensureBucket(endpoint, bucket);
      return new GcsStore({ bucket, apiEndpoint: endpoint, projectId: 'test-project', credentials: signingCredentials() });
    },
    // Two 8 MiB chunks (one in flight, one filling) measure at 21-30 MiB: freed chunks are
    // accounted late by V8's concurrent array-buffer sweeper.
    memoryBudget: 40 * 1024 * 1024,
    // 256 KiB chunks: a little over 1 MiB makes five, the last held for the commit.
    partFaults: partFaultHarness('gcs', endpoint, 1024 * 1024 + 1000, (proxyUrl) => new GcsStore({
      bucket, apiEndpoint: proxyUrl, projectId: 'test-project', credentials: signingCredentials(), chunkSize: 256 * 1024, singleRequestThreshold: 256 * 1024,
    })),
    ...(controls
      ? {
          corrupt: async (_store: BlobStore, key: string) => {
            const res = await fetch(`${endpoint}/_emulator/corrupt?bucket=${bucket}&name=${encodeURIComponent(key)}`, { method: 'POST' });
            if (!res.ok) throw new Error(`corrupt failed: HTTP ${res.status}`);
          },
        }
      : {}),
  });
} else {
  it('gcs conformance against the test server', (ctx) => {
    ctx.skip('GCS_EMULATOR_HOST is not set: the harness did not start the GCS test server (CLOUDMUX_EMULATORS excludes gcs)');
  });
}

const realBucket = process.env.CLOUDMUX_TEST_GCS_BUCKET;
if (realBucket) {
  testStore('gcs (real)', {
    create: () => new GcsStore({ bucket: realBucket, prefix: process.env.CLOUDMUX_TEST_GCS_PREFIX ?? 'cloudmux-ci' }),
    memoryBudget: 40 * 1024 * 1024,
  });
} else {
  it('gcs conformance against real GCS', (ctx) => {
    ctx.skip('opt-in: set CLOUDMUX_TEST_GCS_BUCKET (and ADC credentials) to run against real Google Cloud Storage');
  });
}
