import type { Emulator } from './emulator.js';

/** Bucket the test server is started with (and that tests use unless GCS_BUCKET says otherwise). */
export const DEFAULT_GCS_BUCKET = 'cloudmux-test';

/**
 * Where our GCS test server (test/emulators/gcs) knowingly differs from GCS, each with its reason.
 * Checked against two clients we did not write: the Node SDK (the suite) and rclone's GCS backend
 * on Google's Go API client (test/interop/gcs-rclone.test.ts), which needs the `X-GUploader-No-308`
 * answer (200 + `X-Http-Status-Code-Override: 308`) the server gives like GCS.
 */
export const GCS_TEST_SERVER_DEVIATIONS = {
  authentication: 'no credentials are checked: any bearer token, or none, is accepted (GCS: 401 without a valid token); emulators take none, and the driver sends none to a custom endpoint by default',
  signedUrls: 'V4 signed URLs are checked for presence and expiry of their X-Goog-* parameters, not for the signature itself (it would need the signing service account\'s public key)',
  rewriteChunking: 'a rewrite copies `rewriteBytesPerCall` bytes (small by default) per call before answering with a rewriteToken, where GCS does so only for large or cross-location copies, so clients\' token loops are exercised',
  scope: 'only the JSON API routes cloudmux, the Node SDK and rclone use; no XML API (except signed-URL object access), IAM, ACLs, lifecycle, notifications or HMAC keys',
} as const;

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
