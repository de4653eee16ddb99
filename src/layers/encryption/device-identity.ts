import {
  createCipheriv, createDecipheriv, createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, scrypt,
  type KeyObject,
} from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { AuthFailedError, CloudmuxError, IntegrityError, InvalidArgumentError, InvalidConfigError } from '../../core/errors.js';
import { redactInspection } from '../../core/redact.js';
import { kmsCall, type KmsClient } from './keyring.js';

/**
 * Device identities (docs/encryption-format.md, "Device identities"): each device holds an
 * encryption key pair (X25519 by default, RSA-OAEP-4096 where a rule asks for RSA) that vault keys
 * are wrapped to, and an Ed25519 key pair that signs the membership records it approves. The
 * public half is shared for approval and named by its fingerprint; the private half is kept in an
 * identity file sealed under a passphrase (scrypt) or a KMS key.
 */

export type DeviceKind = 'x25519' | 'rsa-oaep-4096';
export const DEVICE_KINDS: readonly DeviceKind[] = ['x25519', 'rsa-oaep-4096'];

/** What a device shares: enough to wrap a key to it and to check its signatures. */
export interface DevicePublic {
  name: string;
  kind: DeviceKind;
  /** Encryption public key, SPKI DER. */
  enc: Buffer;
  /** Ed25519 signing public key, SPKI DER. */
  sig: Buffer;
}

export const DEVICE_NAME_PATTERN = /^[A-Za-z0-9._@-]{1,64}$/;
const PUBLIC_FORMAT = 'cloudmux-device';
const IDENTITY_FORMAT = 'cloudmux-device-identity';
const FINGERPRINT_LABEL = Buffer.from('cloudmux-device v1\0', 'ascii');
const SEAL_LABEL = 'cloudmux-device-identity v1';

/** scrypt parameters written by default (about 128 MiB and a fraction of a second), and the most a file may ask for. */
export const DEFAULT_SCRYPT = { N: 2 ** 17, r: 8, p: 1 } as const;
const MAX_SCRYPT_LOG_N = 20;
const MAX_SCRYPT_MEM = 1024 * 1024 * 1024;

export interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/** SHA-256 over the device's kind and both public keys; the vault names devices by its hex. */
export function deviceId(pub: DevicePublic): string {
  const kind = Buffer.from(pub.kind, 'ascii');
  return createHash('sha256')
    .update(FINGERPRINT_LABEL).update(u16(kind.length)).update(kind)
    .update(u16(pub.enc.length)).update(pub.enc)
    .update(u16(pub.sig.length)).update(pub.sig)
    .digest('hex');
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/**
 * The short fingerprint people compare when approving a device: the first 80 bits of its id in
 * Crockford base32, four groups of four (`7QK2-M9ZD-0H4R-XW3B`).
 */
export function shortFingerprint(idHex: string): string {
  const bytes = Buffer.from(idHex.slice(0, 20), 'hex');
  let bits = 0;
  let acc = 0;
  let out = '';
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += CROCKFORD[(acc >> (bits - 5)) & 31];
      bits -= 5;
    }
    acc &= (1 << bits) - 1;
  }
  return out.match(/.{4}/g)!.join('-');
}

/** Accepts a fingerprint as people type it: any case, with or without dashes or spaces, I/L for 1, O for 0. */
export function normalizeFingerprint(s: string): string {
  return s.toUpperCase().replace(/[\s-]/g, '').replace(/[IL]/g, '1').replace(/O/g, '0');
}

/** Public-identity JSON (what `cloudmux keys device new` writes beside the identity, to hand to an approver). */
export function publicToJson(pub: DevicePublic): Record<string, unknown> {
  return { format: PUBLIC_FORMAT, v: 1, name: pub.name, kind: pub.kind, enc: pub.enc.toString('base64'), sig: pub.sig.toString('base64') };
}

