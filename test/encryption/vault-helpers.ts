import { collect } from '../../src/core/body.js';
import type { BlobStore } from '../../src/core/types.js';
import { MemoryStore } from '../../providers/memory/index.js';
import {
  DeviceIdentity, MemoryVaultPins, Vault, vaultStore, type DeviceKind, type EncryptedStore, type VaultPins,
} from '../../src/layers/encryption/index.js';

/** Cheap scrypt for tests (the format records it; production default is 2^17). */
export const TEST_SCRYPT = { N: 1024, r: 8, p: 1 };

export interface Device {
  identity: DeviceIdentity;
  pins: VaultPins;
  vault: Vault;
  store: EncryptedStore;
}

/** Opens `identity`'s view of the vault in `inner` (its own pins, its own Vault instance). */
export async function device(inner: BlobStore, identity: DeviceIdentity, pins: VaultPins = new MemoryVaultPins()): Promise<Device> {
  const vault = await Vault.open(inner, { identity, pins, refreshMs: 0 });
  return { identity, pins, vault, store: vaultStore(inner, vault, { segmentSize: 64 }) };
}

export async function text(store: BlobStore, key: string): Promise<string> {
  return (await collect((await store.get(key)).body)).toString('utf8');
}

export interface Trio {
  inner: BlobStore;
  a: Device;
  b: Device;
  w: Device;
}

/** A founds the vault, approves B (full, by fingerprint) and W (write-only). */
export async function trio(inner: BlobStore = new MemoryStore(), kindB: DeviceKind = 'x25519'): Promise<Trio> {
  const ia = DeviceIdentity.generate('laptop-a');
  const ib = DeviceIdentity.generate('phone-b', kindB);
  const iw = DeviceIdentity.generate('backup-w');
  const pinsA = new MemoryVaultPins();
  await Vault.init(inner, ia, { pins: pinsA });
  const a = await device(inner, ia, pinsA);
  await a.vault.approve(ib.public, { fingerprint: ib.fingerprint });
  await a.vault.approve(iw.public, { role: 'write-only', fingerprint: iw.fingerprint });
  return { inner, a, b: await device(inner, ib), w: await device(inner, iw) };
}

/** The stored text of membership record `seq` of vault `default`. */
export function recordKey(seq: number, name = 'default'): string {
  return `.cloudmux_vault/${name}/${String(seq).padStart(10, '0')}.json`;
}
