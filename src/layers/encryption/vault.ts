import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, generateKeyPairSync, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import { collect } from '../../core/body.js';
import {
  AccessDeniedError, AlreadyExistsError, IntegrityError, InvalidArgumentError, NotFoundError, PreconditionFailedError, isCloudmuxError,
} from '../../core/errors.js';
import { redactInspection } from '../../core/redact.js';
import type { BlobStore } from '../../core/types.js';
import { normalizeFingerprint, shortFingerprint, type DeviceIdentity, type DevicePublic, deviceId } from './device-identity.js';
import type { Keyring, WrapContext } from './keyring.js';
import {
  VAULT_NAME_PATTERN, memberEntry, signRecord, verifyChain,
  type MemberEntry, type MemberRole, type MembershipRecord, type VerifiedRecord,
} from './membership-record.js';
import { rawX25519, unwrapFromDevice, unwrapWithPrivateKey, wrapToDevice, wrapToPublicKey, x25519FromRaw } from './recipient-wrap.js';
import { MemoryVaultPins, type VaultPins } from './vault-pins.js';

/** Where membership records live in the store (hidden from EncryptedStore listings and rotation). */
export const VAULT_PREFIX = '.cloudmux_vault/';
/** Key ids of vault epochs as they appear in v2 object headers. */
export const VAULT_KEY_ID_PATTERN = /^v([0-9a-f]{32})_e(0|[1-9][0-9]{0,9})$/;
/** The object format that wraps DEKs to a vault epoch. */
export const VAULT_FORMAT_VERSION = 2;

export function vaultKeyId(vault: string, epoch: number): string {
  return `v${vault}_e${epoch}`;
}

export function isVaultKeyId(keyId: string): boolean {
  return VAULT_KEY_ID_PATTERN.test(keyId);
}

export interface VaultOptions {
  /** Vault name within the store (default `default`). */
  name?: string;
  /** This device. Without one the vault can be listed and verified, not used. */
  identity?: DeviceIdentity;
  /** What this device has seen before (default: in memory, for this process only). */
  pins?: VaultPins;
  /** Refuse any vault but this id (32 hex digits), e.g. the one printed by `keys vault init`. */
  vaultId?: string;
  /** A writer re-reads the membership at most this often before a put (default 30 s). */
  refreshMs?: number;
}

/** A member as shown to people: fingerprints, not raw keys. */
export interface VaultMember {
  id: string;
  fingerprint: string;
  name: string;
  kind: DevicePublic['kind'];
  role: MemberRole;
  /** Record that added the device, and the fingerprint of who signed it. */
  addedAt: number;
  addedBy: string;
}

const RECORD_NAME = /^(\d{10})\.json$/;
const MEMBER_WRAP_LABEL = 'cloudmux-vault v1 member';
const HISTORY_LABEL = 'cloudmux-vault v1 history';
const DEK_WRAP_LABEL = 'cloudmux-enc v2 wrap';

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function memberInfo(vault: string, epoch: number, device: string): Buffer {
  return Buffer.concat([Buffer.from(MEMBER_WRAP_LABEL, 'ascii'), Buffer.from([0]), Buffer.from(vault, 'hex'), u32(epoch), Buffer.from(device, 'hex')]);
}

function dekInfo(c: WrapContext): Buffer {
  return Buffer.concat([Buffer.from(DEK_WRAP_LABEL, 'ascii'), Buffer.from([0]), Buffer.from(c.keyId, 'ascii'), Buffer.from([0]), Buffer.from(c.noncePrefix, 'base64')]);
}

function historyKey(newer: KeyObject, vault: string, olderEpoch: number): Buffer {
  const ikm = newer.export({ type: 'pkcs8', format: 'der' });
  return Buffer.from(hkdfSync('sha256', ikm, Buffer.from(vault, 'hex'), Buffer.concat([Buffer.from(HISTORY_LABEL, 'ascii'), Buffer.from([0]), u32(olderEpoch)]), 32));
}

