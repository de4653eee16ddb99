import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { getBuffer } from '../../src/core/helpers.js';
import { EncryptedStore, ENC_META, LocalKeyring, generateKey } from '../../src/layers/encryption/index.js';
import { openStore } from '../../src/registry.js';

const dir = await mkdtemp(join(tmpdir(), 'cloudmux-keys-cli-'));
afterAll(() => rm(dir, { recursive: true, force: true }));
afterEach(() => {
  vi.restoreAllMocks();
  process.exitCode = undefined;
});

function capture(): { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => {
    out += String(c);
    return true;
  });
  vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => {
    err += String(c);
    return true;
  });
  return { out: () => out, err: () => err };
}

describe('cloudmux keys', () => {
  it('generate prints a key file that loads as a keyring', async () => {
    const io = capture();
    expect(await main(['node', 'cloudmux', 'keys', 'generate', '--id', 'prod_2025'])).toBe(0);
    const parsed = JSON.parse(io.out()) as Record<string, string>;
    expect(Object.keys(parsed)).toEqual(['prod_2025']);
    expect(LocalKeyring.fromJson(io.out()).keyIds).toEqual(['prod_2025']);
    expect(await main(['node', 'cloudmux', 'keys', 'generate', '--id', 'bad id'])).toBe(2);
  });

  it('rotate re-wraps every object under the prefix, skips them on a re-run, and exits 1 on failures', async () => {
    const a = generateKey('a');
    const b = generateKey('b');
    const file = join(dir, 'keys.json');
    await writeFile(file, JSON.stringify({ a: a.key, b: b.key }));
    const raw = await openStore('memory://keys-cli');
    const writer = new EncryptedStore(raw, { keyring: new LocalKeyring({ a: a.key }), keyId: 'a' });
    for (let i = 0; i < 30; i++) await writer.put(`p/${i}`, `v${i}`);
    await writer.put('other/x', 'outside the prefix');

    let io = capture();
    expect(await main(['node', 'cloudmux', 'keys', 'rotate', 'memory://keys-cli/p/', '--to', 'b', '--keyring', file, '--json'])).toBe(0);
    expect(JSON.parse(io.out())).toMatchObject({ event: 'summary', to: 'b', listed: 30, rotated: 30, skipped: 0, failed: 0 });
    expect((await raw.head('p/7')).metadata[ENC_META.keyId]).toBe('b');
    expect((await raw.head('other/x')).metadata[ENC_META.keyId]).toBe('a');
    const reader = new EncryptedStore(raw, { keyring: new LocalKeyring({ b: b.key }), keyId: 'b' });
    expect((await getBuffer(reader, 'p/7')).toString()).toBe('v7');

    vi.restoreAllMocks();
    io = capture();
    expect(await main(['node', 'cloudmux', 'keys', 'rotate', 'memory://keys-cli/p/', '--to', 'b', '--keyring', file])).toBe(0);
    expect(io.out()).toMatch(/rotated: +0/);
    expect(io.out()).toMatch(/skipped: +30/);

    await raw.put('p/plain', 'not encrypted');
    vi.restoreAllMocks();
    io = capture();
    expect(await main(['node', 'cloudmux', 'keys', 'rotate', 'memory://keys-cli/p/', '--to', 'a', '--keyring', file])).toBe(1);
    expect(io.out()).toMatch(/failed: +1/);
    expect(io.out()).toMatch(/failed p\/plain: .*not encrypted/);

    vi.restoreAllMocks();
    io = capture();
    expect(await main(['node', 'cloudmux', 'keys', 'rotate', 'memory://keys-cli/p/', '--to', 'zzz', '--keyring', file])).toBe(1);
    expect(io.err()).toMatch(/AccessDenied.*key id zzz is not in the keyring/);
    expect(io.err()).not.toContain(a.key);
  });
});
