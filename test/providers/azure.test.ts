import { randomBytes } from 'node:crypto';
import { BlobServiceClient } from '@azure/storage-blob';
import { AzureStore, createAzureStore, fromUrl, parseConnectionString } from '../../providers/azure/index.js';
import { collect } from '../../src/core/body.js';
import type { BlobStore } from '../../src/core/index.js';
import { testStore, type CaseName } from '../../src/testing/index.js';
import { AZURITE_ACCOUNT, AZURITE_DEVIATIONS } from '../harness/azure.js';
import { partFaultHarness } from '../harness/part-faults.js';

/**
 * The conformance suite against the Azure endpoint the harness points at: Azurite by default (or
 * whatever AZURE_STORAGE_CONNECTION_STRING names), and, opt-in, a real account when
 * CLOUDMUX_TEST_AZURE_URL is set (`az://account/container[/prefix]`, credentials from the usual
 * environment or DefaultAzureCredential). Driver-specific behaviour lives in azure-driver.test.ts.
 */


const connectionString = process.env.AZURE_STORAGE_CONNECTION_STRING;
const onAzurite = connectionString !== undefined && parseConnectionString(connectionString).accountName === AZURITE_ACCOUNT;

/**
 * Rewrites a blob with one byte flipped while keeping its Content-MD5 and cloudmux_sha256, the way a
 * faulty disk or a buggy writer would leave it. Block commits do not check the blob MD5, so this
 * works on Azurite and on real Azure alike.
 */
async function corruptBlob(store: BlobStore, key: string): Promise<void> {
  const s = store as AzureStore;
  const cs = connectionString!;
  const blob = BlobServiceClient.fromConnectionString(cs).getContainerClient(s.config.container)
    .getBlockBlobClient(s.config.prefix ? `${s.config.prefix}/${key}` : key);
  const props = await blob.getProperties();
  const data = await collect((await blob.download()).readableStreamBody as NodeJS.ReadableStream as AsyncIterable<Buffer>);
  data[data.length >> 1]! ^= 0x01;
  const id = Buffer.from('corrupt-0').toString('base64');
  await blob.stageBlock(id, data, data.length);
  await blob.commitBlockList([id], { metadata: props.metadata, blobHTTPHeaders: { blobContentMD5: props.contentMD5, blobContentType: props.contentType } });
}

const azuritePrefix = `prefixed-${randomBytes(3).toString('hex')}`;

/** 1 MiB blocks through a fault proxy in front of the connection string's blob endpoint. */
function azurePartFaults(cs: string) {
  const endpoint = new URL(parseConnectionString(cs).blobEndpoint!);
  return partFaultHarness('azure', endpoint.origin, 4 * 1024 * 1024 + 1000, (proxyUrl) => createAzureStore({
    connectionString: cs.replace(/BlobEndpoint=[^;]+/i, `BlobEndpoint=${proxyUrl}${endpoint.pathname}`),
    container: process.env.AZURE_CONTAINER ?? 'cloudmux-test',
    prefix: azuritePrefix,
    blockSize: 1024 * 1024,
    singleShotThreshold: 1024 * 1024,
  }));
}

if (connectionString) {
  testStore(onAzurite ? 'azure (azurite)' : 'azure (connection string)', {
    create: () => createAzureStore({
      connectionString,
      container: process.env.AZURE_CONTAINER ?? 'cloudmux-test',
      prefix: azuritePrefix,
    }),
    deviations: onAzurite ? (AZURITE_DEVIATIONS as Partial<Record<CaseName, string>>) : undefined,
    corrupt: corruptBlob,
    partFaults: azurePartFaults(connectionString),
  });
}

const realUrl = process.env.CLOUDMUX_TEST_AZURE_URL;
if (realUrl) {
  // A real account, opt-in: its own unique prefix under the URL's; every case removes what it wrote.
  const url = new URL(realUrl);
  const base = url.pathname.split('/').filter(Boolean).slice(1).join('/');
  testStore(`azure (${url.host})`, {
    create: () => fromUrl(url, { prefix: [base, 'cloudmux-ci', `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`].filter(Boolean).join('/') }),
  });
}
