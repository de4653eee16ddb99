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
