import { createHash, sign, verify } from 'node:crypto';
import { IntegrityError } from '../../core/errors.js';
import { deviceId, publicFromJson, publicToJson, shortFingerprint, signingKey, type DeviceIdentity, type DevicePublic } from './device-identity.js';

/**
 * Membership records (docs/encryption-format.md, "Vaults"): a vault's history is a hash chain of
 * small signed records, record `seq` stored at `<prefix><name>/<seq, 10 digits>.json`. Record 0
 * founds the vault (signed by its founder); every later one names the hash of its predecessor and
 * is signed by a full member of that predecessor — the chain of custody. A record is complete:
 * the members of the vault after it, the epoch's vault public key, and the epoch's vault private
 * key wrapped to each full member. This module is pure: parsing, signing and chain rules, no I/O.
 */

export type MemberRole = 'full' | 'write-only';
export type ChangeOp = 'init' | 'approve' | 'revoke';

export interface MemberEntry {
  /** Device id: hex SHA-256 of the device's public identity. */
  device: string;
  name: string;
  kind: DevicePublic['kind'];
  role: MemberRole;
  /** Device public keys, base64 SPKI. */
  enc: string;
  sig: string;
  /** This epoch's vault private key wrapped to the device (full members only), base64. */
  wrapped?: string;
}

export interface MembershipRecord {
  format: 'cloudmux-vault-record';
  v: 1;
  /** 32 hex digits, random at init. */
  vault: string;
  name: string;
  seq: number;
  /** Hex SHA-256 of the previous record's text; null for record 0. */
  prev: string | null;
  epoch: number;
  /** This epoch's vault X25519 public key, raw 32 bytes in base64. */
  vaultKey: string;
  members: MemberEntry[];
  /** In the record that starts an epoch: the previous epoch's private key sealed under this epoch's key. */
  history?: { epoch: number; sealed: string };
  change: { op: ChangeOp; device: string };
  /** Device id of the member who signed. */
  signer: string;
  /** ISO time of signing (informational: nothing trusts a clock). */
  at: string;
}

/** A record as read: its exact text (what was signed and hashed) and its parsed form. */
export interface VerifiedRecord {
  record: MembershipRecord;
  text: string;
  /** Hex SHA-256 of `text`. */
  hash: string;
}

const RECORD_FORMAT = 'cloudmux-vault-record';
const SIGN_LABEL = Buffer.from('cloudmux-vault-record v1\0', 'ascii');
export const VAULT_ID_PATTERN = /^[0-9a-f]{32}$/;
export const VAULT_NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const HEX64 = /^[0-9a-f]{64}$/;