function pkcs8(k: KeyObject): Buffer {
  return k.export({ type: 'pkcs8', format: 'der' });
}

/**
 * A vault: the set of devices that share its keys, kept as signed membership records in the store
 * itself, and a {@link Keyring} for format-v2 objects. Objects' DEKs are wrapped to the current
 * epoch's X25519 public key (anyone in the vault can wrap); only full members hold the epoch's
 * private key, wrapped to their device key in the head record; write-only members hold nothing.
 * Revoking a device starts a new epoch; {@link rotateAll} to the new write key id then re-wraps
 * existing objects, metadata only.
 *
 * # Contract
 * - Every chain read is verified whole (signatures, hash links, one change per record) and against
 *   the device's pin: failures are IntegrityError, nothing is trusted half-way.
 * - A device that is not a member, is write-only (for unwrap), or was revoked: AccessDenied.
 * - approve/revoke append one record with create-only semantics; if another device appended
 *   first, the change is recomputed on the new head (up to 3 times), then PreconditionFailed.
 */
export class Vault implements Keyring {
  private chain: VerifiedRecord[];
  private readonly texts: string[];
  private readonly epochPrivate = new Map<number, KeyObject>();
  /** Epoch public keys as KeyObjects and raw bytes (parsed once, not per object). */
  private readonly epochPublic = new Map<number, { key: KeyObject; raw: Buffer }>();
  private lastRefresh = Date.now();
  private readonly refreshMs: number;
  private readonly identity: DeviceIdentity | undefined;
  private readonly pins: VaultPins;
  readonly name: string;

  private constructor(readonly store: BlobStore, texts: string[], chain: VerifiedRecord[], opts: VaultOptions) {
    this.texts = texts;
    this.chain = chain;
    this.name = opts.name ?? 'default';
    this.identity = opts.identity;
    this.pins = opts.pins ?? new MemoryVaultPins();
    this.refreshMs = opts.refreshMs ?? 30_000;
  }

  /** Founds a vault with `identity` as its only (full) member. AlreadyExists if the store has one by that name. */
  static async init(store: BlobStore, identity: DeviceIdentity, opts: Omit<VaultOptions, 'identity' | 'vaultId'> = {}): Promise<Vault> {
    const name = checkName(opts.name);
    if ((await listRecordKeys(store, name)).length > 0) throw new AlreadyExistsError(`vault ${name} already exists in ${store.toString()}`, { provider: 'vault' });
    const vault = randomBytes(16).toString('hex');
    const epochKey = generateKeyPairSync('x25519');
    const record: MembershipRecord = {
      format: 'cloudmux-vault-record', v: 1, vault, name, seq: 0, prev: null, epoch: 0,
      vaultKey: rawX25519(epochKey.publicKey).toString('base64'),
      members: [memberEntry(identity.public, 'full', wrapToDevice(identity.public, pkcs8(epochKey.privateKey), memberInfo(vault, 0, identity.id)))],
      change: { op: 'init', device: identity.id }, signer: identity.id, at: new Date().toISOString(),
    };
    const text = signRecord(record, identity);
    await putRecord(store, name, 0, text);
    return Vault.open(store, { ...opts, identity, name });
  }

  /** Reads and verifies a vault. NotFound when the store has none by that name. */
  static async open(store: BlobStore, opts: VaultOptions = {}): Promise<Vault> {
    const name = checkName(opts.name);
    const texts = await readRecords(store, name, []);
    if (texts.length === 0) throw new NotFoundError(`no vault ${name} in ${store.toString()} (create one with \`cloudmux keys vault init\`)`, { provider: 'vault', key: `${VAULT_PREFIX}${name}/` });
    const pins = opts.pins ?? new MemoryVaultPins();
    const chain = await verifyPinned(texts, pins, opts.vaultId);
    return new Vault(store, texts, chain, { ...opts, name, pins });
  }

