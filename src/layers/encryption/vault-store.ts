import type { BlobStore } from '../../core/types.js';
import { ChainKeyring, type Keyring } from './keyring.js';
import { EncryptedStore, type EncryptedStoreOptions } from './store.js';
import type { Vault } from './vault.js';

/**
 * An EncryptedStore whose new objects are format v2 for `vault` (wrapped to its current epoch, which
 * follows revocations); `keyring`, when given, keeps older v1 objects readable beside them.
 */
export function vaultStore(inner: BlobStore, vault: Vault, opts: Omit<EncryptedStoreOptions, 'keyring' | 'keyId'> & { keyring?: Keyring } = {}): EncryptedStore {
  const { keyring, ...rest } = opts;
  return new EncryptedStore(inner, {
    ...rest,
    keyring: keyring ? new ChainKeyring([vault, keyring]) : vault,
    keyId: () => vault.writeKeyId(),
  });
}
