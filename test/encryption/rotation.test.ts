import { describe, expect, it } from 'vitest';
import { getBuffer } from '../../src/core/helpers.js';
import { EncryptedStore, ENC_META, LocalKeyring, generateKey, rotateAll, type RotateProgress } from '../../src/layers/encryption/index.js';
import { MemoryStore } from '../../providers/memory/index.js';
import { pseudoRandomBytes, sha256Hex } from '../../src/testing/data.js';
import { CountingStore, raw } from './helpers.js';

const oldKey = generateKey('old');
const newKey = generateKey('new');

function stores() {
  const inner = new CountingStore(new MemoryStore());
  const keyring = new LocalKeyring({ old: oldKey.key, new: newKey.key });
  const writer = new EncryptedStore(inner, { keyring, keyId: 'old', segmentSize: 4096 });
  const rotator = new EncryptedStore(inner, { keyring, keyId: 'new', segmentSize: 4096 });
  return { inner, keyring, writer, rotator };
}

describe('key rotation', () => {
  it('rotates 1,000 objects by rewriting metadata only; every object still decrypts', async () => {
    const { inner, writer, rotator } = stores();
    const bodies = new Map<string, Buffer>();
    for (let i = 0; i < 1000; i++) {
      const key = `data/${String(i).padStart(4, '0')}`;
      const body = pseudoRandomBytes(i % 7 === 0 ? 20_000 : 100 + i, key);
      bodies.set(key, body);
      await writer.put(key, body);
    }
    const before = new Map<string, Buffer>();
    for (const key of bodies.keys()) before.set(key, (await raw(inner, key)).bytes);
    inner.reset();
    const progress: RotateProgress[] = [];
    const report = await rotateAll(rotator, 'new', { prefix: 'data/', concurrency: 8, onProgress: (p) => progress.push(p) });
    expect(report).toMatchObject({ listed: 1000, rotated: 1000, skipped: 0, failed: 0 });
    expect(progress).toHaveLength(1000);
    expect(progress.at(-1)).toMatchObject({ rotated: 1000 });
    // Metadata only: no put, no copy, no read of any body; one metadata update per object.
    expect(inner.puts).toBe(0);
    expect(inner.putBytes).toBe(0);
    expect(inner.copies).toBe(0);
    expect(inner.gets).toBe(0);
    expect(inner.metadataUpdates).toBe(1000);
    // A reader that holds only the new key reads everything, byte for byte, verified.
    const newOnly = new EncryptedStore(inner, { keyring: new LocalKeyring({ new: newKey.key }), keyId: 'new' });
    for (const [key, body] of bodies) {
      const stored = await raw(inner, key);
      expect(stored.bytes.equals(before.get(key)!), `${key} ciphertext unchanged`).toBe(true);
      expect(stored.meta.metadata[ENC_META.keyId]).toBe('new');
      expect((await getBuffer(newOnly, key, { verify: true })).equals(body)).toBe(true);
      expect((await newOnly.head(key)).checksums.sha256).toBe(sha256Hex(body));
    }
    // And one that holds only the old key no longer can.
    const oldOnly = new EncryptedStore(inner, { keyring: new LocalKeyring({ old: oldKey.key }), keyId: 'old' });
    await expect(getBuffer(oldOnly, 'data/0001')).rejects.toMatchObject({ code: 'AccessDenied' });
  });

  it('resumes: an interrupted run leaves a mix, the next run finishes the rest and skips the done', async () => {
    const { inner, writer, rotator } = stores();
    for (let i = 0; i < 60; i++) await writer.put(`k/${String(i).padStart(2, '0')}`, `body ${i}`);
    const ac = new AbortController();
    const first = await rotateAll(rotator, 'new', {
      concurrency: 1,
      signal: ac.signal,
      onProgress: (p) => {
        if (p.rotated === 25) ac.abort();
      },
    }).catch((e: unknown) => e);
    expect(first).toMatchObject({ code: 'Aborted' });
    inner.reset();
    const second = await rotateAll(rotator, 'new', { concurrency: 4 });
    expect(second).toMatchObject({ listed: 60, rotated: 35, skipped: 25, failed: 0 });
    expect(inner.metadataUpdates).toBe(35);
    const third = await rotateAll(rotator, 'new');
    expect(third).toMatchObject({ rotated: 0, skipped: 60 });
    for (let i = 0; i < 60; i++) expect((await getBuffer(rotator, `k/${String(i).padStart(2, '0')}`)).toString()).toBe(`body ${i}`);
  });

  it('reports per-object failures and keeps going; refuses an unknown target key up front', async () => {
    const { inner, writer, rotator } = stores();
    await writer.put('a', 'a');
    await inner.put('b-plain', 'not encrypted');
    await writer.put('c', 'c');
    const report = await rotateAll(rotator, 'new');
    expect(report).toMatchObject({ listed: 3, rotated: 2, failed: 1 });
    expect(report.failures).toEqual([{ key: 'b-plain', error: expect.stringMatching(/not encrypted/) }]);
    await expect(rotateAll(rotator, 'missing')).rejects.toMatchObject({ code: 'AccessDenied' });
  });

  it('rotate() keeps user metadata, content type and the recorded digest; is idempotent', async () => {
    const { writer, rotator } = stores();
    await writer.put('x', 'payload', { metadata: { owner: 'me' }, contentType: 'text/x' });
    const r = await rotator.rotate('x', 'new');
    expect(r).toMatchObject({ rotated: true, from: 'old' });
    expect(r.meta).toMatchObject({ size: 7, contentType: 'text/x', metadata: { owner: 'me' }, checksums: { sha256: sha256Hex('payload') } });
    expect((await rotator.rotate('x', 'new')).rotated).toBe(false);
    await expect(rotator.rotate('x', 'old', { ifMatch: 'stale' })).rejects.toMatchObject({ code: 'PreconditionFailed' });
    expect((await rotator.rotate('x', 'old')).rotated).toBe(true);
  });
});
