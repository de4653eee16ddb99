import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import {
  DeviceIdentity, ENC_META, EncryptedStore, LocalKeyring, MemoryVaultPins, Vault, generateKey, rotateAll, vaultStore,
} from '../../src/layers/encryption/index.js';
import { CountingStore, raw } from './helpers.js';
import { device, recordKey, text, trio } from './vault-helpers.js';

describe('vault: three devices (A founds, B full, W write-only)', () => {
  it('B reads what A wrote; W writes and A and B read it; W reads nothing, not even its own', async () => {
    const { inner, a, b, w } = await trio();
    await a.store.put('docs/a.txt', 'from A');
    expect(await text(b.store, 'docs/a.txt')).toBe('from A');

    await w.store.put('docs/w.txt', 'from W');
    expect(await text(a.store, 'docs/w.txt')).toBe('from W');
    expect(await text(b.store, 'docs/w.txt')).toBe('from W');

    for (const key of ['docs/a.txt', 'docs/w.txt']) {
      await expect(w.store.get(key)).rejects.toMatchObject({ code: 'AccessDenied', message: expect.stringContaining('write-only') });
      await expect(w.store.head(key)).rejects.toMatchObject({ code: 'AccessDenied' });
    }
    // What the provider holds is format v2, wrapped to the vault epoch, not to any device.
    const { meta, bytes } = await raw(inner, 'docs/w.txt');
    expect(meta.metadata[ENC_META.version]).toBe('2');
    expect(meta.metadata[ENC_META.keyId]).toBe(`v${a.vault.id}_e0`);
    expect(bytes.includes(Buffer.from('from W'))).toBe(false);
  });

  it('members are named by fingerprint, with who approved them', async () => {
    const { a, b, w } = await trio();
    const members = a.vault.members();
    expect(members.map((m) => [m.name, m.role, m.fingerprint])).toEqual([
      ['laptop-a', 'full', a.identity.fingerprint],
      ['phone-b', 'full', b.identity.fingerprint],
      ['backup-w', 'write-only', w.identity.fingerprint],
    ]);
    expect(members[1]!.addedBy).toBe(a.identity.fingerprint);
    expect(a.identity.fingerprint).toMatch(/^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$/);
  });

  it('revoking B: a new epoch; B cannot read what is written after; A reads everything; W keeps writing', async () => {
    const { inner, a, b, w } = await trio();
    await a.store.put('old/a.txt', 'before revocation');
    expect(await text(b.store, 'old/a.txt')).toBe('before revocation');

    const rec = await a.vault.revoke(b.identity.fingerprint);
    expect(rec.record.epoch).toBe(1);
    await a.store.put('new/a.txt', 'after revocation');
    await w.store.put('new/w.txt', 'W after revocation');
    expect((await raw(inner, 'new/w.txt')).meta.metadata[ENC_META.keyId]).toBe(`v${a.vault.id}_e1`);

    for (const key of ['new/a.txt', 'new/w.txt']) {
      await expect(b.store.get(key)).rejects.toMatchObject({ code: 'AccessDenied', message: expect.stringContaining('revoked') });
      // Even a fresh B, with every record in hand, finds no key for epoch 1.
      await expect((await device(inner, b.identity)).store.get(key)).rejects.toMatchObject({ code: 'AccessDenied' });
    }
    expect(a.vault.records.filter((r) => r.record.epoch === 1).every((r) => r.record.members.every((m) => m.device !== b.identity.id))).toBe(true);
    for (const [key, body] of [['old/a.txt', 'before revocation'], ['new/a.txt', 'after revocation'], ['new/w.txt', 'W after revocation']]) {
      expect(await text(a.store, key!)).toBe(body);
    }
    // A device approved after the revocation reads the old epoch through the sealed history.
    const c = DeviceIdentity.generate('desktop-c');
    await a.vault.approve(c.public, { fingerprint: c.fingerprint });
    expect(await text((await device(inner, c)).store, 'old/a.txt')).toBe('before revocation');
  });

  it('rotation after revocation re-wraps 1,000 objects with 0 bytes of object data put, resumably', async () => {
    const counting = new CountingStore(new MemoryStore());
    const { a, b } = await trio(new MemoryStore());
    // Build the vault and objects on the counting store directly.
    const ia = a.identity;
    const pins = new MemoryVaultPins();
    await Vault.init(counting, ia, { pins });
    const va = await Vault.open(counting, { identity: ia, pins, refreshMs: 0 });
    await va.approve(b.identity.public);
    const store = vaultStore(counting, va, { segmentSize: 64 });
    for (let i = 0; i < 1000; i++) await store.put(`obj/${String(i).padStart(4, '0')}`, `object ${i}`);
    await va.revoke(b.identity.fingerprint);
    counting.reset();
    const updated: string[] = [];
    const origUpdate = counting.updateMetadata;
    counting.updateMetadata = (key, o) => {
      updated.push(key);
      return origUpdate(key, o);
    };

    const stop = new AbortController();
    let seen = 0;
    await expect(rotateAll(store, va.writeKeyIdNow, {
      concurrency: 4, signal: stop.signal,
      onProgress: () => {
        if (++seen === 300) stop.abort();
      },
    })).rejects.toMatchObject({ code: 'Aborted' });
    const second = await rotateAll(store, va.writeKeyIdNow, { concurrency: 8 });
    expect(second.failed).toBe(0);
    expect(second.listed).toBe(1000);
    expect(second.rotated + second.skipped).toBe(1000);
    expect(second.skipped).toBeGreaterThanOrEqual(290);
    expect(counting.puts).toBe(0);
    expect(counting.putBytes).toBe(0);
    expect(counting.copies).toBe(0);
    // Every object once; an update the abort refused at the store may be counted and redone.
    expect(new Set(updated).size).toBe(1000);
    expect(updated.every((k) => k.startsWith('obj/'))).toBe(true);
    expect(counting.metadataUpdates).toBeLessThanOrEqual(1000 + 4);

    // Now even the objects written before the revocation are closed to B.
    const vb = await device(counting, b.identity);
    await expect(vb.store.get('obj/0000')).rejects.toMatchObject({ code: 'AccessDenied' });
    expect(await text(store, 'obj/0999')).toBe('object 999');
  }, 180_000);
});

