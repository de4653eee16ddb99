import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { AccessDeniedError, CloudmuxError, IntegrityError, InvalidConfigError, ProviderError } from '../../core/errors.js';
import { redactInspection } from '../../core/redact.js';

/**
 * What a wrapped data key is bound to. A keyring must refuse to unwrap under a different context,
 * so a wrapped DEK relabelled with another key id or moved onto another object fails.
 */
export interface WrapContext {
  formatVersion: number;
  keyId: string;
  /** The object's nonce prefix, base64. */
  noncePrefix: string;
}

/**
 * Key-encryption keys addressed by id. Implementations keep key material out of every message,
 * `toString()`, `inspect` and JSON form.
 *
 * # Contract
 * - `wrap`/`unwrap` with an id the keyring does not hold: AccessDenied naming the id.
 * - `unwrap` of bytes not produced by `wrap` with the same id and context: IntegrityError.
 */
export interface Keyring {
  /** True when `keyId` can be used to wrap and unwrap. */
  has(keyId: string): Promise<boolean>;
  wrap(keyId: string, dek: Uint8Array, context: WrapContext): Promise<Uint8Array>;
  unwrap(keyId: string, wrapped: Uint8Array, context: WrapContext): Promise<Uint8Array>;
  toString(): string;
}

/** Key ids: usable verbatim in metadata, key files and `CLOUDMUX_KEY_<ID>` env var names. */
export const KEY_ID_PATTERN = /^[A-Za-z0-9_]{1,64}$/;
export const KEK_BYTES = 32;
export const ENV_PREFIX = 'CLOUDMUX_KEY_';

export function checkKeyId(keyId: string): void {
  if (typeof keyId !== 'string' || !KEY_ID_PATTERN.test(keyId)) {
    throw new InvalidConfigError(`key id ${JSON.stringify(String(keyId).slice(0, 80))} must match ${KEY_ID_PATTERN.source}`);
  }
}

function missingKey(keyId: string): CloudmuxError {
  return new AccessDeniedError(`key id ${keyId} is not in the keyring; cannot use objects encrypted with it`, { provider: 'keyring' });
}

// RFC 3394 default initial value.
const KW_IV = Buffer.from('a6a6a6a6a6a6a6a6', 'hex');

/**
 * Keys held in process memory (from a key file, env vars, or code). A DEK is wrapped with AES-256
 * key wrap (RFC 3394) under a key derived per object: HKDF-SHA256(KEK, salt = nonce prefix,
 * info = "cloudmux-enc v1 wrap" 0x00 keyId). Key wrap is deterministic and nonce-free, so a KEK can
 * wrap any number of DEKs; the derivation binds key id and object into the wrapped bytes.
 */
export class LocalKeyring implements Keyring {
  readonly #keys = new Map<string, Buffer>();

  /** `keys`: id → 32-byte key, as bytes or base64. */
  constructor(keys: Record<string, Uint8Array | string> | Map<string, Uint8Array | string> = {}, source = 'code') {
    const entries = keys instanceof Map ? [...keys.entries()] : Object.entries(keys);
    for (const [id, value] of entries) this.#keys.set(id, decodeKey(id, value, source));
  }

