import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { CloudmuxError } from '../../src/core/errors.js';
import { getBuffer } from '../../src/core/helpers.js';
import {
  ChainKeyring, EncryptedStore, KmsKeyring, LocalKeyring, generateKey, loadKeyring, type KmsClient,
} from '../../src/layers/encryption/index.js';
import { MemoryStore } from '../../providers/memory/index.js';

const dir = await mkdtemp(join(tmpdir(), 'cloudmux-keys-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

const ctx = { formatVersion: 1, keyId: 'a', noncePrefix: Buffer.alloc(7, 1).toString('base64') };

/** Every way a keyring could end up in a log line. */
function renderings(x: object): string[] {
  return [String(x), inspect(x, { showHidden: true, depth: 5 }), JSON.stringify(x), JSON.stringify({ x }), `${x as unknown as string}`];
}

describe('LocalKeyring', () => {
  it('loads a key file (what keys generate prints) and env vars', async () => {
    const a = generateKey('a');
    const file = join(dir, 'keys.json');
    await writeFile(file, JSON.stringify({ [a.id]: a.key }));
    const fromFile = await LocalKeyring.fromFile(file);
    expect(fromFile.keyIds).toEqual(['a']);
    const b = generateKey('b');
    const fromEnv = LocalKeyring.fromEnv({ CLOUDMUX_KEY_b: b.key, OTHER: 'x' });
    expect(fromEnv.keyIds).toEqual(['b']);
    const both = await loadKeyring({ file, env: { CLOUDMUX_KEY_b: b.key } });
    expect(await both.has('a')).toBe(true);
    expect(await both.has('b')).toBe(true);
    expect(await both.has('c')).toBe(false);
  });

  it('generated ids are valid and keys are 32 random bytes', () => {
    const g = generateKey();
    expect(g.id).toMatch(/^k\d{8}_[0-9a-f]{8}$/);
    expect(Buffer.from(g.key, 'base64').byteLength).toBe(32);
    expect(generateKey().key).not.toBe(g.key);
  });

  it('wraps deterministically per context and refuses another context', async () => {
    const a = generateKey('a');
    const ring = new LocalKeyring({ a: a.key, b: a.key });
    const dek = Buffer.alloc(32, 3);
    const w = await ring.wrap('a', dek, ctx);
    expect(w.byteLength).toBe(40);
    expect(Buffer.from(await ring.unwrap('a', w, ctx)).equals(dek)).toBe(true);
    // Same key material under another id, or another object's nonce: different wrapping key.
    await expect(ring.unwrap('b', w, { ...ctx, keyId: 'b' })).rejects.toMatchObject({ code: 'IntegrityError' });
    await expect(ring.unwrap('a', w, { ...ctx, noncePrefix: Buffer.alloc(7, 2).toString('base64') })).rejects.toMatchObject({ code: 'IntegrityError' });
    await expect(ring.unwrap('zzz', w, ctx)).rejects.toMatchObject({ code: 'AccessDenied' });
  });

  it('rejects bad key files with errors that quote no key material', async () => {
    const secret = generateKey().key;
    const cases: [string, RegExp][] = [
      [`{"a": "${secret.slice(0, 20)}"}`, /key a must be 32 bytes/],
      [`{"a": "${secret}!!"}`, /key a is not base64/],
      [`{"bad id": "${secret}"}`, /key id "bad id" must match/],
      [`{"a": 5}`, /must be a base64 string/],
      [`{"a": "${secret}"`, /not valid JSON/],
      [`["${secret}"]`, /must be a JSON object/],
    ];
    for (const [text, message] of cases) {
      const file = join(dir, 'bad.json');
      await writeFile(file, text);
      const err = await LocalKeyring.fromFile(file).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CloudmuxError);
      expect((err as CloudmuxError).code).toBe('InvalidConfig');
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).not.toContain(secret.slice(0, 12));
    }
    await expect(LocalKeyring.fromFile(join(dir, 'missing.json'))).rejects.toMatchObject({ code: 'InvalidConfig' });
  });

  it('never renders key material: toString, inspect, JSON, errors, the store and its metadata', async () => {
    const a = generateKey('a');
    const ring = new LocalKeyring({ a: a.key });
    const inner = new MemoryStore();
    const store = new EncryptedStore(inner, { keyring: ring, keyId: 'a' });
    const keyHex = Buffer.from(a.key, 'base64').toString('hex');
    for (const s of [...renderings(ring), ...renderings(store), ...renderings(new ChainKeyring([ring]))]) {
      expect(s).not.toContain(a.key);
      expect(s).not.toContain(keyHex);
    }
    expect(String(store)).toBe('Encrypted(memory://)');
    await store.put('k', 'hello', { metadata: { note: 'x' } });
    const stored = await inner.head('k');
    const all = JSON.stringify(stored);
    expect(all).not.toContain(a.key);
    expect(all).not.toContain(keyHex);
    const err = await getBuffer(new EncryptedStore(inner, { keyring: new LocalKeyring({ a: generateKey().key }), keyId: 'a' }), 'k').catch((e: unknown) => e);
    expect(renderings(err as object).join(' ')).not.toContain(a.key);
  });
});

/** A stand-in KMS: AES key wrap inside, context checked like AWS KMS's encryption context. */
class FakeKms implements KmsClient {
  calls = 0;
  private readonly ring = new LocalKeyring({ kms1: generateKey().key });
  async has(keyId: string): Promise<boolean> {
    return keyId === 'kms1';
  }
  async encrypt(keyId: string, plaintext: Uint8Array, context: Record<string, string>): Promise<Uint8Array> {
    this.calls++;
    const w = await this.ring.wrap(keyId, plaintext, { formatVersion: 1, keyId, noncePrefix: context.cloudmux_nonce! });
    return Buffer.concat([Buffer.from(JSON.stringify(context).length.toString().padStart(4, '0')), Buffer.from(w)]);
  }
  async decrypt(keyId: string, ciphertext: Uint8Array, context: Record<string, string>): Promise<Uint8Array> {
    this.calls++;
    return this.ring.unwrap(keyId, Buffer.from(ciphertext).subarray(4), { formatVersion: 1, keyId, noncePrefix: context.cloudmux_nonce! });
  }
  toString(): string {
    return 'FakeKms';
  }
}

describe('KmsKeyring', () => {
  it('wraps through the service with the wrap context and round-trips objects', async () => {
    const kms = new FakeKms();
    const store = new EncryptedStore(new MemoryStore(), { keyring: new KmsKeyring(kms), keyId: 'kms1' });
    await store.put('k', 'secret data');
    expect((await getBuffer(store, 'k')).toString()).toBe('secret data');
    expect(kms.calls).toBeGreaterThanOrEqual(2);
    expect(String(store.toString())).toBe('Encrypted(memory://)');
    await expect(new KmsKeyring(kms).wrap('nope', Buffer.alloc(32), ctx)).rejects.toMatchObject({ code: 'AccessDenied' });
  });

  it('maps a failing service call to a CloudmuxError', async () => {
    const broken: KmsClient = {
      has: async () => true,
      encrypt: async () => {
        throw new Error('socket hang up');
      },
      decrypt: async () => new Uint8Array(5),
      toString: () => 'Broken',
    };
    await expect(new KmsKeyring(broken).wrap('x', Buffer.alloc(32), ctx)).rejects.toMatchObject({ code: 'ProviderError' });
    await expect(new KmsKeyring(broken).unwrap('x', Buffer.alloc(40), ctx)).rejects.toMatchObject({ code: 'IntegrityError' });
  });
});