  get id(): string {
    return this.chain[0]!.record.vault;
  }

  get head(): MembershipRecord {
    return this.chain[this.chain.length - 1]!.record;
  }

  get epoch(): number {
    return this.head.epoch;
  }

  /** The records as verified, oldest first. */
  get records(): readonly VerifiedRecord[] {
    return this.chain;
  }

  /** The key id new objects are wrapped under (the head epoch's). */
  get writeKeyIdNow(): string {
    return vaultKeyId(this.id, this.head.epoch);
  }

  members(): VaultMember[] {
    return this.head.members.map((m) => {
      const added = this.chain.find((r) => r.record.change.device === m.device && r.record.change.op !== 'revoke' && r.record.members.some((x) => x.device === m.device));
      return {
        id: m.device, fingerprint: shortFingerprint(m.device), name: m.name, kind: m.kind, role: m.role,
        addedAt: added?.record.seq ?? 0, addedBy: shortFingerprint(added?.record.signer ?? m.device),
      };
    });
  }

  /** Re-reads new records, verifies the chain, advances the pin. */
  async refresh(): Promise<void> {
    const texts = await readRecords(this.store, this.name, this.texts);
    this.chain = await verifyPinned(texts, this.pins, this.id);
    this.texts.splice(0, this.texts.length, ...texts);
    this.lastRefresh = Date.now();
  }

  /** The key id for a new object; re-reads the membership when older than `refreshMs`. AccessDenied for non-members. */
  async writeKeyId(): Promise<string> {
    if (Date.now() - this.lastRefresh >= this.refreshMs) await this.refresh();
    this.self('write to');
    return this.writeKeyIdNow;
  }

  /**
   * Adds a device. `fingerprint`, when given, must match the device's (what its owner read out);
   * otherwise nothing is written (InvalidArgument). AlreadyExists if it is a member.
   */
  async approve(device: DevicePublic, opts: { role?: MemberRole; fingerprint?: string } = {}): Promise<VerifiedRecord> {
    const id = deviceId(device);
    if (opts.fingerprint !== undefined && normalizeFingerprint(opts.fingerprint) !== normalizeFingerprint(shortFingerprint(id))) {
      throw new InvalidArgumentError(`fingerprint ${opts.fingerprint.slice(0, 40)} does not match the device's ${shortFingerprint(id)}; nothing was written`, { provider: 'vault' });
    }
    const role = opts.role ?? 'full';
    return this.append((head, priv) => {
      if (head.members.some((m) => m.device === id)) throw new AlreadyExistsError(`device ${shortFingerprint(id)} is already a member of vault ${this.name}`, { provider: 'vault' });
      const wrapped = role === 'full' ? wrapToDevice(device, pkcs8(priv), memberInfo(head.vault, head.epoch, id)) : undefined;
      return { members: [...head.members, memberEntry(device, role, wrapped)], change: { op: 'approve', device: id } };
    });
  }

  /**
   * Removes a device (by id or fingerprint) and starts a new epoch: a fresh vault key wrapped to the
   * remaining full members, the old one sealed under it so members keep reading older objects.
   * NotFound for a device that is not a member; InvalidArgument if no full member would remain.
   */
  async revoke(device: string): Promise<VerifiedRecord> {
    return this.append((head, priv) => {
      const target = findMember(head, device);
      if (!target) throw new NotFoundError(`no member of vault ${this.name} has fingerprint or id ${device.slice(0, 64)}; nothing was written`, { provider: 'vault' });
      const rest = head.members.filter((m) => m.device !== target.device);
      if (!rest.some((m) => m.role === 'full')) throw new InvalidArgumentError('revoking the last full member would lock the vault; nothing was written', { provider: 'vault' });
      const epoch = head.epoch + 1;
      const next = generateKeyPairSync('x25519');
      const members = rest.map((m): MemberEntry => {
        if (m.role !== 'full') return m;
        const pub: DevicePublic = { name: m.name, kind: m.kind, enc: Buffer.from(m.enc, 'base64'), sig: Buffer.from(m.sig, 'base64') };
        return { ...m, wrapped: wrapToDevice(pub, pkcs8(next.privateKey), memberInfo(head.vault, epoch, m.device)).toString('base64') };
      });
      const c = createCipheriv('aes-256-gcm', historyKey(next.privateKey, head.vault, head.epoch), Buffer.alloc(12));
      const sealed = Buffer.concat([c.update(pkcs8(priv)), c.final(), c.getAuthTag()]);
      return {
        members, epoch, vaultKey: rawX25519(next.publicKey).toString('base64'),
        history: { epoch: head.epoch, sealed: sealed.toString('base64') }, change: { op: 'revoke', device: target.device },
      };
    });
  }

