import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { AccountSASPermissions, BlobServiceClient, StorageSharedKeyCredential, generateAccountSASQueryParameters } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAzureStore, parseConnectionString } from '../../providers/azure/index.js';
import { GcsStore, type GcsStoreOptions } from '../../providers/gcs/index.js';
import { S3Store } from '../../providers/s3/index.js';
import { copyFromStoreOf, getBuffer, type BlobStore } from '../../src/core/index.js';
import { EncryptedStore, LocalKeyring, generateKey } from '../../src/layers/encryption/index.js';
import { sha256Hex } from '../../src/testing/data.js';
import { RetryStore } from '../../src/layers/index.js';
import { migrate } from '../../src/replication/index.js';
import { FaultProxy, type ProxyLogEntry } from '../faults/proxy.js';
import { emulatorOptions } from '../harness/s3.js';
import { payload } from './helpers.js';

/**
 * Server-side copy between two stores of one provider: a migrate between two buckets of one S3
 * endpoint sends CopyObject (x-amz-copy-source) for every object and moves no object bytes
 * through the process, and the copier still verifies the destination's digest.
 */
describe.runIf(process.env.S3_ENDPOINT)('server-side copy between two S3 buckets of one endpoint', () => {
  const run = `ssc-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  const other = `cmx-ssc-${randomBytes(4).toString('hex')}`;
  let proxy: FaultProxy;

  beforeAll(async () => {
    const client = new S3Client({ endpoint: process.env.S3_ENDPOINT, region: process.env.AWS_REGION ?? 'us-east-1', forcePathStyle: true });
    await client.send(new CreateBucketCommand({ Bucket: other }));
    client.destroy();
    proxy = await FaultProxy.start({ upstream: process.env.S3_ENDPOINT! });
  });
  afterAll(async () => {
    await proxy.close();
  });

  it('migrate copies every object with CopyObject, no object bytes through the process, each verified by SHA-256', async () => {
    const src = new S3Store(emulatorOptions({ endpoint: proxy.url, prefix: `${run}/src` }));
    const dst = new RetryStore(new S3Store(emulatorOptions({ endpoint: proxy.url, bucket: other, prefix: `${run}/dst` })));
    const objects = new Map<string, Buffer>();
    for (let i = 0; i < 12; i++) objects.set(`k${i}`, payload(1000 + i * 50_000, i + 1));
    objects.set('empty', Buffer.alloc(0));
    for (const [k, v] of objects) await src.put(k, v, { metadata: { n: k } });
    expect(copyFromStoreOf(dst, src), 'the destination can copy from the source').toBeDefined();
    const from = proxy.log.length;

    const summary = await migrate(src, dst, { concurrency: 4 });
    expect(summary).toMatchObject({ listed: objects.size, copied: objects.size, verified: objects.size, failed: 0 });

    const log = proxy.log.slice(from);
    const copies = log.filter((e) => e.method === 'PUT' && e.copySource !== undefined);
    expect(copies).toHaveLength(objects.size);
    for (const e of copies) expect(e.copySource).toContain(`${run}/src/`);
    // No object body travelled: no GET of an object, no PUT carrying bytes.
    const objectGets = log.filter((e) => e.method === 'GET' && !new URL(e.path, 'http://x').searchParams.has('list-type'));
    expect(objectGets.map((e) => e.path)).toEqual([]);
    const bodies = log.filter((e) => e.method === 'PUT' && (e.bodyBytes ?? 0) > 0);
    expect(bodies.map((e) => e.path)).toEqual([]);

    for (const [k, v] of objects) {
      const meta = await dst.head(k);
      expect(meta.checksums.sha256, k).toBe(sha256Hex(v));
      expect(meta.metadata.n).toBe(k);
      expect((await getBuffer(dst, k)).equals(v)).toBe(true);
    }
    await src.close();
    await dst.close();
  });

  it('never looks through a layer that changes bytes, and needs the same endpoint and credentials', () => {
    const plain = new S3Store(emulatorOptions({ prefix: `${run}/a` }));
    const k = generateKey('primary');
    const encryptedSrc = new EncryptedStore(new S3Store(emulatorOptions({ prefix: `${run}/b` })), { keyring: new LocalKeyring({ [k.id]: k.key }), keyId: k.id });
    expect(copyFromStoreOf(plain, encryptedSrc)).toBeUndefined();
    expect(copyFromStoreOf(plain, new RetryStore(new S3Store(emulatorOptions({ bucket: other }))))).toBeDefined();
    expect(copyFromStoreOf(plain, new S3Store(emulatorOptions({ endpoint: 'http://127.0.0.1:1' })))).toBeUndefined();
    expect(copyFromStoreOf(plain, new S3Store(emulatorOptions({ credentials: { accessKeyId: 'OTHER', secretAccessKey: 'x' } })))).toBeUndefined();
  });
});

/**
 * What a migrate between two stores of one emulator sent: the server-side copies, and any request
 * that carried object bytes to or from the process (there must be none).
 */
interface ServerSideLog {
  copies: ProxyLogEntry[];
  bytesThrough: ProxyLogEntry[];
}

async function migrateThroughProxy(
  proxy: FaultProxy, src: BlobStore, dst: BlobStore, objects: Map<string, Buffer>, classify: (e: ProxyLogEntry) => 'copy' | 'bytes' | 'other',
): Promise<ServerSideLog> {
  for (const [k, v] of objects) await src.put(k, v, { metadata: { n: k } });
  expect(copyFromStoreOf(dst, src), 'the destination can copy from the source').toBeDefined();
  const from = proxy.log.length;
  const summary = await migrate(src, dst, { concurrency: 4 });
  expect(summary).toMatchObject({ listed: objects.size, copied: objects.size, verified: objects.size, failed: 0 });
  const log = proxy.log.slice(from);
  const out: ServerSideLog = { copies: log.filter((e) => classify(e) === 'copy'), bytesThrough: log.filter((e) => classify(e) === 'bytes') };
  for (const [k, v] of objects) {
    const meta = await dst.head(k);
    expect(meta.checksums.sha256, k).toBe(sha256Hex(v));
    expect(meta.metadata.n).toBe(k);
    expect((await getBuffer(dst, k)).equals(v)).toBe(true);
  }
  return out;
}

function sampleObjects(): Map<string, Buffer> {
  const objects = new Map<string, Buffer>();
  for (let i = 0; i < 8; i++) objects.set(`k${i}`, payload(1000 + i * 50_000, i + 1));
  objects.set('empty', Buffer.alloc(0));
  return objects;
}

const gcsEndpoint = process.env.GCS_EMULATOR_HOST;

describe.runIf(gcsEndpoint)('server-side copy between two GCS buckets of one endpoint', () => {
  const run = `ssc-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  const bucket = process.env.GCS_BUCKET ?? 'cloudmux-test';
  const other = `cmx-ssc-${randomBytes(4).toString('hex')}`;
  let proxy: FaultProxy;
  const gcs = (o: Partial<GcsStoreOptions> = {}): GcsStore => new GcsStore({ bucket, apiEndpoint: proxy.url, projectId: 'test-project', ...o });

  beforeAll(async () => {
    const res = await fetch(`${gcsEndpoint}/storage/v1/b?project=test-project`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: other }) });
    if (!res.ok && res.status !== 409) throw new Error(`cannot create bucket ${other}: HTTP ${res.status}`);
    proxy = await FaultProxy.start({ upstream: gcsEndpoint! });
  });
  afterAll(async () => {
    await proxy.close();
  });

  it('migrate copies every object with objects.rewrite (token loop included), no object bytes through the process, each verified by SHA-256', async () => {
    const src = gcs({ prefix: `${run}/src` });
    const dst = new RetryStore(gcs({ bucket: other, prefix: `${run}/dst` }));
    const objects = sampleObjects();
    // Larger than the test server's rewrite step (1 MiB): answered with rewriteTokens first.
    objects.set('large', payload(2_600_000, 99));
    const { copies, bytesThrough } = await migrateThroughProxy(proxy, src, dst, objects, (e) => {
      const path = e.path.split('?')[0]!;
      if (e.method === 'POST' && path.includes('/rewriteTo/')) return 'copy';
      const q = new URL(e.path, 'http://x').searchParams;
      if (path.startsWith('/upload/') || path.startsWith('/download/') || q.get('alt') === 'media') return 'bytes';
      return 'other';
    });
    const targets = new Set(copies.map((e) => e.path.split('?')[0]));
    expect(targets.size).toBe(objects.size);
    for (const e of copies) {
      expect(e.path).toContain(`/b/${bucket}/o/${encodeURIComponent(`${run}/src/`)}`);
      expect(e.path).toContain(`/rewriteTo/b/${other}/o/`);
    }
    expect(copies.length, 'the large object took several rewrite calls').toBeGreaterThan(objects.size);
    expect(bytesThrough.map((e) => `${e.method} ${e.path}`)).toEqual([]);
    await src.close();
    await dst.close();
  });

  it('needs the same endpoint and principal', () => {
    const plain = new GcsStore({ bucket, apiEndpoint: gcsEndpoint!, prefix: `${run}/a` });
    expect(copyFromStoreOf(plain, new RetryStore(new GcsStore({ bucket: other, apiEndpoint: gcsEndpoint! })))).toBeDefined();
    expect(copyFromStoreOf(plain, new GcsStore({ bucket: other, apiEndpoint: 'http://127.0.0.1:1' }))).toBeUndefined();
    expect(copyFromStoreOf(plain, new GcsStore({ bucket: other, apiEndpoint: gcsEndpoint!, keyFilename: '/nonexistent/other.json' }))).toBeUndefined();
  });
});

