import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { GcsStore } from '../../providers/gcs/store.js';
import { S3Store } from '../../providers/s3/store.js';
import { startGcsTestServer } from '../emulators/gcs/server.js';
import { AzureStore } from '../../providers/azure/store.js';
import { resolveAzureConfig } from '../../providers/azure/config.js';
import { AZURITE_ACCOUNT, azuriteConnectionString } from './azure.js';
import { freePort, spawnManaged, tempDir, waitForPort, type ManagedProcess } from './emulator.js';

/**
 * An emulator process this test file owns, so it can kill -9 it and start it again on the same
 * port and data directory (the shared harness instances must not be disturbed).
 */
export interface OwnEmulator {
  name: string;
  /** SIGKILL: the provider vanishes mid-whatever. */
  kill(): Promise<void>;
  /** SIGTERM: the emulator saves its state and exits. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data. */
  restart(): Promise<void>;
  /** Stops it and removes its data. */
  dispose(): Promise<void>;
  /** Whether its process is still running (it may have died on its own). */
  running(): boolean;
  /** The last lines it printed, to say why it died. */
  output(): string;
}

const BUCKET = 'cloudmux-router';

export async function ownS3rver(opts: { bucket?: string } = {}): Promise<OwnEmulator & { endpoint: string; store(): S3Store }> {
  const bucket = opts.bucket ?? BUCKET;
  const require = createRequire(import.meta.url);
  const bin = join(dirname(require.resolve('s3rver/package.json')), 'bin', 's3rver.js');
  const dir = await tempDir('router-s3rver');
  const port = await freePort();
  let proc: ManagedProcess | undefined;
  const start = async (): Promise<void> => {
    proc = spawnManaged(process.execPath, [bin, '--directory', dir.path, '--address', '127.0.0.1', '--port', String(port), '--silent', '--configure-bucket', bucket], {
      ...process.env,
      NODE_OPTIONS: [process.env.NODE_OPTIONS, '--openssl-legacy-provider'].filter(Boolean).join(' '),
    });
    await waitForPort(port, 90_000);
  };
  await start();
  return {
    name: 's3rver',
    endpoint: `http://127.0.0.1:${port}`,
    store: () => new S3Store({
      bucket, endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    }),
    kill: async () => proc?.kill(),
    stop: async () => proc?.stop(),
    restart: start,
    running: () => proc !== undefined && proc.child.exitCode === null && proc.child.signalCode === null,
    output: () => proc?.output() ?? '',
    dispose: async () => {
      await proc?.stop();
      await dir.remove();
    },
  };
}

export async function ownAzurite(opts: { container?: string } = {}): Promise<OwnEmulator & { connectionString: string; store(): AzureStore }> {
  const container = opts.container ?? BUCKET;
  const dir = await tempDir('router-azurite');
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`;
  const connectionString = azuriteConnectionString(endpoint);
  let proc: ManagedProcess | undefined;
  const start = async (): Promise<void> => {
    proc = spawnManaged(resolve('node_modules/.bin/azurite-blob'), [
      '--skipApiVersionCheck', '--disableTelemetry', '--silent', '--location', dir.path, '--blobHost', '127.0.0.1', '--blobPort', String(port),
    ]);
    await waitForPort(port, 90_000);
    // Azurite saves its index every few seconds; a SIGKILL soon after start loses even the
    // container, which a real account never would. Make sure it exists after every start.
    await BlobServiceClient.fromConnectionString(connectionString).getContainerClient(container).createIfNotExists();
  };
  await start();
  return {
    name: 'azurite',
    connectionString,
    store: () => new AzureStore(resolveAzureConfig(undefined, { connectionString, container })),
    kill: async () => proc?.kill(),
    stop: async () => proc?.stop(),
    restart: start,
    running: () => proc !== undefined && proc.child.exitCode === null && proc.child.signalCode === null,
    output: () => proc?.output() ?? '',
    dispose: async () => {
      await proc?.stop();
      await dir.remove();
    },
  };
}

/**
 * The project's GCS test server on its own port and directory. It runs in this process and keeps
 * its index in memory, so it can be closed (an outage) but not restarted with its data.
 */
export async function ownGcs(): Promise<{ name: string; url: string; store(): GcsStore; close(): Promise<void> }> {
  const server = await startGcsTestServer({ buckets: [BUCKET] });
  return {
    name: 'gcs-test-server',
    url: server.url,
    store: () => new GcsStore({ bucket: BUCKET, apiEndpoint: server.url, projectId: 'cloudmux-test' }),
    close: () => server.close(),
  };
}