  // --- Keyring --------------------------------------------------------------------------------

  async has(keyId: string): Promise<boolean> {
    const k = parseKeyId(keyId);
    if (!k || k.vault !== this.id) return false;
    if (k.epoch > this.head.epoch) await this.refresh();
    return k.epoch <= this.head.epoch;
  }

  async wrap(keyId: string, dek: Uint8Array, context: WrapContext): Promise<Uint8Array> {
    const epoch = this.epochOf(keyId, context);
    this.self('write to');
    if (epoch !== this.head.epoch) {
      // Re-wrapping onto an old epoch would hand the DEK to devices revoked since.
      throw new AccessDeniedError(`key ${keyId} is a past epoch of vault ${this.name}; new wraps go to epoch ${this.head.epoch}`, { provider: 'vault' });
    }
    const pub = this.publicKey(epoch);
    return wrapToPublicKey(pub.key, pub.raw, dek, dekInfo(context));
  }

  async unwrap(keyId: string, wrapped: Uint8Array, context: WrapContext): Promise<Uint8Array> {
    let epoch = this.epochOf(keyId, context);
    if (epoch > this.head.epoch) {
      await this.refresh();
      epoch = this.epochOf(keyId, context);
      if (epoch > this.head.epoch) throw new IntegrityError(`object is under epoch ${epoch} of vault ${this.name}, but its membership records end at epoch ${this.head.epoch} (records deleted or rolled back)`, { provider: 'vault' });
    }
    const priv = this.privateKey(epoch);
    const dek = unwrapWithPrivateKey(priv, this.publicKey(epoch).raw, wrapped, dekInfo(context));
    if (!dek) throw new IntegrityError(`cannot unwrap the data key with vault ${this.name} epoch ${epoch}: the object's encryption metadata was altered or moved from another object`, { provider: 'vault' });
    return dek;
  }

  toString(): string {
    return `Vault(${this.name} ${this.id.slice(0, 8)} epoch ${this.chain.length ? this.head.epoch : '?'}${this.identity ? ` as ${this.identity.fingerprint}` : ''})`;
  }

  // --------------------------------------------------------------------------------------------

  private epochOf(keyId: string, context: WrapContext): number {
    const k = parseKeyId(keyId);
    if (context.formatVersion !== VAULT_FORMAT_VERSION || context.keyId !== keyId || !k) {
      throw new IntegrityError(`key id ${keyId.slice(0, 64)} is not a vault key of encryption format v${VAULT_FORMAT_VERSION}`, { provider: 'vault' });
    }
    if (k.vault !== this.id) throw new AccessDeniedError(`object belongs to vault ${k.vault}, not to vault ${this.name} (${this.id})`, { provider: 'vault' });
    return k.epoch;
  }

