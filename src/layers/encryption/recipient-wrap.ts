import {
  constants, createCipheriv, createDecipheriv, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, privateDecrypt, publicEncrypt,
  type KeyObject,
} from 'node:crypto';
import { IntegrityError, InvalidArgumentError } from '../../core/errors.js';
import { encryptionKey, type DeviceIdentity, type DevicePublic } from './device-identity.js';

/**
 * Public-key wrapping (docs/encryption-format.md, "Recipient wrapping"), two uses:
 * - a vault key to a member device: X25519 ECIES (ephemeral key, HKDF-SHA256, AES-256-GCM) or
 *   RSA-OAEP-SHA256 with the context as OAEP label;
 * - an object's DEK to a vault epoch's X25519 public key (format v2): ephemeral X25519, HKDF-SHA256,
 *   AES-256 key wrap — so anyone holding the public key (a write-only device) can wrap, and only
 *   holders of the epoch's private key can unwrap, not even the writer itself.
 * The context (what the key is bound to) goes into HKDF's info / the OAEP label: a wrapped key
 * moved to another device, epoch or object does not open.
 */

const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
const X25519_BYTES = 32;
const KW_IV = Buffer.from('a6a6a6a6a6a6a6a6', 'hex');
const ZERO_NONCE = Buffer.alloc(12);

/** Raw 32-byte X25519 public key of a KeyObject. */
export function rawX25519(pub: KeyObject): Buffer {
  const der = pub.export({ type: 'spki', format: 'der' });
  return der.subarray(der.length - X25519_BYTES);
}

export function x25519FromRaw(raw: Uint8Array): KeyObject {
  if (raw.byteLength !== X25519_BYTES) throw new IntegrityError('X25519 public key must be 32 bytes');
  return createPublicKey({ key: Buffer.concat([X25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

function ecdhKey(shared: Buffer, ephRaw: Buffer, recipientRaw: Buffer, info: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', shared, Buffer.concat([ephRaw, recipientRaw]), info, 32));
}

/** Wraps `secret` to a device's encryption key. */
export function wrapToDevice(device: DevicePublic, secret: Buffer, info: Buffer): Buffer {
  const key = encryptionKey(device);
  if (device.kind === 'rsa-oaep-4096') {
    return publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: info }, secret);
  }
  const eph = generateKeyPairSync('x25519');
  const ephRaw = rawX25519(eph.publicKey);
  const kek = ecdhKey(diffieHellman({ privateKey: eph.privateKey, publicKey: key }), ephRaw, rawX25519(key), info);
  // The key is fresh per wrap (ephemeral DH), so a fixed nonce is safe.
  const c = createCipheriv('aes-256-gcm', kek, ZERO_NONCE);
  c.setAAD(info);
  return Buffer.concat([ephRaw, c.update(secret), c.final(), c.getAuthTag()]);
}

/** Opens what {@link wrapToDevice} wrapped to this device under the same `info`; IntegrityError otherwise. */
export function unwrapFromDevice(identity: DeviceIdentity, wrapped: Buffer, info: Buffer): Buffer {
  const priv = identity.encryptionPrivateKey();
  try {
    if (identity.public.kind === 'rsa-oaep-4096') {
      return privateDecrypt({ key: priv, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: info }, wrapped);
    }
    if (wrapped.byteLength < X25519_BYTES + 16) throw new Error('short');
    const ephRaw = wrapped.subarray(0, X25519_BYTES);
    const shared = diffieHellman({ privateKey: priv, publicKey: x25519FromRaw(ephRaw) });
    const kek = ecdhKey(shared, ephRaw, rawX25519(createPublicKey(priv)), info);
    const d = createDecipheriv('aes-256-gcm', kek, ZERO_NONCE);
    d.setAAD(info);
    d.setAuthTag(wrapped.subarray(wrapped.length - 16));
    return Buffer.concat([d.update(wrapped.subarray(X25519_BYTES, wrapped.length - 16)), d.final()]);
  } catch {
    throw new IntegrityError(`the wrapped vault key does not open with device ${identity.toString()}: it was wrapped to another device or context, or altered`);
  }
}

/** Bytes of a DEK wrapped to a vault epoch: ephemeral X25519 public key || AES-KW(DEK). */
export const VAULT_WRAPPED_DEK_BYTES = X25519_BYTES + 40;

/** Wraps a 32-byte DEK to an X25519 public key (`recipientRaw`: its 32 raw bytes) under `info`. */
export function wrapToPublicKey(recipient: KeyObject, recipientRaw: Buffer, dek: Uint8Array, info: Buffer): Buffer {
  if (dek.byteLength !== 32) throw new InvalidArgumentError('a data key is 32 bytes');
  const eph = generateKeyPairSync('x25519');
  const ephRaw = rawX25519(eph.publicKey);
  const kwk = ecdhKey(diffieHellman({ privateKey: eph.privateKey, publicKey: recipient }), ephRaw, recipientRaw, info);
  const c = createCipheriv('id-aes256-wrap', kwk, KW_IV);
  return Buffer.concat([ephRaw, c.update(dek), c.final()]);
}

/** Opens {@link wrapToPublicKey}'s output with the matching private key; undefined when it does not open. */
export function unwrapWithPrivateKey(priv: KeyObject, recipientRaw: Buffer, wrapped: Uint8Array, info: Buffer): Buffer | undefined {
  if (wrapped.byteLength !== VAULT_WRAPPED_DEK_BYTES) return undefined;
  try {
    const ephRaw = Buffer.from(wrapped.subarray(0, X25519_BYTES));
    const kwk = ecdhKey(diffieHellman({ privateKey: priv, publicKey: x25519FromRaw(ephRaw) }), ephRaw, recipientRaw, info);
    const d = createDecipheriv('id-aes256-wrap', kwk, KW_IV);
    const dek = Buffer.concat([d.update(wrapped.subarray(X25519_BYTES)), d.final()]);
    return dek.byteLength === 32 ? dek : undefined;
  } catch {
    return undefined;
  }
}
