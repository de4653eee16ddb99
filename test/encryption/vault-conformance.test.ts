import { MemoryStore } from '../../providers/memory/index.js';
import type { BlobStore } from '../../src/core/types.js';
import { carriedMetadata } from '../../src/core/system-metadata.js';
import { DeviceIdentity, Vault, vaultStore, type EncryptedStore } from '../../src/layers/encryption/index.js';
import { testStore } from '../../src/testing/index.js';
import { raw } from './helpers.js';

/**
 * The whole conformance suite over a vault store (format v2): every object's DEK wrapped to the
 * vault epoch, read back by the same full member, 1 KiB segments so cases cross many boundaries.
 */
async function corruptCiphertext(store: BlobStore, key: string): Promise<void> {
  const inner = (store as EncryptedStore).inner;
  const { bytes, meta } = await raw(inner, key);
  bytes[bytes.length >> 1]! ^= 0x01;
  await inner.put(key, bytes, { metadata: carriedMetadata(meta.metadata), contentType: meta.contentType });
}

testStore('Vault(memory, 1 KiB segments)', {
  create: async () => {
    const inner = new MemoryStore();
    const identity = DeviceIdentity.generate('conformance');
    await Vault.init(inner, identity);
    return vaultStore(inner, await Vault.open(inner, { identity }), { segmentSize: 1024 });
  },
  corrupt: corruptCiphertext,
});