  /** This device's entry in the head record; AccessDenied (naming why) when there is none. */
  private self(what: string): MemberEntry {
    if (!this.identity) throw new AccessDeniedError(`no device identity given: cannot ${what} vault ${this.name}`, { provider: 'vault' });
    const me = this.head.members.find((m) => m.device === this.identity!.id);
    if (me) return me;
    const revoked = [...this.chain].reverse().find((r) => r.record.change.op === 'revoke' && r.record.change.device === this.identity!.id);
    if (revoked) throw new AccessDeniedError(`device ${this.identity.fingerprint} was revoked from vault ${this.name} at record ${revoked.record.seq}: cannot ${what} it`, { provider: 'vault' });
    throw new AccessDeniedError(`device ${this.identity.fingerprint} is not a member of vault ${this.name}: cannot ${what} it (ask a member to approve it)`, { provider: 'vault' });
  }

  private publicKey(epoch: number): { key: KeyObject; raw: Buffer } {
    let pub = this.epochPublic.get(epoch);
    if (!pub) {
      const raw = Buffer.from(this.chain.find((r) => r.record.epoch === epoch)!.record.vaultKey, 'base64');
      pub = { key: x25519FromRaw(raw), raw };
      this.epochPublic.set(epoch, pub);
    }
    return pub;
  }

  /** The private key of `epoch`: from this device's wrap in the head record, older ones through the history seals. */
  private privateKey(epoch: number): KeyObject {
    const cached = this.epochPrivate.get(epoch);
    if (cached) return cached;
    const head = this.head;
    const me = this.self('read from');
    if (me.role !== 'full') throw new AccessDeniedError(`device ${this.identity!.fingerprint} is write-only in vault ${this.name}: it cannot decrypt`, { provider: 'vault' });
    let pk: Buffer;
    if (epoch === head.epoch) {
      pk = unwrapFromDevice(this.identity!, Buffer.from(me.wrapped!, 'base64'), memberInfo(head.vault, epoch, me.device));
    } else {
      const newer = this.privateKey(epoch + 1);
      const starter = this.chain.find((r) => r.record.epoch === epoch + 1)!.record;
      const sealed = Buffer.from(starter.history!.sealed, 'base64');
      try {
        const d = createDecipheriv('aes-256-gcm', historyKey(newer, head.vault, epoch), Buffer.alloc(12));
        d.setAuthTag(sealed.subarray(sealed.length - 16));
        pk = Buffer.concat([d.update(sealed.subarray(0, sealed.length - 16)), d.final()]);
      } catch {
        throw new IntegrityError(`vault ${this.name}: the sealed key of epoch ${epoch} does not open`, { provider: 'vault' });
      }
    }
    const priv = createPrivateKey({ key: pk, format: 'der', type: 'pkcs8' });
    const expected = this.chain.find((r) => r.record.epoch === epoch)!.record.vaultKey;
    if (priv.asymmetricKeyType !== 'x25519' || rawX25519(createPublicKey(priv)).toString('base64') !== expected) {
      throw new IntegrityError(`vault ${this.name}: the key of epoch ${epoch} does not match the vault's public key`, { provider: 'vault' });
    }
    this.epochPrivate.set(epoch, priv);
    return priv;
  }

  /** Signs and appends the record `change` makes of the head; recomputed if another device appended first. */
  private async append(change: (head: MembershipRecord, priv: KeyObject) => Partial<MembershipRecord>): Promise<VerifiedRecord> {
    for (let attempt = 1; ; attempt++) {
      await this.refresh();
      const me = this.self('change');
      if (me.role !== 'full') throw new AccessDeniedError(`device ${this.identity!.fingerprint} is write-only in vault ${this.name}: it cannot approve or revoke`, { provider: 'vault' });
      const head = this.head;
      const prev = this.chain[this.chain.length - 1]!;
      const record: MembershipRecord = {
        ...head, history: undefined, ...change(head, this.privateKey(head.epoch)),
        seq: head.seq + 1, prev: prev.hash, signer: this.identity!.id, at: new Date().toISOString(),
      } as MembershipRecord;
      if (record.history === undefined) delete record.history;
      const text = signRecord(record, this.identity!);
      try {
        await putRecord(this.store, this.name, record.seq, text);
      } catch (e) {
        if (attempt < 3 && isCloudmuxError(e, 'AlreadyExists')) continue;
        if (isCloudmuxError(e, 'AlreadyExists')) throw new PreconditionFailedError(`vault ${this.name} kept changing under this ${record.change.op}; try again`, { provider: 'vault', cause: e });
        throw e;
      }
      await this.refresh();
      return this.chain[record.seq]!;
    }
  }
}
redactInspection(Vault);

