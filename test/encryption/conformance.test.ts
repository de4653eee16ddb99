import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { BlobStore } from '../../src/core/types.js';
import { MemoryStore } from '../../providers/memory/index.js';
import { FsStore } from '../../providers/fs/index.js';
import { S3Store } from '../../providers/s3/index.js';
import { createAzureStore } from '../../providers/azure/index.js';
import { GcsStore } from '../../providers/gcs/index.js';
import { EncryptedStore, LocalKeyring, generateKey } from '../../src/layers/encryption/index.js';
import { testStore } from '../../src/testing/index.js';
import { S3RVER_DEVIATIONS, S3RVER_MARK, emulatorOptions } from '../harness/s3.js';
import { raw } from './helpers.js';
import { carriedMetadata } from '../../src/core/system-metadata.js';
import { routerFixture, type Fixture } from '../router/fixture.js';

/**
 * The whole conformance suite over EncryptedStore stacks: memory (default and 1 KiB segments, so
 * every case crosses many segment boundaries), fs (a streaming store: the 64 MiB case checks the
 * memory bound both ways), and the S3 / GCS / Azure emulators when the harness started them. The
 * inner store's own emulator deviations apply unchanged.
 */

const k = generateKey('conformance');
const keyring = new LocalKeyring({ [k.id]: k.key });
const encrypted = (inner: BlobStore, segmentSize?: number): EncryptedStore => new EncryptedStore(inner, { keyring, keyId: k.id, segmentSize });

/** Flips one stored ciphertext byte behind the layer's back (a rewrite of the inner object). */
async function corruptCiphertext(store: BlobStore, key: string): Promise<void> {
  const inner = (store as EncryptedStore).inner;
  const { bytes, meta } = await raw(inner, key);
  bytes[bytes.length >> 1]! ^= 0x01;
  // Another program rewriting the object keeps its header: cloudmux's internal channel stands in for it.
  await inner.put(key, bytes, { metadata: carriedMetadata(meta.metadata), contentType: meta.contentType });
}

testStore('Encrypted(memory)', { create: () => encrypted(new MemoryStore()), corrupt: corruptCiphertext });
testStore('Encrypted(memory, 1 KiB segments)', { create: () => encrypted(new MemoryStore(), 1024), corrupt: corruptCiphertext });

// Over the router (two memory providers, N=2 W=1): the header reaches both replicas, the second
// one written by the replication worker, and copies through the router keep it.
const routers = new Map<BlobStore, Fixture>();
testStore('Encrypted(router)', {
  async create() {
    const f = await routerFixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 1 }] });
    f.worker.start();
    const store = encrypted(f.router);
    routers.set(store, f);
    return store;
  },
  async destroy(store) {
    await routers.get(store)?.close();
  },
  only: ['roundTripSizes', 'metadataRoundTrip', 'reservedMetadataRefused', 'copyKeepsBytesAndMetadata', 'updateMetadataKeepsBytes', 'verifiedReads'],
});

const roots: string[] = [];
afterAll(() => Promise.all(roots.splice(0).map((r) => rm(r, { recursive: true, force: true }))));
testStore('Encrypted(fs)', {
  create: async () => {
    const root = await mkdtemp(join(tmpdir(), 'cloudmux-enc-fs-'));
    roots.push(root);
    // Escaped: the suite's oddKeys case has a 299-byte segment, which the plain layout refuses.
    return encrypted(new FsStore({ root, layout: 'escaped' }));
  },
  corrupt: corruptCiphertext,
});

const onS3rver = process.env[S3RVER_MARK] === 's3rver';
/** The part engine under the encryption layer is the driver's own; each driver's conformance run proves it through a fault proxy. */
const PART_RESET = { partResetMidSend: 'the parts on the wire are the driver\'s: test/providers/{s3,azure,gcs}.test.ts reset one through a fault proxy; the encryption layer hands the driver one stream' };
if (process.env.S3_ENDPOINT) {
  testStore('Encrypted(s3)', {
    // A three-part window of 5 MiB parts keeps the driver's own share (≈ (3 + 1) × 5 MiB) clear of
    // the budget, so the 64 MiB case measures what the encryption layer adds. (With 8 MiB parts the
    // driver's 32 MiB left too little room: on a loaded box the peak ranged 20–52 MiB, as sockets
    // and GC release part buffers late.)
    create: () => encrypted(new S3Store(emulatorOptions({ prefix: `enc-${randomBytes(3).toString('hex')}`, queueSize: 3, partSize: 5 * 1024 * 1024 }))),
    deviations: { ...(onS3rver ? S3RVER_DEVIATIONS : {}), ...PART_RESET },
    corrupt: corruptCiphertext,
  });
}

