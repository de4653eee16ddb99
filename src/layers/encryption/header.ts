import { IntegrityError, InvalidArgumentError, NotSupportedError } from '../../core/errors.js';
import { RESERVED_METADATA_BYTES, SHA256_KEY } from '../../core/metadata.js';
import { systemMetadata } from '../../core/system-metadata.js';
import type { ObjectMeta } from '../../core/types.js';
import { checkSegmentSize, FORMAT_VERSION, NONCE_PREFIX_BYTES, TAG_BYTES } from './format.js';
import { KEY_ID_PATTERN } from './keyring.js';
import { VAULT_WRAPPED_DEK_BYTES } from './recipient-wrap.js';
import { VAULT_FORMAT_VERSION, VAULT_KEY_ID_PATTERN } from './vault.js';

/** Object format versions this cloudmux reads: v1 (keyring KEKs) and v2 (vault recipients, same body). */
export const READABLE_VERSIONS: readonly number[] = [FORMAT_VERSION, VAULT_FORMAT_VERSION];

/** The format an object wrapped under `keyId` is written in: v2 for vault epoch keys, else v1. */
export function formatVersionFor(keyId: string): number {
  return VAULT_KEY_ID_PATTERN.test(keyId) ? VAULT_FORMAT_VERSION : FORMAT_VERSION;
}

/** Metadata names of the encryption header (all under cloudmux's reserved `cloudmux_` room). */
export const ENC_META = {
  version: 'cloudmux_enc',
  keyId: 'cloudmux_enc_kid',
  wrappedKey: 'cloudmux_enc_dek',
  noncePrefix: 'cloudmux_enc_iv',
  segmentSize: 'cloudmux_enc_seg',
  plainSize: 'cloudmux_enc_size',
  digest: 'cloudmux_enc_sha',
} as const;

const NAMES: ReadonlySet<string> = new Set(Object.values(ENC_META));

/** True for a metadata name the encryption layer owns. */
export function isEncryptionMetaName(name: string): boolean {
  return NAMES.has(name);
}

/** Everything a reader needs besides the key-encryption key. */
export interface EncryptionHeader {
  version: number;
  keyId: string;
  wrappedKey: Buffer;
  noncePrefix: Buffer;
  segmentSize: number;
  /**
   * Plaintext bytes, when known as the header is written. Always derivable from the stored size
   * (see plainSize in format.ts); when present it must agree.
   */
  plainSize?: number;
  /** SHA-256 of the plaintext sealed under the DEK (absent until known). */
  sealedDigest?: Buffer;
}

export function headerToMetadata(h: EncryptionHeader): Record<string, string> {
  const m: Record<string, string> = {
    [ENC_META.version]: String(h.version),
    [ENC_META.keyId]: h.keyId,
    [ENC_META.wrappedKey]: h.wrappedKey.toString('base64'),
    [ENC_META.noncePrefix]: h.noncePrefix.toString('base64'),
    [ENC_META.segmentSize]: String(h.segmentSize),
  };
  if (h.plainSize !== undefined) m[ENC_META.plainSize] = String(h.plainSize);
  if (h.sealedDigest) m[ENC_META.digest] = h.sealedDigest.toString('base64');
  return m;
}

/** Only the header's entries of a metadata map. */
export function headerEntries(metadata: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata)) if (NAMES.has(k)) out[k] = v;
  return out;
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;
const DECIMAL = /^(0|[1-9][0-9]{0,15})$/;

/**
 * The header in an object's metadata; undefined when the object carries none (it was not written
 * by the encryption layer). A present but malformed header is IntegrityError; a newer format
 * version is NotSupported.
 */
