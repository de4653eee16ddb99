import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { DeviceIdentity, normalizeFingerprint, publicFromJson, publicToJson, shortFingerprint } from '../../src/layers/encryption/index.js';
import type { KmsClient } from '../../src/layers/encryption/index.js';
import { TEST_SCRYPT } from './vault-helpers.js';

class FakeKms implements KmsClient {
  readonly #key = Buffer.alloc(32, 7);
  async has(id: string): Promise<boolean> {
    return id === 'kms1';
  }
  async encrypt(_id: string, plain: Uint8Array, ctx: Record<string, string>): Promise<Uint8Array> {
    return Buffer.concat([Buffer.from(JSON.stringify(ctx)), Buffer.from([0]), Buffer.from(plain).map((b, i) => b ^ this.#key[i % 32]!)]);
  }
  async decrypt(_id: string, blob: Uint8Array, ctx: Record<string, string>): Promise<Uint8Array> {
    const b = Buffer.from(blob);
    const z = b.indexOf(0);
    if (b.subarray(0, z).toString() !== JSON.stringify(ctx)) throw new Error('context mismatch');
    return b.subarray(z + 1).map((x, i) => x ^ this.#key[i % 32]!);
  }
  toString(): string {
    return 'FakeKms';
  }
}

describe('device identities', () => {
  it('round-trips through a passphrase-sealed file whose scrypt parameters are in the file', async () => {
    const id = DeviceIdentity.generate('laptop');
    const file = await id.seal({ passphrase: 'correct horse', scrypt: TEST_SCRYPT });
    const parsed = JSON.parse(file) as { protection: Record<string, unknown> };
    expect(parsed.protection).toMatchObject({ type: 'scrypt', N: 1024, r: 8, p: 1 });
    const back = await DeviceIdentity.open(file, { passphrase: 'correct horse' });
    expect(back.id).toBe(id.id);
    expect(back.fingerprint).toBe(id.fingerprint);
    // No private key material in the file's clear parts or in what the object prints.
    const pkcs8 = id.encryptionPrivateKey().export({ type: 'pkcs8', format: 'der' }).toString('base64');
    expect(file.includes(pkcs8)).toBe(false);
    expect(inspect(back, { showHidden: true, depth: 9 })).not.toContain(pkcs8);
    expect(JSON.stringify({ back })).not.toContain(pkcs8);
  });

  it('a wrong passphrase, no passphrase, an altered file and a missing file are typed errors', async () => {
    const id = DeviceIdentity.generate('laptop');
    const file = await id.seal({ passphrase: 'pw', scrypt: TEST_SCRYPT });
    await expect(DeviceIdentity.open(file, { passphrase: 'wrong' })).rejects.toMatchObject({ code: 'AuthFailed' });
    await expect(DeviceIdentity.open(file, {})).rejects.toMatchObject({ code: 'AuthFailed' });
    // Another device's public half spliced in: the seal is bound to the public identity.
    const other = JSON.parse(await DeviceIdentity.generate('evil').seal({ passphrase: 'pw', scrypt: TEST_SCRYPT })) as { public: unknown };
    const spliced = JSON.stringify({ ...JSON.parse(file), public: other.public });
    await expect(DeviceIdentity.open(spliced, { passphrase: 'pw' })).rejects.toMatchObject({ code: 'AuthFailed' });
    // A file asking for absurd scrypt memory is refused before any work.
    const greedy = JSON.stringify({ ...JSON.parse(file), protection: { ...JSON.parse(file).protection, N: 2 ** 24 } });
    await expect(DeviceIdentity.open(greedy, { passphrase: 'pw' })).rejects.toMatchObject({ code: 'InvalidConfig' });
    const dir = await mkdtemp(join(tmpdir(), 'cmx-id-'));
    await expect(DeviceIdentity.load(join(dir, 'nope.json'), { passphrase: 'pw' })).rejects.toMatchObject({ code: 'InvalidConfig', message: expect.stringContaining('does not exist') });
    await writeFile(join(dir, 'id.json'), file);
    expect((await DeviceIdentity.load(join(dir, 'id.json'), { passphrase: 'pw' })).id).toBe(id.id);
    expect(await readFile(join(dir, 'id.json'), 'utf8')).not.toContain('"pw"');
  });

  it('can be sealed under a KMS key instead of a passphrase', async () => {
    const id = DeviceIdentity.generate('server');
    const kms = new FakeKms();
    const file = await id.seal({ kms, keyId: 'kms1' });
    expect((await DeviceIdentity.open(file, { kms })).id).toBe(id.id);
    await expect(DeviceIdentity.open(file, {})).rejects.toMatchObject({ code: 'InvalidConfig' });
  });

  it('fingerprints are short, stable, typo-tolerant, and bind both keys; public JSON is checked', () => {
    const id = DeviceIdentity.generate('phone');
    expect(shortFingerprint(id.id)).toBe(id.fingerprint);
    expect(normalizeFingerprint(id.fingerprint.toLowerCase().replaceAll('-', ' '))).toBe(normalizeFingerprint(id.fingerprint));
    const pub = publicFromJson(publicToJson(id.public));
    expect(pub.enc.equals(id.public.enc)).toBe(true);
    const swapped = { ...publicToJson(id.public), enc: publicToJson(DeviceIdentity.generate('x').public).enc };
    expect(publicFromJson(swapped).enc.equals(id.public.enc)).toBe(false);
    expect(() => publicFromJson({ ...publicToJson(id.public), sig: publicToJson(id.public).enc })).toThrow(expect.objectContaining({ code: 'InvalidArgument' }));
    expect(() => publicFromJson({ ...publicToJson(id.public), kind: 'rsa-oaep-4096' })).toThrow(expect.objectContaining({ code: 'InvalidArgument' }));
    expect(() => DeviceIdentity.generate('bad name!')).toThrow(expect.objectContaining({ code: 'InvalidArgument' }));
  });
});
