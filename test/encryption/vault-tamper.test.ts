import { describe, expect, it } from 'vitest';
import { collect } from '../../src/core/body.js';
import { MemoryStore } from '../../providers/memory/index.js';
import type { BlobStore } from '../../src/core/types.js';
import { DeviceIdentity, ENC_META, MemoryVaultPins, Vault, vaultStore } from '../../src/layers/encryption/index.js';
import { raw, rewrite } from './helpers.js';
import { device, recordKey, text, trio } from './vault-helpers.js';

async function stored(inner: BlobStore, seq: number): Promise<{ record: string; ed25519: string }> {
  return JSON.parse((await collect((await inner.get(recordKey(seq))).body)).toString('utf8')) as { record: string; ed25519: string };
}

async function overwrite(inner: BlobStore, seq: number, env: { record: string; ed25519: string }): Promise<void> {
  await inner.put(recordKey(seq), `${JSON.stringify(env)}\n`);
}

describe('vault tampering: every altered, swapped or replayed record is refused', () => {
  it('an altered membership record (a role raised, signature kept) is IntegrityError for every reader', async () => {
    const { inner, a, w } = await trio();
    const env = await stored(inner, 2);
    const rec = JSON.parse(env.record) as { members: { role: string }[] };
    rec.members[2]!.role = 'full';
    await overwrite(inner, 2, { ...env, record: JSON.stringify(rec) });
    await expect(Vault.open(inner, { identity: w.identity })).rejects.toMatchObject({ code: 'IntegrityError' });
    // A's open instance verified record 2 when it read it; opening again re-reads and refuses.
    await expect(Vault.open(inner, { identity: a.identity, pins: a.pins })).rejects.toMatchObject({ code: 'IntegrityError', message: expect.stringMatching(/altered|wrapped/) });
  });

  it('a wrapped vault key swapped between two devices is refused (signature), and does not open anyway (context)', async () => {
    const { inner, a, b } = await trio();
    const env = await stored(inner, 2);
    const rec = JSON.parse(env.record) as { members: { wrapped?: string }[] };
    [rec.members[0]!.wrapped, rec.members[1]!.wrapped] = [rec.members[1]!.wrapped, rec.members[0]!.wrapped];
    await overwrite(inner, 2, { ...env, record: JSON.stringify(rec) });
    await expect(Vault.open(inner, { identity: b.identity })).rejects.toMatchObject({ code: 'IntegrityError', message: expect.stringContaining('altered') });
    // Even with the signature out of the way, B's key does not open what was wrapped to A.
    const { unwrapFromDevice } = await import('../../src/layers/encryption/recipient-wrap.js');
    const head = a.vault.head;
    const info = Buffer.concat([Buffer.from('cloudmux-vault v1 member\0', 'ascii'), Buffer.from(head.vault, 'hex'), Buffer.alloc(4), Buffer.from(b.identity.id, 'hex')]);
    expect(() => unwrapFromDevice(b.identity, Buffer.from(head.members[0]!.wrapped!, 'base64'), info)).toThrow(expect.objectContaining({ code: 'IntegrityError' }));
  });

  it("a revoked device's stale record replayed — in the head's place, as the next record, or by deleting the revocation — is refused", async () => {
    const { inner, a, b } = await trio();
    await a.vault.revoke(b.identity.fingerprint); // record 3, epoch 1
    const stale = await stored(inner, 2); // B was a member here
    const revocation = await stored(inner, 3);

    // 1. Replayed as the next record.
    await overwrite(inner, 4, stale);
    await expect(a.vault.refresh()).rejects.toMatchObject({ code: 'IntegrityError', message: expect.stringContaining('replayed') });
    await inner.delete(recordKey(4));

    // 2. Replayed in the revocation's place.
    await overwrite(inner, 3, stale);
    await expect(Vault.open(inner, { identity: a.identity })).rejects.toMatchObject({ code: 'IntegrityError' });

    // 3. The revocation deleted, so the stale record is the head again: a device that saw it refuses.
    await inner.delete(recordKey(3));
    await expect(Vault.open(inner, { identity: a.identity, pins: a.pins })).rejects.toMatchObject({ code: 'IntegrityError', message: expect.stringContaining('rolled back') });
    await expect(a.vault.refresh()).rejects.toMatchObject({ code: 'IntegrityError' });
    await overwrite(inner, 3, revocation);
    await a.vault.refresh();

    // 4. B signs a record of its own after being revoked (re-adding itself): no chain of custody.
    const forged = DeviceIdentity.generate('sneaky');
    const { signRecord } = await import('../../src/layers/encryption/membership-record.js');
    const head = a.vault.records[3]!;
    const { history: _h, ...rest } = head.record;
    const record = { ...rest, epoch: 1, seq: 4, prev: head.hash, signer: b.identity.id, change: { op: 'approve' as const, device: forged.id } };
    const { memberEntry } = await import('../../src/layers/encryption/membership-record.js');
    record.members = [...record.members, memberEntry(forged.public, 'write-only')];
    await inner.put(recordKey(4), signRecord(record, b.identity));
    await expect(a.vault.refresh()).rejects.toMatchObject({ code: 'IntegrityError', message: expect.stringContaining('chain of custody') });
  });

  it('a wrapped DEK swapped between two objects, or an object header moved to another vault key, is refused', async () => {
    const { inner, a, b } = await trio();
    await a.store.put('one', 'first object');
    await a.store.put('two', 'second object');
    const one = await raw(inner, 'one');
    const two = await raw(inner, 'two');
    await rewrite(inner, 'one', one.bytes, { ...one.meta.metadata, [ENC_META.wrappedKey]: two.meta.metadata[ENC_META.wrappedKey]! });
    await expect(b.store.get('one')).rejects.toMatchObject({ code: 'IntegrityError' });
    // A v2 header relabelled as v1 does not reach the vault with a v1 context.
    await rewrite(inner, 'two', two.bytes, { ...two.meta.metadata, [ENC_META.version]: '1' });
    await expect(b.store.get('two')).rejects.toMatchObject({ code: 'IntegrityError' });
  });

  it('an object naming another vault is AccessDenied; a device outside the vault writes nothing', async () => {
    const { inner, a } = await trio();
    const other = new MemoryStore();
    const o = DeviceIdentity.generate('other');
    await Vault.init(other, o);
    const ov = await device(other, o);
    await ov.store.put('x', 'other vault');
    const x = await raw(other, 'x');
    await rewrite(inner, 'x', x.bytes, x.meta.metadata);
    await expect(a.store.get('x')).rejects.toMatchObject({ code: 'AccessDenied', message: expect.stringContaining('belongs to vault') });

    const stranger = DeviceIdentity.generate('stranger');
    const sv = await Vault.open(inner, { identity: stranger, pins: new MemoryVaultPins() });
    const before = (await collectKeys(inner)).join(',');
    await expect(vaultStore(inner, sv).put('y', 'nope')).rejects.toMatchObject({ code: 'AccessDenied', message: expect.stringContaining('not a member') });
    expect((await collectKeys(inner)).join(',')).toBe(before);
  });

  it('approving with a fingerprint that does not match, or revoking an unknown device, writes nothing', async () => {
    const { inner, a, b } = await trio();
    const c = DeviceIdentity.generate('c');
    const before = (await collectKeys(inner)).join(',');
    await expect(a.vault.approve(c.public, { fingerprint: b.identity.fingerprint })).rejects.toMatchObject({ code: 'InvalidArgument' });
    await expect(a.vault.revoke(c.fingerprint)).rejects.toMatchObject({ code: 'NotFound' });
    await expect(a.vault.approve(b.identity.public)).rejects.toMatchObject({ code: 'AlreadyExists' });
    await expect(b.vault.revoke(b.identity.fingerprint).then(() => b.vault.revoke(a.identity.fingerprint))).rejects.toMatchObject({ code: 'AccessDenied' });
    // (B revoking itself is allowed: A remains. Then B can change nothing.)
    expect((await collectKeys(inner)).length).toBe(before.split(',').length + 1);
    expect(await text(a.store, 'missing').catch((e: { code: string }) => e.code)).toBe('NotFound');
  });
});

async function collectKeys(store: BlobStore): Promise<string[]> {
  const out: string[] = [];
  for await (const i of store.list()) if (i.type === 'object') out.push(i.key);
  return out;
}