/** Parses and checks a public identity (keys of the declared kind and size). InvalidArgument when it is not one. */
export function publicFromJson(value: unknown, source = 'device public key'): DevicePublic {
  const bad = (what: string): never => {
    throw new InvalidArgumentError(`${source}: ${what}`);
  };
  if (value === null || typeof value !== 'object' || Array.isArray(value)) bad('not a JSON object');
  const o = value as Record<string, unknown>;
  if (o.format !== PUBLIC_FORMAT || o.v !== 1) bad(`not a ${PUBLIC_FORMAT} v1 document`);
  if (typeof o.name !== 'string' || !DEVICE_NAME_PATTERN.test(o.name)) bad(`name must match ${DEVICE_NAME_PATTERN.source}`);
  if (typeof o.kind !== 'string' || !DEVICE_KINDS.includes(o.kind as DeviceKind)) bad(`kind must be one of ${DEVICE_KINDS.join(', ')}`);
  if (typeof o.enc !== 'string' || typeof o.sig !== 'string') bad('enc and sig must be base64 strings');
  const pub: DevicePublic = { name: o.name as string, kind: o.kind as DeviceKind, enc: Buffer.from(o.enc as string, 'base64'), sig: Buffer.from(o.sig as string, 'base64') };
  checkPublicKeys(pub, bad);
  return pub;
}

function checkPublicKeys(pub: DevicePublic, bad: (what: string) => never): void {
  let enc: KeyObject;
  let sig: KeyObject;
  try {
    enc = createPublicKey({ key: pub.enc, format: 'der', type: 'spki' });
    sig = createPublicKey({ key: pub.sig, format: 'der', type: 'spki' });
  } catch {
    return bad('a public key does not parse');
  }
  if (sig.asymmetricKeyType !== 'ed25519') bad('the signing key must be Ed25519');
  if (pub.kind === 'x25519' && enc.asymmetricKeyType !== 'x25519') bad('the encryption key is not X25519');
  if (pub.kind === 'rsa-oaep-4096' && (enc.asymmetricKeyType !== 'rsa' || enc.asymmetricKeyDetails?.modulusLength !== 4096)) {
    bad('the encryption key is not a 4096-bit RSA key');
  }
}

/** The public encryption key as a KeyObject (for wrapping to the device). */
export function encryptionKey(pub: DevicePublic): KeyObject {
  return createPublicKey({ key: pub.enc, format: 'der', type: 'spki' });
}

export function signingKey(pub: DevicePublic): KeyObject {
  return createPublicKey({ key: pub.sig, format: 'der', type: 'spki' });
}

/**
 * A device's key pairs in memory. Private keys never appear in `toString`, `inspect` or JSON.
 */
export class DeviceIdentity {
  readonly public: DevicePublic;
  readonly id: string;
  readonly #encPrivate: KeyObject;
  readonly #sigPrivate: KeyObject;

  constructor(pub: DevicePublic, encPrivate: KeyObject, sigPrivate: KeyObject) {
    if (!createPublicKey(encPrivate).export({ type: 'spki', format: 'der' }).equals(pub.enc)
      || !createPublicKey(sigPrivate).export({ type: 'spki', format: 'der' }).equals(pub.sig)) {
      throw new IntegrityError('identity: the private keys do not belong to the public identity');
    }
    this.public = pub;
    this.id = deviceId(pub);
    this.#encPrivate = encPrivate;
    this.#sigPrivate = sigPrivate;
  }

  /** A fresh identity, generated locally (RSA-4096 takes seconds). */
  static generate(name: string, kind: DeviceKind = 'x25519'): DeviceIdentity {
    if (!DEVICE_NAME_PATTERN.test(name)) throw new InvalidArgumentError(`device name ${JSON.stringify(name.slice(0, 80))} must match ${DEVICE_NAME_PATTERN.source}`);
    if (!DEVICE_KINDS.includes(kind)) throw new InvalidArgumentError(`device kind must be one of ${DEVICE_KINDS.join(', ')}, got ${JSON.stringify(String(kind).slice(0, 40))}`);
    const enc = kind === 'x25519' ? generateKeyPairSync('x25519') : generateKeyPairSync('rsa', { modulusLength: 4096 });
    const sig = generateKeyPairSync('ed25519');
    const pub: DevicePublic = {
      name, kind,
      enc: enc.publicKey.export({ type: 'spki', format: 'der' }),
      sig: sig.publicKey.export({ type: 'spki', format: 'der' }),
    };
    return new DeviceIdentity(pub, enc.privateKey, sig.privateKey);
  }

