import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { AZURITE_ACCOUNT, azuriteConnectionString } from '../harness/azure.js';
import { freePort, spawnManaged, tempDir, waitForPort, type ManagedProcess } from '../harness/emulator.js';

/**
 * An emulator this test file owns (the shared harness instances must not be stopped): it can be
 * stopped and started again on the same port and data directory.
 */
export interface StoppableEmulator {
  /** Store URL and driver options for a cloudmux config (secrets as given, for the test's env). */
  port: number;
  stop(): Promise<void>;
  kill(): Promise<void>;
  start(): Promise<void>;
  dispose(): Promise<void>;
}

export const E2E_BUCKET = 'cloudmux-daemon';

export async function startOwnS3rver(): Promise<StoppableEmulator & { endpoint: string }> {
  const require = createRequire(import.meta.url);
  const bin = join(dirname(require.resolve('s3rver/package.json')), 'bin', 's3rver.js');
  const dir = await tempDir('daemon-s3rver');
  const port = await freePort();
  let proc: ManagedProcess | undefined;
  const start = async (): Promise<void> => {
    proc = spawnManaged(process.execPath, [bin, '--directory', dir.path, '--address', '127.0.0.1', '--port', String(port), '--silent', '--configure-bucket', E2E_BUCKET], {
      ...process.env,
      // s3rver's signature code needs a digest OpenSSL 3 only has in its legacy provider.
      NODE_OPTIONS: [process.env.NODE_OPTIONS, '--openssl-legacy-provider'].filter(Boolean).join(' '),
    });
    await waitForPort(port, 30_000);
  };
  await start();
  return {
    port, endpoint: `http://127.0.0.1:${port}`, start,
    stop: async () => proc?.stop(),
    kill: async () => proc?.kill(),
    dispose: async () => {
      await proc?.stop();
      await dir.remove();
    },
  };
}

export async function startOwnAzurite(): Promise<StoppableEmulator & { connectionString: string }> {
  const dir = await tempDir('daemon-azurite');
  const port = await freePort();
  const connectionString = azuriteConnectionString(`http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`);
  let proc: ManagedProcess | undefined;
  const start = async (): Promise<void> => {
    proc = spawnManaged(resolve('node_modules/.bin/azurite-blob'), [
      '--skipApiVersionCheck', '--disableTelemetry', '--silent', '--location', dir.path, '--blobHost', '127.0.0.1', '--blobPort', String(port),
    ]);
    await waitForPort(port, 30_000);
  };
  await start();
  await BlobServiceClient.fromConnectionString(connectionString).getContainerClient(E2E_BUCKET).createIfNotExists();
  return {
    port, connectionString, start,
    stop: async () => proc?.stop(),
    kill: async () => proc?.kill(),
    dispose: async () => {
      await proc?.stop();
      await dir.remove();
    },
  };
}