const azureCs = process.env.AZURE_STORAGE_CONNECTION_STRING;

describe.runIf(azureCs)('server-side copy between two Azure containers of one account', () => {
  const run = `ssc-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  const container = process.env.AZURE_CONTAINER ?? 'cloudmux-test';
  const other = `cmx-ssc-${randomBytes(4).toString('hex')}`;
  const endpoint = new URL(parseConnectionString(azureCs ?? '').blobEndpoint ?? 'http://127.0.0.1:1');
  let proxy: FaultProxy;
  const proxied = (): string => azureCs!.replace(/BlobEndpoint=[^;]+/i, `BlobEndpoint=${proxy.url}${endpoint.pathname}`);
  const classify = (e: ProxyLogEntry): 'copy' | 'bytes' | 'other' => {
    if (e.method === 'PUT' && e.copySource !== undefined) return 'copy';
    const q = new URL(e.path, 'http://x').searchParams;
    if (e.method === 'GET' && !q.has('comp') && !q.has('restype')) return 'bytes';
    if (e.method === 'PUT' && (e.bodyBytes ?? 0) > 0) return 'bytes';
    return 'other';
  };

  beforeAll(async () => {
    await BlobServiceClient.fromConnectionString(azureCs!).getContainerClient(other).createIfNotExists();
    proxy = await FaultProxy.start({ upstream: endpoint.origin });
  });
  afterAll(async () => {
    await proxy.close();
  });

  it('migrate copies every object with Copy Blob (shared key), no object bytes through the process, each verified by SHA-256', async () => {
    const src = createAzureStore({ connectionString: proxied(), container, prefix: `${run}/src` });
    const dst = new RetryStore(createAzureStore({ connectionString: proxied(), container: other, prefix: `${run}/dst` }));
    const objects = sampleObjects();
    const { copies, bytesThrough } = await migrateThroughProxy(proxy, src, dst, objects, classify);
    expect(copies).toHaveLength(objects.size);
    for (const e of copies) {
      expect(e.copySource).toContain(`/${container}/${run}/src/`);
      expect(e.path).toContain(`/${other}/${run}/dst/`);
    }
    expect(bytesThrough.map((e) => `${e.method} ${e.path}`)).toEqual([]);
    await src.close();
    await dst.close();
  });

  it('copies from a source reached with a SAS (its blob URLs carry it)', async () => {
    const cs = parseConnectionString(azureCs!);
    const sas = generateAccountSASQueryParameters({
      permissions: AccountSASPermissions.parse('rl'), services: 'b', resourceTypes: 'sco', expiresOn: new Date(Date.now() + 3600_000),
    }, new StorageSharedKeyCredential(cs.accountName!, cs.accountKey!)).toString();
    const src = createAzureStore({ connectionString: `BlobEndpoint=${proxy.url}${endpoint.pathname};SharedAccessSignature=${sas}`, container, prefix: `${run}/sas-src` });
    const writer = createAzureStore({ connectionString: proxied(), container, prefix: `${run}/sas-src` });
    const dst = createAzureStore({ connectionString: proxied(), container: other, prefix: `${run}/sas-dst` });
    const objects = new Map([['a', payload(70_000, 7)], ['b', payload(10, 8)]]);
    for (const [k, v] of objects) await writer.put(k, v, { metadata: { n: k } });
    expect(copyFromStoreOf(dst, src), 'a SAS source can be copied from').toBeDefined();
    const from = proxy.log.length;
    const summary = await migrate(src, dst, { concurrency: 2 });
    expect(summary).toMatchObject({ listed: 2, copied: 2, verified: 2, failed: 0 });
    const log = proxy.log.slice(from);
    expect(log.filter((e) => classify(e) === 'copy')).toHaveLength(2);
    expect(log.filter((e) => classify(e) === 'bytes').map((e) => `${e.method} ${e.path}`)).toEqual([]);
    for (const [k, v] of objects) expect((await getBuffer(dst, k)).equals(v)).toBe(true);
    await Promise.all([src.close(), writer.close(), dst.close()]);
  });

  it('needs the same account and endpoint, and a credential that can read the source', () => {
    const plain = createAzureStore({ connectionString: azureCs!, container, prefix: `${run}/a` });
    expect(copyFromStoreOf(plain, new RetryStore(createAzureStore({ connectionString: azureCs!, container: other })))).toBeDefined();
    const elsewhere = azureCs!.replace(/BlobEndpoint=[^;]+/i, `BlobEndpoint=http://127.0.0.1:1${endpoint.pathname}`);
    expect(copyFromStoreOf(plain, createAzureStore({ connectionString: elsewhere, container: other }))).toBeUndefined();
  });
});