function checkName(name = 'default'): string {
  if (!VAULT_NAME_PATTERN.test(name)) throw new InvalidArgumentError(`vault name ${JSON.stringify(name.slice(0, 80))} must match ${VAULT_NAME_PATTERN.source}`);
  return name;
}

function parseKeyId(keyId: string): { vault: string; epoch: number } | undefined {
  const m = VAULT_KEY_ID_PATTERN.exec(keyId);
  return m ? { vault: m[1]!, epoch: Number(m[2]) } : undefined;
}

function findMember(head: MembershipRecord, device: string): MemberEntry | undefined {
  const lower = device.toLowerCase();
  const fp = normalizeFingerprint(device);
  return head.members.find((m) => m.device === lower || normalizeFingerprint(shortFingerprint(m.device)) === fp);
}

function recordKey(name: string, seq: number): string {
  return `${VAULT_PREFIX}${name}/${String(seq).padStart(10, '0')}.json`;
}

async function listRecordKeys(store: BlobStore, name: string): Promise<number[]> {
  const seqs: number[] = [];
  const prefix = `${VAULT_PREFIX}${name}/`;
  for await (const item of store.list({ prefix })) {
    if (item.type !== 'object') continue;
    const m = RECORD_NAME.exec(item.key.slice(prefix.length));
    if (m) seqs.push(Number(m[1]));
  }
  return seqs.sort((a, b) => a - b);
}

/** The stored texts of records 0…n, reusing `known` ones; a gap or a shorter chain is IntegrityError. */
async function readRecords(store: BlobStore, name: string, known: readonly string[]): Promise<string[]> {
  const seqs = await listRecordKeys(store, name);
  seqs.forEach((s, i) => {
    if (s !== i) throw new IntegrityError(`vault ${name}: membership record ${i} is missing`, { provider: 'vault' });
  });
  if (seqs.length < known.length) {
    throw new IntegrityError(`vault membership rolled back: this device has seen record ${known.length - 1}, the store holds only up to ${seqs.length - 1}`, { provider: 'vault' });
  }
  const texts = known.slice();
  for (let i = known.length; i < seqs.length; i++) {
    texts.push((await collect((await store.get(recordKey(name, i))).body)).toString('utf8'));
  }
  return texts;
}

async function verifyPinned(texts: string[], pins: VaultPins, vaultId?: string): Promise<VerifiedRecord[]> {
  const first = verifyChain(texts.slice(0, 1));
  const vault = first[0]!.record.vault;
  if (vaultId !== undefined && vault !== vaultId) throw new IntegrityError(`the store's vault is ${vault}, not the expected ${vaultId}`, { provider: 'vault' });
  const chain = verifyChain(texts, await pins.get(vault));
  const head = chain[chain.length - 1]!;
  await pins.set({ vault, genesis: chain[0]!.hash, seq: head.record.seq, hash: head.hash });
  return chain;
}

async function putRecord(store: BlobStore, name: string, seq: number, text: string): Promise<void> {
  const key = recordKey(name, seq);
  if (!store.capabilities.conditionalPut) {
    // Without create-only writes two approvers could race; the loser's record would replace the
    // winner's and fail verification for every reader (loud, not silent).
    try {
      await store.head(key);
      throw new AlreadyExistsError(`${key} exists`, { provider: store.provider, key });
    } catch (e) {
      if (!isCloudmuxError(e, 'NotFound')) throw e;
    }
    await store.put(key, text, { contentType: 'application/json' });
    return;
  }
  await store.put(key, text, { contentType: 'application/json', ifNoneMatch: '*' });
}
