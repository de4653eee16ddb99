import type { Command } from 'commander';
import type { BlobStore } from '../core/types.js';
import { readFile } from 'node:fs/promises';
import { ChainKeyring, ENV_PREFIX, checkKeyId, loadKeyring, type Keyring } from '../layers/encryption/keyring.js';
import type { DeviceIdentity } from '../layers/encryption/device-identity.js';
import type { Vault } from '../layers/encryption/vault.js';
import type { EncryptedStore as EncryptedStoreClass } from '../layers/encryption/store.js';
import { redactUrl } from '../registry.js';
import { UsageError } from './errors.js';

/**
 * The client-side encryption flags of cp, cat, migrate and verify, and the one place that turns
 * them into EncryptedStore wrappers, so every command reads keys and reports key problems alike.
 *
 * Exit codes: a key problem known before any byte is written (no keyring, an `--encrypt-with` id
 * the keyring lacks, a `--decrypt` source that is not encrypted or needs a key id the keyring
 * lacks) is a UsageError, exit 2. A key that is present but does not open the data (another key
 * under the same id, altered metadata) is an IntegrityError from the read, exit 1.
 */
export interface EncryptionFlags {
  /** Key id new objects at the destination are encrypted under. */
  encryptWith?: string;
  /** Read the source side through decryption. */
  decrypt?: boolean;
  /** Key file (JSON of id → base64 key). Default: $CLOUDMUX_KEYRING; CLOUDMUX_KEY_<ID> variables are always read. */
  keyring?: string;
  /** This device's identity file: the store's vault becomes a keyring too (format v2). */
  identity?: string;
  /** File whose first line is the identity's passphrase (default $CLOUDMUX_PASSPHRASE). */
  passphraseFile?: string;
  /** Vault name within the store (default `default`). */
  vault?: string;
}

/** `--encrypt-with vault` with `--identity`: wrap new objects to the store's vault (format v2). */
export const VAULT_TARGET = 'vault';
export const PASSPHRASE_ENV = 'CLOUDMUX_PASSPHRASE';

/** Environment variable naming the default key file. */
export const KEYRING_ENV = 'CLOUDMUX_KEYRING';

/**
 * A key id a decrypt-only wrapper is constructed with. Reads take the key id from each object's
 * header; a write through such a wrapper would need this id and fails with AccessDenied.
 */
const READ_ONLY_KEY_ID = 'cloudmux_decrypt_only';

const keyringHelp = `key file (JSON of key id → base64 key, as \`cloudmux keys generate\` prints); default $${KEYRING_ENV}; ${ENV_PREFIX}<ID> variables are read as well`;

/**
 * Registers the flags on a command. `encrypt` and `decrypt` are the help texts of
 * `--encrypt-with` and `--decrypt` (omit one to leave that flag out).
 */
export function addEncryptionOptions(cmd: Command, help: { encrypt?: string; decrypt?: string }): Command {
  if (help.encrypt) cmd.option('--encrypt-with <key-id>', help.encrypt);
  if (help.decrypt) cmd.option('--decrypt', help.decrypt);
  return cmd
    .option('--keyring <file>', keyringHelp)
    .option('--identity <file>', `this device's identity (\`cloudmux keys device new\`): objects of the store's vault decrypt, and \`--encrypt-with ${VAULT_TARGET}\` encrypts for it`)
    .option('--passphrase-file <file>', `file whose first line is the identity's passphrase (default $${PASSPHRASE_ENV})`)
    .option('--vault <name>', 'vault name within the store (default: default)');
}