describe('vault: format v1 beside v2', () => {
  it('v1 objects stay readable in a vault store with the old keyring, and rotate into the vault metadata-only', async () => {
    const inner = new CountingStore(new MemoryStore());
    const k = generateKey('legacy');
    const keyring = new LocalKeyring({ [k.id]: k.key });
    await new EncryptedStore(inner, { keyring, keyId: k.id, segmentSize: 64 }).put('v1.txt', 'written by v1');
    const { identity: ia } = { identity: DeviceIdentity.generate('a') };
    const ib = DeviceIdentity.generate('b');
    await Vault.init(inner, ia);
    const va = await Vault.open(inner, { identity: ia, refreshMs: 0 });
    await va.approve(ib.public);
    const store = vaultStore(inner, va, { keyring, segmentSize: 64 });
    expect(await text(store, 'v1.txt')).toBe('written by v1');
    inner.reset();
    const r = await rotateAll(store, va.writeKeyIdNow);
    expect(r).toMatchObject({ rotated: 1, failed: 0 });
    expect(inner.putBytes).toBe(0);
    expect((await raw(inner, 'v1.txt')).meta.metadata[ENC_META.version]).toBe('2');
    // B never held the v1 key, and now reads the object through the vault.
    expect(await text((await device(inner, ib)).store, 'v1.txt')).toBe('written by v1');
    // Listings do not show the membership records.
    const keys: string[] = [];
    for await (const item of store.list()) keys.push(item.type === 'object' ? item.key : item.prefix);
    expect(keys).toEqual(['v1.txt']);
  });
});

describe('vault: on a local directory (fs store)', () => {
  it('records and objects live in the directory; a second device opens it from there alone', async () => {
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { openStore, parseStoreUrl } = await import('../../src/registry.js');
    const dirPath = await mkdtemp(join(tmpdir(), 'cmx-vault-fs-'));
    try {
      const fs = await openStore(parseStoreUrl(`file://${dirPath}`));
      const { a, b } = await trio(fs);
      await a.store.put('notes/today.md', 'on disk');
      const fs2 = await openStore(parseStoreUrl(`file://${dirPath}`));
      expect(await text((await device(fs2, b.identity)).store, 'notes/today.md')).toBe('on disk');
    } finally {
      await rm(dirPath, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('vault: RSA-OAEP-4096 devices', () => {
  it('an RSA device approved into the vault reads and writes', async () => {
    const { a, b } = await trio(new MemoryStore(), 'rsa-oaep-4096');
    expect(b.identity.public.kind).toBe('rsa-oaep-4096');
    await a.store.put('x', 'to the RSA device');
    expect(await text(b.store, 'x')).toBe('to the RSA device');
    await b.store.put('y', 'from the RSA device');
    expect(await text(a.store, 'y')).toBe('from the RSA device');
  }, 120_000);
});

describe('vault: under the router', () => {
  it('members share a vault whose records and objects are routed and replicated', async () => {
    const { routerFixture } = await import('../router/fixture.js');
    const f = await routerFixture({ providers: ['p1', 'p2'], policies: [{ replicas: 2, writeQuorum: 2 }] });
    try {
      const ia = DeviceIdentity.generate('a');
      const ib = DeviceIdentity.generate('b');
      const iw = DeviceIdentity.generate('w');
      await Vault.init(f.router, ia);
      const a = await device(f.router, ia);
      await a.vault.approve(ib.public, { fingerprint: ib.fingerprint });
      await a.vault.approve(iw.public, { role: 'write-only' });
      const b = await device(f.router, ib);
      const w = await device(f.router, iw);
      await w.store.put('ingest/1', 'routed');
      expect(await text(b.store, 'ingest/1')).toBe('routed');
      await a.vault.revoke(ib.fingerprint);
      await w.store.put('ingest/2', 'after');
      await expect(b.store.get('ingest/2')).rejects.toMatchObject({ code: 'AccessDenied' });
      expect(await text(a.store, 'ingest/2')).toBe('after');
      // Both providers hold the membership records.
      for (const p of ['p1', 'p2']) expect((await f.memory[p]!.head(recordKey(2))).size).toBeGreaterThan(0);
    } finally {
      await f.close();
    }
  }, 60_000);
});