  /** Reads a key file: a JSON object of key id → base64 key (what `cloudmux keys generate` prints). */
  static async fromFile(path: string): Promise<LocalKeyring> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      throw new InvalidConfigError(`cannot read key file ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    return LocalKeyring.fromJson(text, `key file ${path}`);
  }

  /** Parses key-file text; `source` names it in errors. */
  static fromJson(text: string, source = 'key file'): LocalKeyring {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      // The parser's message quotes the text, which holds keys: say only where it broke.
      throw new InvalidConfigError(`${source} is not valid JSON`);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new InvalidConfigError(`${source} must be a JSON object of key id → base64 key`);
    }
    const keys: Record<string, string> = {};
    for (const [id, value] of Object.entries(parsed as Record<string, unknown>)) {
      if (typeof value !== 'string') throw new InvalidConfigError(`${source}: key ${JSON.stringify(id.slice(0, 80))} must be a base64 string`);
      keys[id] = value;
    }
    return new LocalKeyring(keys, source);
  }

  /** Keys from `CLOUDMUX_KEY_<ID>=<base64>` variables; the id is `<ID>` as written. */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): LocalKeyring {
    const keys: Record<string, string> = {};
    for (const [name, value] of Object.entries(env)) {
      if (name.startsWith(ENV_PREFIX) && value !== undefined) keys[name.slice(ENV_PREFIX.length)] = value;
    }
    return new LocalKeyring(keys, 'environment');
  }

  get keyIds(): string[] {
    return [...this.#keys.keys()];
  }

  async has(keyId: string): Promise<boolean> {
    return this.#keys.has(keyId);
  }

  async wrap(keyId: string, dek: Uint8Array, context: WrapContext): Promise<Uint8Array> {
    const c = createCipheriv('id-aes256-wrap', this.wrappingKey(keyId, context), KW_IV);
    return Buffer.concat([c.update(dek), c.final()]);
  }

  async unwrap(keyId: string, wrapped: Uint8Array, context: WrapContext): Promise<Uint8Array> {
    const kek = this.wrappingKey(keyId, context);
    try {
      const d = createDecipheriv('id-aes256-wrap', kek, KW_IV);
      const dek = Buffer.concat([d.update(wrapped), d.final()]);
      if (dek.byteLength !== 32) throw new Error('unwrapped key has the wrong length');
      return dek;
    } catch {
      throw new IntegrityError(`cannot unwrap the data key with key id ${keyId}: the keyring holds a different key under that id, or the object's encryption metadata was altered`, { provider: 'keyring' });
    }
  }

  toString(): string {
    return `LocalKeyring(${this.keyIds.join(', ')})`;
  }

  private wrappingKey(keyId: string, context: WrapContext): Buffer {
    const kek = this.#keys.get(keyId);
    if (!kek) throw missingKey(keyId);
    const info = Buffer.concat([Buffer.from(`cloudmux-enc v${context.formatVersion} wrap`, 'ascii'), Buffer.from([0]), Buffer.from(context.keyId, 'utf8')]);
    return Buffer.from(hkdfSync('sha256', kek, Buffer.from(context.noncePrefix, 'base64'), info, 32));
  }
}
redactInspection(LocalKeyring);

function decodeKey(id: string, value: Uint8Array | string, source: string): Buffer {
  if (!KEY_ID_PATTERN.test(id)) throw new InvalidConfigError(`${source}: key id ${JSON.stringify(id.slice(0, 80))} must match ${KEY_ID_PATTERN.source}`);
  let bytes: Buffer;
  if (typeof value === 'string') {
    const trimmed = value.trim();
    if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) throw new InvalidConfigError(`${source}: key ${id} is not base64`);
    bytes = Buffer.from(trimmed, 'base64');
  } else {
    bytes = Buffer.from(value);
  }
  if (bytes.byteLength !== KEK_BYTES) throw new InvalidConfigError(`${source}: key ${id} must be ${KEK_BYTES} bytes, got ${bytes.byteLength}`);
  return bytes;
}

/**
 * A key management service that wraps and unwraps small secrets under keys it never releases
 * (AWS KMS Encrypt/Decrypt with an encryption context, Google Cloud KMS with AAD, Azure Key Vault
 * wrapKey). Adapters map their SDK's failures into CloudmuxErrors (Throttled/Transient for what a
 * retry may cure, IntegrityError for a ciphertext the service rejects).
 */
export interface KmsClient {
  /** Key ids (as stored in object metadata) this client can use. */
  has(keyId: string): Promise<boolean>;
  encrypt(keyId: string, plaintext: Uint8Array, context: Record<string, string>): Promise<Uint8Array>;
  decrypt(keyId: string, ciphertext: Uint8Array, context: Record<string, string>): Promise<Uint8Array>;
  toString(): string;
}