/** The passphrase from `--passphrase-file` (first line) or $CLOUDMUX_PASSPHRASE; never echoed. */
export async function passphraseFor(flags: { passphraseFile?: string }, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (flags.passphraseFile) {
    let text: string;
    try {
      text = await readFile(flags.passphraseFile, 'utf8');
    } catch (e) {
      throw new UsageError(`--passphrase-file ${flags.passphraseFile}: cannot read it (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    const line = text.split(/\r?\n/)[0] ?? '';
    if (!line) throw new UsageError(`--passphrase-file ${flags.passphraseFile} is empty`);
    return line;
  }
  const p = env[PASSPHRASE_ENV];
  if (!p) throw new UsageError(`give the identity's passphrase with --passphrase-file <file> or $${PASSPHRASE_ENV}`);
  return p;
}

const identities = new WeakMap<object, Promise<DeviceIdentity>>();

/** This device's identity from `--identity`, opened once per flags object. */
export function identityFor(flags: { identity?: string; passphraseFile?: string }, env: NodeJS.ProcessEnv = process.env): Promise<DeviceIdentity> {
  let p = identities.get(flags);
  if (!p) {
    const file = flags.identity;
    if (!file) return Promise.reject(new UsageError('--identity <file> is required: this device\'s identity (from `cloudmux keys device new`)'));
    p = (async () => {
      const { DeviceIdentity } = await import('../layers/encryption/device-identity.js');
      return DeviceIdentity.load(file, { passphrase: await passphraseFor(flags, env) });
    })();
    identities.set(flags, p);
  }
  return p;
}

const vaults = new WeakMap<EncryptionFlags, WeakMap<BlobStore, Promise<Vault>>>();

/** The vault of `store` as `--identity` sees it (pins beside the identity file), opened once per flags and store. */
export function vaultFor(store: BlobStore, flags: EncryptionFlags, env: NodeJS.ProcessEnv = process.env): Promise<Vault> {
  let byStore = vaults.get(flags);
  if (!byStore) vaults.set(flags, (byStore = new WeakMap()));
  let v = byStore.get(store);
  if (!v) {
    v = (async () => {
      const identity = await identityFor(flags, env);
      const { Vault } = await import('../layers/encryption/vault.js');
      const { FileVaultPins } = await import('../layers/encryption/vault-pins.js');
      return Vault.open(store, { name: flags.vault, identity, pins: new FileVaultPins(`${flags.identity}.pins.json`) });
    })();
    byStore.set(store, v);
  }
  return v;
}

/** The keyring for objects of `store`: its vault first (with `--identity`), then the key file and variables. */
async function storeKeyring(store: BlobStore, flags: EncryptionFlags, env: NodeJS.ProcessEnv): Promise<Keyring> {
  const keyring = await keyringFor(flags, env);
  if (!flags.identity) return keyring;
  return new ChainKeyring([await vaultFor(store, flags, env), keyring]);
}

/** True when any flag asks for encryption or decryption. */
export function wantsEncryption(flags: EncryptionFlags): boolean {
  return flags.encryptWith !== undefined || flags.decrypt === true;
}

/** The encryption layer, loaded only when a flag asks for it. */
async function encryptedStore(): Promise<typeof EncryptedStoreClass> {
  return (await import('../layers/encryption/store.js')).EncryptedStore;
}

const keyrings = new WeakMap<EncryptionFlags, Promise<Keyring>>();

/** The keyring the flags name, loaded once per flags object. Unreadable or malformed key files are InvalidConfig (exit 2). */
export function keyringFor(flags: EncryptionFlags, env: NodeJS.ProcessEnv = process.env): Promise<Keyring> {
  let k = keyrings.get(flags);
  if (!k) {
    const file = flags.keyring ?? (env[KEYRING_ENV] || undefined);
    k = loadKeyring({ file, env });
    keyrings.set(flags, k);
  }
  return k;
}

function keySources(flags: EncryptionFlags, env: NodeJS.ProcessEnv): string {
  const file = flags.keyring ?? (env[KEYRING_ENV] || undefined);
  return `${file ? `key file ${file} and ` : ''}${ENV_PREFIX}* variables${file ? '' : ` (no --keyring given, ${KEYRING_ENV} unset)`}`;
}

/**
 * `store` wrapped so everything written to it is encrypted under `--encrypt-with` (and, as for
 * any EncryptedStore, everything read from it decrypted); `store` itself without the flag.
 * Checks before anything is written that the keyring holds the key.
 */
export async function encryptingStore(store: BlobStore, flags: EncryptionFlags, env: NodeJS.ProcessEnv = process.env): Promise<BlobStore> {
  const keyId = flags.encryptWith;
  if (keyId === undefined) return store;
  if (keyId === VAULT_TARGET && flags.identity) {
    const vault = await vaultFor(store, flags, env);
    await vault.writeKeyId(); // AccessDenied (exit 1) before anything is written if this device is not a member
    const { vaultStore } = await import('../layers/encryption/vault-store.js');
    return vaultStore(store, vault, { keyring: await keyringFor(flags, env) });
  }
  try {
    checkKeyId(keyId);
  } catch (e) {
    throw new UsageError(`--encrypt-with: ${(e as Error).message}`);
  }
  const keyring = await storeKeyring(store, flags, env);
  if (!(await keyring.has(keyId))) {
    throw new UsageError(`--encrypt-with ${keyId}: no such key in ${keySources(flags, env)}; create one with \`cloudmux keys generate --id ${keyId}\``);
  }
  const EncryptedStore = await encryptedStore();
  return new EncryptedStore(store, { keyring, keyId });
}

/**
 * `store` wrapped so reads decrypt (every object must carry an encryption header and a key id the
 * keyring holds); `store` itself without `--decrypt`.
 */
export async function decryptingStore(store: BlobStore, flags: EncryptionFlags, env: NodeJS.ProcessEnv = process.env): Promise<BlobStore> {
  if (!flags.decrypt) return store;
  const EncryptedStore = await encryptedStore();
  return new EncryptedStore(store, { keyring: await storeKeyring(store, flags, env), keyId: READ_ONLY_KEY_ID });
}

/**
 * Before anything is written: checks that object `key` of the raw (undecrypted) `store` can be
 * decrypted with the flags' keyring, i.e. it carries an encryption header whose key id the keyring
 * holds. Throws a UsageError naming `what` otherwise. NotFound and provider errors pass through.
 */
export async function checkDecryptable(store: BlobStore, key: string, what: string, flags: EncryptionFlags, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const meta = await store.head(key);
  const { parseHeader } = await import('../layers/encryption/header.js');
  // A malformed header is an IntegrityError from here: someone altered the metadata.
  const header = parseHeader(meta.metadata, { provider: store.provider, key });
  if (!header) throw new UsageError(`--decrypt: ${what} is not encrypted (no cloudmux_enc metadata); read it without --decrypt`);
  const keyring = await storeKeyring(store, flags, env);
  if (!(await keyring.has(header.keyId))) {
    throw new UsageError(`--decrypt: ${what} is encrypted with key id ${header.keyId}, which is not in ${keySources(flags, env)}`);
  }
}

/**
 * For a tree (migrate, verify): checks the first object of the raw `store` as
 * {@link checkDecryptable} does and, past that, opens its data key by reading its first byte, so
 * a keyring holding another key under the same id fails once (IntegrityError, exit 1) instead of
 * once per object. An empty tree passes.
 */
export async function checkTreeDecryptable(store: BlobStore, side: string, flags: EncryptionFlags, opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<void> {
  const env = opts.env ?? process.env;
  let first: string | undefined;
  try {
    for await (const item of store.list({ pageSize: 1, signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000) })) {
      if (item.type === 'object') first = item.key;
      break;
    }
  } catch {
    // An unreachable store is the migration preflight's to report, with its own message.
    return;
  }
  if (first === undefined) return;
  await checkDecryptable(store, first, `${side} object ${first}`, flags, env);
  // Not closed: closing a wrapper closes the store it wraps, which the caller still uses.
  const EncryptedStore = await encryptedStore();
  const reader = new EncryptedStore(store, { keyring: await storeKeyring(store, flags, env), keyId: READ_ONLY_KEY_ID });
  const meta = await reader.head(first);
  const { body } = await reader.get(first, meta.size > 0 ? { range: { offset: 0, length: 1 } } : {});
  for await (const _chunk of body) { /* authenticate the first segment */ }
}

/**
 * The store to read object `key` from for cp and cat: `store` itself without `--decrypt`, else a
 * decrypting wrapper, after {@link checkDecryptable} has vetted the object.
 */
export async function decryptingObjectStore(store: BlobStore, key: string, display: string, flags: EncryptionFlags, env: NodeJS.ProcessEnv = process.env): Promise<BlobStore> {
  if (!flags.decrypt) return store;
  await checkDecryptable(store, key, redactUrl(display), flags, env);
  return decryptingStore(store, flags, env);
}

/** One side of a tree command (migrate, verify): its store and printable name. */
export interface TreeSide {
  store: BlobStore;
  name: string;
}

/**
 * The destination side with `--encrypt-with` applied. The name changes too, so the default
 * migration journal of an encrypted run is not the one of a plaintext run between the same two.
 */
export async function encryptingSide(side: TreeSide, flags: EncryptionFlags, env: NodeJS.ProcessEnv = process.env): Promise<TreeSide> {
  if (flags.encryptWith === undefined) return side;
  return { store: await encryptingStore(side.store, flags, env), name: `Encrypted(${side.name})` };
}

/** A source side with `--decrypt` applied, after {@link checkTreeDecryptable}; `label` names it in errors (`<src>`). */
export async function decryptingSide(side: TreeSide, label: string, flags: EncryptionFlags, opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<TreeSide> {
  if (!flags.decrypt) return side;
  await checkTreeDecryptable(side.store, `${label} ${side.name}`, flags, opts);
  return { store: await decryptingStore(side.store, flags, opts.env ?? process.env), name: `Encrypted(${side.name})` };
}
