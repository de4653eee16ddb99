import type { Emulator } from './emulator.js';

/** Bucket the test server is started with (and that tests use unless GCS_BUCKET says otherwise). */
export const DEFAULT_GCS_BUCKET = 'cloudmux-test';

/**
 * Starts the project's GCS JSON-API test server (test/emulators/gcs) in this process on a free
 * loopback port, and points the suite at it through GCS_EMULATOR_HOST / GCS_BUCKET. Leaves
 * things alone when GCS_EMULATOR_HOST is already set (e.g. fake-gcs-server from
 * docker-compose.test.yml), so the two can be compared.
 */
export async function startGcs(): Promise<Emulator | undefined> {
  if (process.env.GCS_EMULATOR_HOST) return undefined;
  const { startGcsTestServer } = await import('../emulators/gcs/server.js');
  const bucket = process.env.GCS_BUCKET ?? DEFAULT_GCS_BUCKET;
  const server = await startGcsTestServer({ buckets: [bucket] });
  return {
    name: 'gcs',
    env: { GCS_EMULATOR_HOST: server.url, GCS_BUCKET: bucket },
    stop: () => server.close(),
  };
}