export function recordHash(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

export function memberEntry(pub: DevicePublic, role: MemberRole, wrapped?: Buffer): MemberEntry {
  const j = publicToJson(pub) as { enc: string; sig: string };
  const e: MemberEntry = { device: deviceId(pub), name: pub.name, kind: pub.kind, role, enc: j.enc, sig: j.sig };
  if (wrapped) e.wrapped = wrapped.toString('base64');
  return e;
}

export function memberPublic(m: MemberEntry): DevicePublic {
  return publicFromJson({ format: 'cloudmux-device', v: 1, name: m.name, kind: m.kind, enc: m.enc, sig: m.sig }, `member ${m.device.slice(0, 16)}`);
}

/** The stored form: `{ "record": <exact text>, "ed25519": <base64 signature> }`. */
export function signRecord(record: MembershipRecord, signer: DeviceIdentity): string {
  if (record.signer !== signer.id) throw new IntegrityError('record signer is not the signing identity');
  const text = JSON.stringify(record);
  const signature = sign(null, Buffer.concat([SIGN_LABEL, Buffer.from(text, 'utf8')]), signer.signingPrivateKey());
  return `${JSON.stringify({ record: text, ed25519: signature.toString('base64') })}\n`;
}

function fail(seq: number, what: string): never {
  throw new IntegrityError(`vault membership record ${seq}: ${what}`, { provider: 'vault' });
}

/** Parses a stored record (shape only; signature and chain are checked by {@link verifyChain}). */
export function parseStoredRecord(stored: string, position: number): { text: string; record: MembershipRecord; signature: Buffer } {
  let env: { record?: unknown; ed25519?: unknown };
  let record: MembershipRecord;
  try {
    env = JSON.parse(stored) as typeof env;
    if (typeof env.record !== 'string' || typeof env.ed25519 !== 'string') throw new Error('shape');
    record = JSON.parse(env.record) as MembershipRecord;
  } catch {
    return fail(position, 'not a signed record');
  }
  const r = record;
  const ok = r && r.format === RECORD_FORMAT && r.v === 1 && typeof r.vault === 'string' && VAULT_ID_PATTERN.test(r.vault)
    && typeof r.name === 'string' && VAULT_NAME_PATTERN.test(r.name) && Number.isSafeInteger(r.seq) && r.seq >= 0
    && (r.prev === null || (typeof r.prev === 'string' && HEX64.test(r.prev))) && Number.isSafeInteger(r.epoch) && r.epoch >= 0
    && typeof r.vaultKey === 'string' && Buffer.from(r.vaultKey, 'base64').byteLength === 32 && Array.isArray(r.members)
    && r.change && ['init', 'approve', 'revoke'].includes(r.change.op) && typeof r.change.device === 'string' && HEX64.test(r.change.device)
    && typeof r.signer === 'string' && HEX64.test(r.signer);
  if (!ok) fail(position, 'malformed');
  if (r.seq !== position) fail(position, `says it is record ${r.seq}: a record replayed or moved`);
  for (const m of r.members) {
    let pub: DevicePublic;
    try {
      pub = memberPublic(m);
    } catch {
      return fail(position, 'a member entry is malformed');
    }
    if (deviceId(pub) !== m.device) fail(position, `member ${m.device.slice(0, 16)}'s id does not match its keys`);
    if (m.role !== 'full' && m.role !== 'write-only') fail(position, 'a member has an unknown role');
    if ((m.role === 'full') !== (typeof m.wrapped === 'string')) fail(position, 'full members (only) carry a wrapped vault key');
  }
  if (new Set(r.members.map((m) => m.device)).size !== r.members.length) fail(position, 'a device is listed twice');
  if (!r.members.some((m) => m.role === 'full')) fail(position, 'no full member left');
  return { text: env.record as string, record: r, signature: Buffer.from(env.ed25519 as string, 'base64') };
}

function verifySignature(position: number, text: string, signature: Buffer, signer: MemberEntry | undefined): void {
  if (!signer || signer.role !== 'full') fail(position, 'signed by a device that was not a full member: no chain of custody');
  const ok = verify(null, Buffer.concat([SIGN_LABEL, Buffer.from(text, 'utf8')]), signingKey(memberPublic(signer)), signature);
  if (!ok) fail(position, `signature by ${shortFingerprint(signer.device)} does not verify: the record was altered`);
}

/** Checks a change against the previous record: exactly one device added (same epoch) or removed (next epoch). */
function checkTransition(prev: MembershipRecord, r: MembershipRecord): void {
  const before = new Set(prev.members.map((m) => m.device));
  const after = new Set(r.members.map((m) => m.device));
  const dev = r.change.device;
  if (r.vault !== prev.vault || r.name !== prev.name) fail(r.seq, 'belongs to another vault');
  if (r.change.op === 'approve') {
    if (before.has(dev) || !after.has(dev) || after.size !== before.size + 1 || ![...before].every((d) => after.has(d))) fail(r.seq, 'approval does not add exactly its device');
    if (r.epoch !== prev.epoch || r.vaultKey !== prev.vaultKey || r.history) fail(r.seq, 'approval changed the vault key');
    for (const m of prev.members) if (r.members.find((x) => x.device === m.device)!.role !== m.role) fail(r.seq, 'approval changed a role');
  } else if (r.change.op === 'revoke') {
    if (!before.has(dev) || after.has(dev) || after.size !== before.size - 1 || ![...after].every((d) => before.has(d))) fail(r.seq, 'revocation does not remove exactly its device');
    if (r.epoch !== prev.epoch + 1 || r.vaultKey === prev.vaultKey || r.history?.epoch !== prev.epoch) fail(r.seq, 'revocation did not start a new epoch');
  } else {
    fail(r.seq, 'only record 0 founds a vault');
  }
}

/** What a device remembers of a vault it has seen, to refuse a rolled-back or forked chain. */
export interface VaultPin {
  vault: string;
  genesis: string;
  seq: number;
  hash: string;
}

/**
 * Verifies a whole chain (records in seq order from 0) and returns it. Every failure is
 * IntegrityError naming the record: altered (signature), replayed or moved (seq, prev hash),
 * signed by a non-member, a change that is not one approval or revocation, or a chain shorter
 * than, or different from, what `pin` says this device has already seen (rollback, fork).
 */
export function verifyChain(stored: string[], pin?: VaultPin): VerifiedRecord[] {
  if (stored.length === 0) throw new IntegrityError('vault has no membership records', { provider: 'vault' });
  const out: VerifiedRecord[] = [];
  for (let i = 0; i < stored.length; i++) {
    const { text, record, signature } = parseStoredRecord(stored[i]!, i);
    if (i === 0) {
      if (record.prev !== null || record.epoch !== 0 || record.change.op !== 'init' || record.history || record.members.length !== 1
        || record.members[0]!.device !== record.signer || record.change.device !== record.signer) fail(0, 'is not a founding record');
      verifySignature(0, text, signature, record.members[0]);
    } else {
      const prev = out[i - 1]!;
      if (record.prev !== prev.hash) fail(i, 'does not follow the previous record (replayed, or the chain was forked)');
      verifySignature(i, text, signature, prev.record.members.find((m) => m.device === record.signer));
      checkTransition(prev.record, record);
    }
    out.push({ record, text, hash: recordHash(text) });
  }
  if (pin) {
    if (out[0]!.record.vault !== pin.vault || out[0]!.hash !== pin.genesis) throw new IntegrityError(`vault ${pin.vault} was replaced by another vault with the same name`, { provider: 'vault' });
    if (out.length <= pin.seq) throw new IntegrityError(`vault membership rolled back: this device has seen record ${pin.seq}, the store holds only up to ${out.length - 1} (a stale record replayed, or records deleted)`, { provider: 'vault' });
    if (out[pin.seq]!.hash !== pin.hash) throw new IntegrityError(`vault membership record ${pin.seq} differs from the one this device saw: the chain was forked`, { provider: 'vault' });
  }
  return out;
}