  get fingerprint(): string {
    return shortFingerprint(this.id);
  }

  /** The encryption private key: for the recipient-wrap module only. */
  encryptionPrivateKey(): KeyObject {
    return this.#encPrivate;
  }

  signingPrivateKey(): KeyObject {
    return this.#sigPrivate;
  }

  /**
   * The identity file, private keys sealed with AES-256-GCM under a file key from scrypt(passphrase)
   * or from a KMS (`{ kms, keyId }`), bound to the public identity as additional data.
   */
  async seal(protection: { passphrase: string; scrypt?: ScryptParams } | { kms: KmsClient; keyId: string }): Promise<string> {
    const secret = Buffer.from(JSON.stringify({
      enc: this.#encPrivate.export({ type: 'pkcs8', format: 'der' }).toString('base64'),
      sig: this.#sigPrivate.export({ type: 'pkcs8', format: 'der' }).toString('base64'),
    }), 'utf8');
    let fileKey: Buffer;
    let prot: Record<string, unknown>;
    if ('passphrase' in protection) {
      if (typeof protection.passphrase !== 'string' || protection.passphrase.length === 0) throw new InvalidArgumentError('identity: the passphrase must not be empty');
      const params = protection.scrypt ?? DEFAULT_SCRYPT;
      checkScrypt(params, (m) => new InvalidArgumentError(m));
      const salt = randomBytes(16);
      fileKey = await scryptKey(protection.passphrase, salt, params);
      prot = { type: 'scrypt', N: params.N, r: params.r, p: params.p, salt: salt.toString('base64') };
    } else {
      fileKey = randomBytes(32);
      const wrapped = await kmsCall(() => protection.kms.encrypt(protection.keyId, fileKey, { cloudmux_device: this.id }));
      prot = { type: 'kms', keyId: protection.keyId, wrappedKey: Buffer.from(wrapped).toString('base64') };
    }
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', fileKey, nonce);
    c.setAAD(sealAad(this.id));
    const sealed = Buffer.concat([c.update(secret), c.final(), c.getAuthTag()]);
    secret.fill(0);
    fileKey.fill(0);
    return `${JSON.stringify({ format: IDENTITY_FORMAT, v: 1, public: publicToJson(this.public), protection: prot, nonce: nonce.toString('base64'), sealed: sealed.toString('base64') }, null, 2)}\n`;
  }