const azure = process.env.AZURE_STORAGE_CONNECTION_STRING;
if (azure) {
  testStore('Encrypted(azure)', {
    // Two blocks in flight keep the driver's own share (blockSize × (uploadConcurrency + 2)) clear
    // of the budget, so the 64 MiB case measures what the encryption layer adds.
    create: () => encrypted(createAzureStore({ connectionString: azure, container: process.env.AZURE_CONTAINER ?? 'cloudmux-test', prefix: `enc-${randomBytes(3).toString('hex')}`, uploadConcurrency: 2 })),
    deviations: PART_RESET,
    corrupt: corruptCiphertext,
  });
}

const gcs = process.env.GCS_EMULATOR_HOST;
const gcsBucket = process.env.GCS_BUCKET ?? 'cloudmux-test';
/** A GCS store on the test server (or fake-gcs-server), its bucket created if it is not there yet. */
async function gcsStore(prefix: string, chunkSize?: number): Promise<GcsStore> {
  const res = await fetch(`${gcs}/storage/v1/b?project=test-project`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: gcsBucket }) });
  if (!res.ok && res.status !== 409) throw new Error(`cannot create bucket ${gcsBucket}: HTTP ${res.status}`);
  return new GcsStore({ bucket: gcsBucket, apiEndpoint: gcs, projectId: 'test-project', prefix, chunkSize });
}
if (gcs) {
  testStore('Encrypted(gcs)', {
    // 1 MiB resumable chunks keep the driver's own share (≈ 3 × chunkSize) clear of the budget, so
    // the 64 MiB case measures what the encryption layer adds.
    create: async () => encrypted(await gcsStore(`enc-${randomBytes(3).toString('hex')}`, 1024 * 1024)),
    deviations: PART_RESET,
    corrupt: corruptCiphertext,
  });
}

describe('providers store only ciphertext (read back directly from each backend)', () => {
  const backends: [string, () => Promise<BlobStore> | BlobStore][] = [
    ['fs', async () => {
      const root = await mkdtemp(join(tmpdir(), 'cloudmux-enc-fs-'));
      roots.push(root);
      return new FsStore({ root });
    }],
  ];
  if (process.env.S3_ENDPOINT) backends.push(['s3', () => new S3Store(emulatorOptions({ prefix: `enc-raw-${randomBytes(3).toString('hex')}` }))]);
  if (gcs) backends.push(['gcs', () => gcsStore(`enc-raw-${randomBytes(3).toString('hex')}`)]);
  if (azure) backends.push(['azure', () => createAzureStore({ connectionString: azure, container: process.env.AZURE_CONTAINER ?? 'cloudmux-test', prefix: `enc-raw-${randomBytes(3).toString('hex')}` })]);
  for (const [name, make] of backends) {
    it(name, async () => {
      const inner = await make();
      const store = encrypted(inner);
      const secret = 'TOP SECRET: the launch code is 0000. '.repeat(4000);
      await store.put('doc', secret, { metadata: { label: 'public' } });
      const stored = await raw(inner, 'doc');
      expect(stored.bytes.includes(Buffer.from('TOP SECRET'))).toBe(false);
      expect(stored.bytes.includes(Buffer.from('launch code'))).toBe(false);
      expect(JSON.stringify(stored.meta.metadata)).not.toContain(k.key);
      expect(stored.meta.size).toBe(Buffer.byteLength(secret) + 16 * Math.ceil(Buffer.byteLength(secret) / 65536));
      await inner.delete('doc');
      await inner.close();
    });
  }
});