/**
 * A keyring backed by a KMS: every wrap/unwrap is one service call, with the wrap context passed as
 * the service's encryption context (AAD). The wrapped DEK is the service's ciphertext blob, so it
 * must fit the metadata budget (see docs/encryption-format.md).
 */
export class KmsKeyring implements Keyring {
  constructor(private readonly client: KmsClient) {}

  has(keyId: string): Promise<boolean> {
    return this.client.has(keyId);
  }

  async wrap(keyId: string, dek: Uint8Array, context: WrapContext): Promise<Uint8Array> {
    if (!(await this.client.has(keyId))) throw missingKey(keyId);
    return kmsCall(() => this.client.encrypt(keyId, dek, kmsContext(context)));
  }

  async unwrap(keyId: string, wrapped: Uint8Array, context: WrapContext): Promise<Uint8Array> {
    if (!(await this.client.has(keyId))) throw missingKey(keyId);
    const dek = await kmsCall(() => this.client.decrypt(keyId, wrapped, kmsContext(context)));
    if (dek.byteLength !== 32) throw new IntegrityError(`KMS returned a ${dek.byteLength}-byte data key for key id ${keyId}`, { provider: 'kms' });
    return dek;
  }

  toString(): string {
    return `KmsKeyring(${this.client.toString()})`;
  }
}
redactInspection(KmsKeyring);

function kmsContext(c: WrapContext): Record<string, string> {
  return { cloudmux_enc: String(c.formatVersion), cloudmux_key_id: c.keyId, cloudmux_nonce: c.noncePrefix };
}

/** Several keyrings as one: each key id is served by the first keyring that has it. */
export class ChainKeyring implements Keyring {
  private readonly keyrings: Keyring[];

  constructor(keyrings: Keyring[]) {
    this.keyrings = keyrings;
  }

  async has(keyId: string): Promise<boolean> {
    return (await this.find(keyId)) !== undefined;
  }

  async wrap(keyId: string, dek: Uint8Array, context: WrapContext): Promise<Uint8Array> {
    const k = await this.find(keyId);
    if (!k) throw missingKey(keyId);
    return k.wrap(keyId, dek, context);
  }

  async unwrap(keyId: string, wrapped: Uint8Array, context: WrapContext): Promise<Uint8Array> {
    const k = await this.find(keyId);
    if (!k) throw missingKey(keyId);
    return k.unwrap(keyId, wrapped, context);
  }

  toString(): string {
    return `ChainKeyring(${this.keyrings.map(String).join(', ')})`;
  }

  private async find(keyId: string): Promise<Keyring | undefined> {
    for (const k of this.keyrings) if (await k.has(keyId)) return k;
    return undefined;
  }
}
redactInspection(ChainKeyring);

/**
 * The usual keyring of the CLI and daemon: a key file (if given) first, then `CLOUDMUX_KEY_*`
 * environment variables, then extra keyrings (e.g. a KmsKeyring).
 */
export async function loadKeyring(opts: { file?: string; env?: NodeJS.ProcessEnv; extra?: Keyring[] } = {}): Promise<Keyring> {
  const rings: Keyring[] = [];
  if (opts.file) rings.push(await LocalKeyring.fromFile(opts.file));
  rings.push(LocalKeyring.fromEnv(opts.env ?? process.env));
  rings.push(...(opts.extra ?? []));
  return rings.length === 1 ? rings[0]! : new ChainKeyring(rings);
}

/** A fresh 256-bit key-encryption key and an id for it (`k` + UTC date + random suffix). */
export function generateKey(id?: string): { id: string; key: string } {
  const keyId = id ?? `k${new Date().toISOString().slice(0, 10).replaceAll('-', '')}_${randomBytes(4).toString('hex')}`;
  checkKeyId(keyId);
  return { id: keyId, key: randomBytes(KEK_BYTES).toString('base64') };
}

/** Runs a KMS client call; its own failures become ProviderError (provider `kms`), cloudmux errors pass through. */
export async function kmsCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof CloudmuxError) throw e;
    throw new ProviderError('KMS call failed', { provider: 'kms', cause: e });
  }
}