  /**
   * Opens an identity file's text. Errors: InvalidConfig (not an identity file, or unsafe scrypt
   * parameters), AuthFailed (wrong passphrase or an altered file), what the KMS throws.
   */
  static async open(text: string, unlock: { passphrase?: string; kms?: KmsClient }, source = 'identity file'): Promise<DeviceIdentity> {
    const bad = (what: string): never => {
      throw new InvalidConfigError(`${source}: ${what}`);
    };
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return bad('not valid JSON');
    }
    if (o === null || typeof o !== 'object' || o.format !== IDENTITY_FORMAT || o.v !== 1) bad(`not a ${IDENTITY_FORMAT} v1 file`);
    let pub: DevicePublic;
    try {
      pub = publicFromJson(o.public, `${source}: public identity`);
    } catch (e) {
      return bad((e as Error).message);
    }
    const id = deviceId(pub);
    const prot = o.protection as Record<string, unknown> | undefined;
    if (typeof o.nonce !== 'string' || typeof o.sealed !== 'string' || !prot || typeof prot !== 'object') bad('protection, nonce or sealed missing');
    let fileKey: Buffer;
    if (prot!.type === 'scrypt') {
      const params = { N: prot!.N as number, r: prot!.r as number, p: prot!.p as number };
      checkScrypt(params, (m) => new InvalidConfigError(`${source}: ${m}`));
      if (typeof prot!.salt !== 'string') bad('scrypt salt missing');
      if (unlock.passphrase === undefined) throw new AuthFailedError(`${source} is protected by a passphrase; none was given`);
      fileKey = await scryptKey(unlock.passphrase, Buffer.from(prot!.salt as string, 'base64'), params);
    } else if (prot!.type === 'kms') {
      if (!unlock.kms) throw new InvalidConfigError(`${source} is protected by KMS key ${String(prot!.keyId)}; no KMS client was given`);
      if (typeof prot!.keyId !== 'string' || typeof prot!.wrappedKey !== 'string') bad('kms keyId or wrappedKey missing');
      fileKey = Buffer.from(await kmsCall(() => unlock.kms!.decrypt(prot!.keyId as string, Buffer.from(prot!.wrappedKey as string, 'base64'), { cloudmux_device: id })));
    } else {
      return bad(`unknown protection ${JSON.stringify(String(prot!.type).slice(0, 40))}`);
    }
    let secret: { enc: string; sig: string };
    try {
      const sealed = Buffer.from(o.sealed as string, 'base64');
      const d = createDecipheriv('aes-256-gcm', fileKey, Buffer.from(o.nonce as string, 'base64'));
      d.setAAD(sealAad(id));
      d.setAuthTag(sealed.subarray(sealed.length - 16));
      secret = JSON.parse(Buffer.concat([d.update(sealed.subarray(0, sealed.length - 16)), d.final()]).toString('utf8')) as { enc: string; sig: string };
    } catch {
      throw new AuthFailedError(`${source}: wrong passphrase or key, or the file was altered`);
    } finally {
      fileKey.fill(0);
    }
    const encPrivate = createPrivateKey({ key: Buffer.from(secret.enc, 'base64'), format: 'der', type: 'pkcs8' });
    const sigPrivate = createPrivateKey({ key: Buffer.from(secret.sig, 'base64'), format: 'der', type: 'pkcs8' });
    return new DeviceIdentity(pub, encPrivate, sigPrivate);
  }

  /** Reads and opens an identity file; a missing file is InvalidConfig naming the path. */
  static async load(path: string, unlock: { passphrase?: string; kms?: KmsClient }): Promise<DeviceIdentity> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'error';
      throw new InvalidConfigError(code === 'ENOENT'
        ? `identity file ${path} does not exist (create one with \`cloudmux keys device new\`)`
        : `cannot read identity file ${path}: ${code}`);
    }
    return DeviceIdentity.open(text, unlock, `identity file ${path}`);
  }

  toString(): string {
    return `DeviceIdentity(${this.public.name} ${this.fingerprint} ${this.public.kind})`;
  }
}
redactInspection(DeviceIdentity);

function sealAad(id: string): Buffer {
  return Buffer.concat([Buffer.from(SEAL_LABEL, 'ascii'), Buffer.from([0]), Buffer.from(id, 'hex')]);
}

function checkScrypt(p: ScryptParams, err: (m: string) => CloudmuxError): void {
  const ok = Number.isSafeInteger(p.N) && p.N >= 2 && (p.N & (p.N - 1)) === 0 && Math.log2(p.N) <= MAX_SCRYPT_LOG_N
    && Number.isSafeInteger(p.r) && p.r >= 1 && p.r <= 32 && Number.isSafeInteger(p.p) && p.p >= 1 && p.p <= 16
    && 128 * p.N * p.r <= MAX_SCRYPT_MEM;
  if (!ok) throw err(`scrypt parameters must be N a power of two up to 2^${MAX_SCRYPT_LOG_N}, r 1..32, p 1..16, memory ≤ 1 GiB`);
}

function scryptKey(passphrase: string, salt: Buffer, p: ScryptParams): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(passphrase.normalize('NFC'), salt, 32, { N: p.N, r: p.r, p: p.p, maxmem: 128 * p.N * p.r + 1024 * 1024 }, (e, key) => (e ? reject(new InvalidConfigError('scrypt failed', { cause: e })) : resolve(key)));
  });
}