export function parseHeader(metadata: Record<string, string>, where: { provider?: string; key?: string } = {}): EncryptionHeader | undefined {
  const v = metadata[ENC_META.version];
  if (v === undefined) return undefined;
  const bad = (what: string): never => {
    throw new IntegrityError(`encryption metadata ${what} is missing or malformed`, where);
  };
  if (!DECIMAL.test(v)) bad(ENC_META.version);
  const version = Number(v);
  if (!READABLE_VERSIONS.includes(version)) {
    throw new NotSupportedError(`object uses encryption format v${version}; this cloudmux reads v${READABLE_VERSIONS.join(' and v')}`, where);
  }
  const keyId = metadata[ENC_META.keyId];
  if (keyId === undefined || !KEY_ID_PATTERN.test(keyId)) bad(ENC_META.keyId);
  // v2 wraps to a vault epoch and names it; a v1 header must not borrow a vault key id or vice versa.
  if (formatVersionFor(keyId!) !== version) bad(ENC_META.keyId);
  const wrapped = metadata[ENC_META.wrappedKey];
  if (!wrapped || !B64.test(wrapped)) bad(ENC_META.wrappedKey);
  if (version === VAULT_FORMAT_VERSION && Buffer.from(wrapped!, 'base64').byteLength !== VAULT_WRAPPED_DEK_BYTES) bad(ENC_META.wrappedKey);
  const iv = metadata[ENC_META.noncePrefix];
  if (!iv || !B64.test(iv)) bad(ENC_META.noncePrefix);
  const noncePrefix = Buffer.from(iv!, 'base64');
  if (noncePrefix.byteLength !== NONCE_PREFIX_BYTES) bad(ENC_META.noncePrefix);
  const seg = metadata[ENC_META.segmentSize];
  if (seg === undefined || !DECIMAL.test(seg)) bad(ENC_META.segmentSize);
  const segmentSize = Number(seg);
  try {
    checkSegmentSize(segmentSize);
  } catch {
    bad(ENC_META.segmentSize);
  }
  const size = metadata[ENC_META.plainSize];
  if (size !== undefined && (!DECIMAL.test(size) || !Number.isSafeInteger(Number(size)))) bad(ENC_META.plainSize);
  const header: EncryptionHeader = {
    version,
    keyId: keyId!,
    wrappedKey: Buffer.from(wrapped!, 'base64'),
    noncePrefix,
    segmentSize,
  };
  if (size !== undefined) header.plainSize = Number(size);
  const digest = metadata[ENC_META.digest];
  if (digest !== undefined) {
    if (!B64.test(digest)) bad(ENC_META.digest);
    header.sealedDigest = Buffer.from(digest, 'base64');
    if (header.sealedDigest.byteLength !== 32 + TAG_BYTES) bad(ENC_META.digest);
  }
  return header;
}

/**
 * `base` (user metadata, or stored metadata being rewritten) with `header` in place of any
 * header it had and without `cloudmux_sha256` (the inner store's to write), checked against the
 * reserved budget and marked as cloudmux's own for the inner store.
 */
export function metadataWithHeader(base: Record<string, string>, header: EncryptionHeader, where: { provider: string; key: string }): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (!isEncryptionMetaName(k) && k !== SHA256_KEY) out[k] = v;
  const h = headerToMetadata(header);
  let reserved = SHA256_KEY.length + 64;
  for (const [k, v] of Object.entries(h)) reserved += k.length + v.length;
  if (reserved > RESERVED_METADATA_BYTES) {
    throw new InvalidArgumentError(`encryption header needs ${reserved} bytes of metadata; cloudmux reserves ${RESERVED_METADATA_BYTES} (is the wrapped key from the keyring too large?)`, where);
  }
  return systemMetadata(Object.assign(out, h));
}

/** The plaintext view of an inner object: plaintext size and digest, header hidden. */
export function plaintextMeta(meta: ObjectMeta, size: number, sha256: string | undefined): ObjectMeta {
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta.metadata)) if (!isEncryptionMetaName(k) && k !== SHA256_KEY) metadata[k] = v;
  if (sha256) metadata[SHA256_KEY] = sha256;
  return {
    key: meta.key,
    size,
    etag: meta.etag,
    ...(meta.version !== undefined ? { version: meta.version } : {}),
    lastModified: meta.lastModified,
    ...(meta.contentType !== undefined ? { contentType: meta.contentType } : {}),
    metadata,
    checksums: sha256 ? { sha256 } : {},
  };
}
