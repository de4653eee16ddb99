export { EncryptedStore, type EncryptedStoreOptions, type RotateResult } from './store.js';
export {
  LocalKeyring, KmsKeyring, ChainKeyring, loadKeyring, generateKey, checkKeyId, KEY_ID_PATTERN, ENV_PREFIX,
  type Keyring, type KmsClient, type WrapContext,
} from './keyring.js';
export { rotateAll, type RotateAllOptions, type RotateProgress, type RotateReport } from './rotate.js';
export { ENC_META, parseHeader, type EncryptionHeader } from './header.js';
export {
  FORMAT_VERSION, DEFAULT_SEGMENT_SIZE, TAG_BYTES, cipherSize, plainSize, segmentCount, segmentSpan,
  SegmentEncryptor, SegmentDecryptor,
} from './format.js';
export {
  DeviceIdentity, DEVICE_KINDS, DEFAULT_SCRYPT, deviceId, shortFingerprint, normalizeFingerprint, publicFromJson, publicToJson,
  type DeviceKind, type DevicePublic, type ScryptParams,
} from './device-identity.js';
export {
  Vault, VAULT_PREFIX, VAULT_FORMAT_VERSION, VAULT_KEY_ID_PATTERN, vaultKeyId, isVaultKeyId, type VaultOptions, type VaultMember,
} from './vault.js';
export { verifyChain, type MembershipRecord, type MemberEntry, type MemberRole, type VaultPin, type VerifiedRecord } from './membership-record.js';
export { MemoryVaultPins, FileVaultPins, type VaultPins } from './vault-pins.js';
export { vaultStore } from './vault-store.js';
