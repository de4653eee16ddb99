import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BlobServiceClient } from '@azure/storage-blob';
import { freePort, spawnManaged, tempDir, waitForPort, type Emulator } from './emulator.js';

/** Azurite's fixed development account; its key is public and documented, not a secret. */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
/** The container the suite writes into (Azure container names are 3–63 chars, lower case). */
export const AZURE_TEST_CONTAINER = 'cloudmux-test';

/**
 * Conformance cases Azurite 3.35 cannot pass, each with its reason: none. Its differences from
 * Azure are absorbed by the driver instead, so the same code path runs on both:
 * - a range starting at the end of a blob: empty 206 (Azure: 416 InvalidRange) — checked after the read;
 * - a bad signature: AuthorizationFailure "failed to authenticate" (Azure: AuthenticationFailed) —
 *   mapped to AuthFailed by its message; on HEAD (no body) it stays AccessDenied;
 * - a bad Put Blob/Put Block MD5: 400 InvalidOperation (Azure: Md5Mismatch) — mapped by its message;
 * - list `startFrom` (service version 2026-04-06) is ignored, so the driver does not use it.
 * Both Azure and Azurite list in UTF-16 order; the driver re-orders to UTF-8 on both.
 */
export const AZURITE_DEVIATIONS: Record<string, string> = {};

/** A connection string for Azurite listening on `endpoint` (`http://127.0.0.1:port/devstoreaccount1`, or https). */
export function azuriteConnectionString(endpoint: string): string {
  const protocol = endpoint.startsWith('https:') ? 'https' : 'http';
  return `DefaultEndpointsProtocol=${protocol};AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=${endpoint};`;
}

/**
 * A self-signed certificate for 127.0.0.1 (openssl), for an emulator served over TLS. Clients
 * trust it through NODE_EXTRA_CA_CERTS (read by Node at start-up only) or rclone's --ca-cert.
 */
export function selfSignedCertificate(dir: string): { cert: string; key: string } {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl could not make a certificate: ${r.error?.message ?? r.stderr}`);
  return { cert, key };
}

/**
 * Starts azurite-blob (over TLS with `tls`) on a free loopback port with its workspace in a temp dir, creates the test
 * container, and exports AZURE_STORAGE_CONNECTION_STRING and AZURE_CONTAINER. Leaves an instance
 * alone when AZURE_STORAGE_CONNECTION_STRING is already set (docker-compose, real Azure); then
 * only the container is ensured.
 */
export async function startAzure(opts: { tls?: { cert: string; key: string } } = {}): Promise<Emulator | undefined> {
  const container = process.env.AZURE_CONTAINER ?? AZURE_TEST_CONTAINER;
  const preset = process.env.AZURE_STORAGE_CONNECTION_STRING;
  if (preset) {
    await ensureContainer(preset, container);
    process.env.AZURE_CONTAINER = container;
    return undefined;
  }
  const port = await freePort();
  const dir = await tempDir('azurite');
  // --skipApiVersionCheck: the SDK speaks a newer service version than Azurite 3.35 advertises.
  const proc = spawnManaged(fileURLToPath(new URL('../../node_modules/.bin/azurite-blob', import.meta.url)), [
    '--skipApiVersionCheck', '--disableTelemetry', '--silent',
    '--location', dir.path, '--blobHost', '127.0.0.1', '--blobPort', String(port),
    ...(opts.tls ? ['--cert', opts.tls.cert, '--key', opts.tls.key] : []),
  ]);
  const stop = async (): Promise<void> => {
    await proc.stop();
    await dir.remove();
  };
  try {
    await waitForPort(port);
    const endpoint = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}/${AZURITE_ACCOUNT}`;
    const connectionString = azuriteConnectionString(endpoint);
    await ensureContainer(connectionString, container);
    return {
      name: 'azurite',
      pid: proc.child.pid,
      env: { AZURE_STORAGE_CONNECTION_STRING: connectionString, AZURE_CONTAINER: container, AZURITE_BLOB_ENDPOINT: endpoint },
      stop,
    };
  } catch (e) {
    const output = proc.output();
    await stop();
    throw new Error(`azurite did not start: ${(e as Error).message}\n${output}`, { cause: e });
  }
}

async function ensureContainer(connectionString: string, container: string): Promise<void> {
  const service = BlobServiceClient.fromConnectionString(connectionString);
  await service.getContainerClient(container).createIfNotExists();
}
