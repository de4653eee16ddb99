import { createHash, createHmac, hkdfSync, webcrypto } from 'node:crypto';
import { InvalidConfigError } from '../../core/errors.js';
import type { Keyring } from '../encryption/keyring.js';
import { checkKeyId } from '../encryption/keyring.js';
import { GEAR, keyedGear } from './chunker.js';
import type { ChunkIdAlgorithm } from './manifest.js';

/**
 * How a ChunkedStore names chunks and finds cut points. Plain: SHA-256 ids and the public gear
 * table. Keyed: HMAC-SHA-256 ids and a gear table derived from the same secret, so whoever holds
 * the stored bytes can neither test whether a known file is stored (its ids are unguessable) nor
 * match a known file's chunk sizes (its cut points depend on the key).
 */
export interface ChunkIdScheme {
  readonly algorithm: ChunkIdAlgorithm;
  /** For keyed ids: 16 hex digits identifying the key (not secret: HMAC of a fixed label). */
  readonly keyCheck?: string;
  readonly gear: Uint32Array;
  /** The id (64 hex digits) of a chunk given as parts. */
  id(parts: readonly Uint8Array[]): string;
  /**
   * The same id, computed off the main thread (WebCrypto runs digests in libuv's thread pool), so
   * a writer hashes chunks on another core while it cuts the next ones and hashes the whole.
   */
  idAsync(parts: readonly Uint8Array[]): Promise<string>;
  /** What a hashing worker needs to compute the same ids (the secret, for keyed ids). */
  workerIds(): { hmacKey?: Uint8Array };
}

/** One buffer of a chunk's parts (WebCrypto digests take one). */
function joined(parts: readonly Uint8Array[]): Uint8Array {
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

const hex = (b: ArrayBuffer): string => Buffer.from(b).toString('hex');

/** SHA-256 ids (SHA-NI makes it the fastest digest node:crypto has here; bench/chunking.ts). */
export const plainChunkIds: ChunkIdScheme = Object.freeze({
  algorithm: 'sha256' as const,
  gear: GEAR,
  id(parts: readonly Uint8Array[]): string {
    const h = createHash('sha256');
    for (const p of parts) h.update(p);
    return h.digest('hex');
  },
  async idAsync(parts: readonly Uint8Array[]): Promise<string> {
    return hex(await webcrypto.subtle.digest('SHA-256', joined(parts)));
  },
  workerIds: () => ({}),
});

/** Keyed ids under a 32-byte secret (see {@link chunkIdKeyFromKeyring}). */
export function keyedChunkIds(key: Uint8Array): ChunkIdScheme {
  if (key.byteLength !== 32) throw new InvalidConfigError(`a chunk id key is 32 bytes, not ${key.byteLength}`);
  const secret = Buffer.from(key);
  const keyCheck = createHmac('sha256', secret).update('cloudmux chunk-id key check v1').digest('hex').slice(0, 16);
  let cryptoKey: Promise<webcrypto.CryptoKey> | undefined;
  const scheme: ChunkIdScheme = {
    algorithm: 'hmac-sha256',
    keyCheck,
    gear: keyedGear(secret),
    id(parts: readonly Uint8Array[]): string {
      const h = createHmac('sha256', secret);
      for (const p of parts) h.update(p);
      return h.digest('hex');
    },
    async idAsync(parts: readonly Uint8Array[]): Promise<string> {
      cryptoKey ??= webcrypto.subtle.importKey('raw', secret, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
      return hex(await webcrypto.subtle.sign('HMAC', await cryptoKey, joined(parts)));
    },
    workerIds: () => ({ hmacKey: secret }),
  };
  // Keep the secret out of logs and inspection.
  Object.defineProperty(scheme, 'toString', { value: () => `keyed chunk ids (${keyCheck})`, enumerable: false });
  return Object.freeze(scheme);
}

const DERIVE_INPUT = createHash('sha256').update('cloudmux chunk-id key v1').digest();
const DERIVE_NONCE = createHash('sha256').update('cloudmux chunk-id nonce v1').digest().subarray(0, 7).toString('base64');

/**
 * The chunk-id key of a keyring's key `keyId`: the keyring wraps a fixed 32-byte value under a
 * fixed context and the result goes through HKDF-SHA-256 (salt "cloudmux-chunk-ids", info "v1").
 * Needs a keyring whose wrap is deterministic (LocalKeyring's AES key wrap is); with one that is
 * not, pass a key of your own instead. Errors: AccessDenied (the keyring lacks `keyId`).
 */
export async function chunkIdKeyFromKeyring(keyring: Keyring, keyId: string): Promise<Buffer> {
  checkKeyId(keyId);
  const wrapped = await keyring.wrap(keyId, DERIVE_INPUT, { formatVersion: 1, keyId, noncePrefix: DERIVE_NONCE });
  return Buffer.from(hkdfSync('sha256', wrapped, Buffer.from('cloudmux-chunk-ids'), Buffer.from('v1'), 32));
}
