import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import { SHA256_KEY, getBuffer, validateMetadata } from '../../src/core/index.js';
import { carriedMetadata, isSystemMetadata, systemMetadata } from '../../src/core/system-metadata.js';
import { EncryptedStore, LocalKeyring, generateKey } from '../../src/layers/encryption/index.js';
import { ENC_META } from '../../src/layers/encryption/header.js';
import { copyObject, portableMetadata } from '../../src/replication/copier.js';
import { migrate } from '../../src/replication/migrate.js';
import { expectCode } from '../../src/testing/cases.js';
import { sha256Hex } from '../../src/testing/data.js';
import { routerFixture } from '../router/fixture.js';

/**
 * Issue 14, item 3: a caller's `cloudmux_*` metadata is refused everywhere, while cloudmux's own
 * layers still hand theirs down through the internal channel (src/core/system-metadata.ts).
 * The per-store checks are the conformance case `reservedMetadataRefused`.
 */

const k = generateKey('k1');
const keyring = new LocalKeyring({ [k.id]: k.key });
const encrypted = (inner: MemoryStore | import('../../src/core/types.js').BlobStore): EncryptedStore => new EncryptedStore(inner, { keyring, keyId: k.id });

describe('the internal channel', () => {
  it('refuses reserved names from callers, accepts them marked by cloudmux, never the digest', () => {
    expect(() => validateMetadata({ cloudmux_enc: '1' })).toThrow(/reserved/);
    expect(() => validateMetadata({ [SHA256_KEY]: 'ab' })).toThrow(/reserved/);
    expect(() => validateMetadata(systemMetadata({ cloudmux_enc: '1', user: 'x' }))).not.toThrow();
    expect(() => validateMetadata(systemMetadata({ [SHA256_KEY]: 'ab' }))).toThrow(/reserved/);
    // The mark is not data: a copy of a marked record is user input again, and JSON never carries it.
    const marked = systemMetadata({ cloudmux_enc: '1' });
    expect(isSystemMetadata(marked)).toBe(true);
    expect(Object.keys(marked)).toEqual(['cloudmux_enc']);
    expect(isSystemMetadata({ ...marked })).toBe(false);
    expect(() => validateMetadata({ ...marked })).toThrow(/reserved/);
    expect(isSystemMetadata(JSON.parse(JSON.stringify(marked)) as Record<string, string>)).toBe(false);
  });

  it('carries the header with the bytes, never the digest', () => {
    const m = carriedMetadata({ a: '1', [SHA256_KEY]: 'ab', cloudmux_enc: '1' });
    expect(m).toEqual({ a: '1', cloudmux_enc: '1' });
    expect(isSystemMetadata(m)).toBe(true);
  });

  it('maps foreign names that would land in the reserved room out of it', () => {
    expect(portableMetadata({ 'Cloudmux-Enc': 'x', other: 'y' })).toEqual({ xcloudmux_enc: 'x', other: 'y' });
  });
});

describe('cloudmux keeps writing its own names below it', () => {
  it('the copier and migrate move ciphertext with its header, streamed and server-side', async () => {
    const a = new MemoryStore();
    const b = new MemoryStore();
    await encrypted(a).put('doc', 'secret text', { metadata: { label: 'l' } });
    const header = (await a.head('doc')).metadata;
    expect(header[ENC_META.keyId]).toBe(k.id);
    await copyObject(a, 'doc', b, 'doc');
    await copyObject(a, 'doc', a, 'doc-copy', { metadata: { label: 'm' } });
    expect((await getBuffer(encrypted(b), 'doc')).toString()).toBe('secret text');
    expect((await getBuffer(encrypted(a), 'doc-copy')).toString()).toBe('secret text');
    const c = new MemoryStore();
    const summary = await migrate(a, c, { preflight: false });
    expect(summary.failed).toBe(0);
    expect((await getBuffer(encrypted(c), 'doc')).toString()).toBe('secret text');
    expect((await encrypted(c).head('doc')).metadata).toEqual({ label: 'l', [SHA256_KEY]: sha256Hex('secret text') });
  });

  it('rotation rewrites the header; the caller cannot', async () => {
    const k2 = generateKey('k2');
    const ring = new LocalKeyring({ [k.id]: k.key, [k2.id]: k2.key });
    const inner = new MemoryStore();
    const store = new EncryptedStore(inner, { keyring: ring, keyId: k.id });
    await store.put('x', 'payload', { metadata: { u: '1' } });
    await expectCode(store.updateMetadata('x', { metadata: { [ENC_META.keyId]: k2.id } }), 'InvalidArgument');
    await expectCode(inner.updateMetadata('x', { metadata: { [ENC_META.keyId]: k2.id } }), 'InvalidArgument');
    const r = await store.rotate('x', k2.id);
    expect(r.rotated).toBe(true);
    expect((await inner.head('x')).metadata[ENC_META.keyId]).toBe(k2.id);
    expect((await getBuffer(store, 'x')).toString()).toBe('payload');
    expect((await store.head('x')).metadata.u).toBe('1');
  });

  it('Encrypted(router): both replicas (one by the worker) and router copies keep the header', async () => {
    const f = await routerFixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 1 }] });
    try {
      const store = encrypted(f.router);
      await store.put('k', 'replicated secret', { metadata: { v: '1' } });
      await store.copy('k', 'k-copy');
      await f.worker.drain({ timeoutMs: 30_000 });
      for (const name of ['a', 'b']) {
        for (const key of ['k', 'k-copy']) {
          expect((await getBuffer(encrypted(f.memory[name]!), key)).toString(), `${name}/${key}`).toBe('replicated secret');
        }
      }
      // A caller's reserved name through the router: refused, the key stays readable.
      await expectCode(f.router.updateMetadata('k', { metadata: { [SHA256_KEY]: sha256Hex('other') } }), 'InvalidArgument');
      expect((await getBuffer(store, 'k')).toString()).toBe('replicated secret');
    } finally {
      await f.close();
    }
  });
});
