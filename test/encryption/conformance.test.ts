import { MemoryStore } from '../../providers/memory/index.js';
import { EncryptedStore, LocalKeyring, generateKey } from '../../src/layers/encryption/index.js';
import { testStore } from '../../src/testing/index.js';

const k = generateKey('conformance');
const keyring = new LocalKeyring({ [k.id]: k.key });

testStore('Encrypted(memory)', {
  create: () => new EncryptedStore(new MemoryStore(), { keyring, keyId: k.id }),
});

// Small segments: every case crosses many segment boundaries.
testStore('Encrypted(memory, 1 KiB segments)', {
  create: () => new EncryptedStore(new MemoryStore(), { keyring, keyId: k.id, segmentSize: 1024 }),
});
