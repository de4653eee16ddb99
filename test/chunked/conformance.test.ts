import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { collect } from '../../src/core/body.js';
import type { BlobStore } from '../../src/core/types.js';
import { MemoryStore } from '../../providers/memory/index.js';
import { FsStore } from '../../providers/fs/index.js';
import { ChunkedStore, chunkKey, type ChunkedStoreOptions } from '../../src/layers/chunked/index.js';
import { EncryptedStore, LocalKeyring, generateKey } from '../../src/layers/encryption/index.js';
import { chunkIdKeyFromKeyring } from '../../src/layers/chunked/index.js';
import { testStore } from '../../src/testing/index.js';

/**
 * The whole conformance suite over ChunkedStore with thresholds small enough that most cases'
 * objects are chunked into many chunks: memory (4 KiB chunks), fs (64 KiB chunks, a streaming
 * store: the 64 MiB case checks the memory bound), and Chunked(Encrypted(memory)) with keyed ids.
 */

const SMALL: ChunkedStoreOptions = { sizes: { min: 1024, target: 4096, max: 16384 }, threshold: 4096 };
const MEDIUM: ChunkedStoreOptions = { sizes: { min: 16384, target: 65536, max: 262144 }, threshold: 32768 };

/** Flips one byte of the object's middle chunk behind the layer's back. */
async function corruptChunk(store: BlobStore, key: string): Promise<void> {
  const chunked = store as ChunkedStore;
  const m = await chunked.manifest(key);
  if (!m) throw new Error(`${key} is not chunked`);
  const c = m.chunks[m.chunks.length >> 1]!;
  const ck = chunkKey(chunked.chunkPrefix, c.id);
  const bytes = await collect((await chunked.inner.get(ck)).body);
  bytes[bytes.length >> 1]! ^= 0x01;
  await chunked.inner.put(ck, bytes);
}

testStore('Chunked(memory, 4 KiB chunks)', { create: () => new ChunkedStore(new MemoryStore(), SMALL), corrupt: corruptChunk });

const roots: string[] = [];
afterAll(() => Promise.all(roots.splice(0).map((r) => rm(r, { recursive: true, force: true }))));
testStore('Chunked(fs, 64 KiB chunks)', {
  create: async () => {
    const root = await mkdtemp(join(tmpdir(), 'cloudmux-chunked-fs-'));
    roots.push(root);
    return new ChunkedStore(new FsStore({ root, layout: 'escaped' }), MEDIUM);
  },
  corrupt: corruptChunk,
});

const k = generateKey('chunked');
const keyring = new LocalKeyring({ [k.id]: k.key });
testStore('Chunked(Encrypted(memory), keyed ids)', {
  create: async () => new ChunkedStore(new EncryptedStore(new MemoryStore(), { keyring, keyId: k.id }), { ...SMALL, idKey: await chunkIdKeyFromKeyring(keyring, k.id) }),
  corrupt: corruptChunk,
});
