import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collect, listAll } from '../../src/core/index.js';
import type { BlobStore } from '../../src/core/types.js';
import { ENC_META, generateKey } from '../../src/layers/encryption/index.js';
import { openStore } from '../../src/registry.js';
import { pseudoRandomBytes } from '../../src/testing/data.js';
import { tempDir } from '../harness/emulator.js';
import { runCli, type CliRun } from './run-cli.js';

/**
 * `--encrypt-with`, `--decrypt` and `--keyring` on cp, cat, migrate and verify, in this process
 * against the S3 emulator: the provider holds only ciphertext, trees round-trip back to the same
 * bytes, and key problems fail with one clear line before anything is written.
 */

/** Runs the CLI in this process with extra environment variables, capturing what it writes. */
const run = (args: string[], env: Record<string, string | undefined> = {}, stdin?: Buffer): Promise<CliRun> => runCli(args, { env, stdin });

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const MARKER = 'PLAINTEXT-MARKER-7f3a';

const endpoint = process.env.S3_ENDPOINT;
const bucket = process.env.S3_BUCKET;
const NO_S3 = 'no S3 emulator in this run (CLOUDMUX_EMULATORS excludes s3)';
/** An S3 URL on the emulator under this run's own prefix. */
const s3 = (path: string): string => `s3://${bucket}/enc-cli-${process.pid}/${path}?endpoint=${encodeURIComponent(endpoint ?? '')}&forcePathStyle=true&region=us-east-1`;

/** No key material in anything the CLI printed, and no keyring variables left in the env. */
const NO_KEY_ENV = { CLOUDMUX_KEYRING: undefined, CLOUDMUX_KEY_prod: undefined, CLOUDMUX_KEY_other: undefined };

describe('cloudmux --encrypt-with / --decrypt', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  const prod = generateKey('prod');
  const other = generateKey('other');
  const impostor = generateKey('prod'); // same id, different key material
  let keyFile = '';
  let impostorFile = '';
  let otherOnlyFile = '';
  const files = new Map<string, Buffer>();
  let srcDir = '';

  beforeAll(async () => {
    dir = await tempDir('enc-cli');
    keyFile = join(dir.path, 'keys.json');
    impostorFile = join(dir.path, 'impostor.json');
    otherOnlyFile = join(dir.path, 'other.json');
    await writeFile(keyFile, JSON.stringify({ prod: prod.key, other: other.key }));
    await writeFile(impostorFile, JSON.stringify({ prod: impostor.key }));
    await writeFile(otherOnlyFile, JSON.stringify({ other: other.key }));
    srcDir = join(dir.path, 'src');
    await writeFile(join(dir.path, 'b.txt'), Buffer.from(`${MARKER} second file\n`.repeat(9000)));
    files.set('empty', Buffer.alloc(0));
    files.set('notes/a.txt', Buffer.from(`${MARKER} `.repeat(50)));
    files.set('notes/b.txt', Buffer.from(`${MARKER} second file\n`.repeat(9000))); // several 64 KiB segments
    files.set('blobs/random.bin', pseudoRandomBytes(1_300_000, 'enc-cli'));
    // Through the fs store: a directory tree is its layout, not plain nested files.
    const src = await openStore(pathToFileURL(srcDir));
    for (const [k, v] of files) await src.put(k, v);
    await src.close();
  });
  afterAll(async () => {
    if (endpoint && bucket) {
      const raw = await openStore(s3(''));
      for (const item of await listAll(raw)) if (item.type === 'object') await raw.delete(item.key);
      await raw.close();
    }
    await dir?.remove();
  });

  /** Every object of an S3 prefix as stored: bytes and metadata, read around any encryption. */
  async function stored(prefix: string): Promise<Map<string, { bytes: Buffer; metadata: Record<string, string> }>> {
    const raw: BlobStore = await openStore(s3(prefix));
    try {
      const out = new Map<string, { bytes: Buffer; metadata: Record<string, string> }>();
      for (const item of await listAll(raw)) {
        if (item.type !== 'object') continue;
        const r = await raw.get(item.key);
        out.set(item.key, { bytes: await collect(r.body), metadata: r.meta.metadata });
      }
      return out;
    } finally {
      await raw.close();
    }
  }

  /** Every object of an fs store tree. */
  async function localTree(root: string): Promise<Map<string, Buffer>> {
    const store = await openStore(pathToFileURL(root));
    try {
      const out = new Map<string, Buffer>();
      for (const item of await listAll(store)) if (item.type === 'object') out.set(item.key, await collect((await store.get(item.key)).body));
      return out;
    } finally {
      await store.close();
    }
  }

  it('migrate fs → S3 with --encrypt-with stores only ciphertext; a rerun finds every object identical', async (ctx) => {
    if (!endpoint || !bucket) return ctx.skip(NO_S3);
    const r = await run(['migrate', srcDir, s3('tree'), '--encrypt-with', 'prod', '--keyring', keyFile, '--no-journal', '--json'], NO_KEY_ENV);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out.toString().trim().split('\n').at(-1)!)).toMatchObject({ event: 'summary', copied: files.size, verified: files.size, failed: 0 });

    const objects = await stored('tree');
    expect([...objects.keys()].sort()).toEqual([...files.keys()].sort());
    for (const [key, plain] of files) {
      const o = objects.get(key)!;
      expect(o.metadata[ENC_META.keyId], key).toBe('prod');
      // AES-256-GCM, 64 KiB segments: a 16-byte tag per segment, an empty object is one tag.
      expect(o.bytes.byteLength, key).toBe(plain.byteLength + 16 * Math.max(1, Math.ceil(plain.byteLength / 65536)));
      expect(o.bytes.includes(Buffer.from(MARKER)), key).toBe(false);
      if (plain.byteLength >= 64) expect(o.bytes.includes(plain.subarray(0, 64)), key).toBe(false);
      expect(JSON.stringify(o.metadata)).not.toContain(prod.key);
    }

    // Compared by plaintext size and SHA-256 through the layer: nothing to copy again.
    const again = await run(['migrate', srcDir, s3('tree'), '--encrypt-with', 'prod', '--keyring', keyFile, '--no-journal', '--json'], NO_KEY_ENV);
    expect(again.code, again.err).toBe(0);
    expect(JSON.parse(again.out.toString().trim().split('\n').at(-1)!)).toMatchObject({ copied: 0, identical: files.size, failed: 0 });
    expect(r.err + again.err).not.toContain(prod.key);
  });

  it('verify sees plaintext equality only through --decrypt / --decrypt-b, and the ciphertext differs without', async (ctx) => {
    if (!endpoint || !bucket) return ctx.skip(NO_S3);
    await ensureTree();
    const b = await run(['verify', srcDir, s3('tree'), '--decrypt-b', '--keyring', keyFile, '--download'], NO_KEY_ENV);
    expect(b.code, b.err).toBe(0);
    expect(b.err).toMatch(/^no differences: 4 matching/);
    const a = await run(['verify', s3('tree'), srcDir, '--decrypt'], { ...NO_KEY_ENV, CLOUDMUX_KEYRING: keyFile });
    expect(a.code, a.err).toBe(0);
    expect(a.err).toMatch(/^no differences: 4 matching/);
    const raw = await run(['verify', srcDir, s3('tree')], NO_KEY_ENV);
    expect(raw.code).toBe(1);
    expect(raw.err).toMatch(/DIFFERENCES FOUND/);
  });

  it('migrate S3 → fs with --decrypt (keyring from CLOUDMUX_KEYRING) round-trips every byte', async (ctx) => {
    if (!endpoint || !bucket) return ctx.skip(NO_S3);
    await ensureTree();
    const back = join(dir.path, 'back');
    const r = await run(['migrate', s3('tree'), back, '--decrypt', '--no-journal', '--json'], { ...NO_KEY_ENV, CLOUDMUX_KEYRING: keyFile });
    expect(r.code, r.err).toBe(0);
    const tree = await localTree(back);
    expect([...tree.keys()].sort()).toEqual([...files.keys()].sort());
    for (const [k, v] of files) expect(sha(tree.get(k)!), k).toBe(sha(v));
  });

  it('migrate --decrypt --encrypt-with re-encrypts a tree under another key, S3 to S3', async (ctx) => {
    if (!endpoint || !bucket) return ctx.skip(NO_S3);
    await ensureTree();
    const r = await run(['migrate', s3('tree'), s3('rekeyed'), '--decrypt', '--encrypt-with', 'other', '--keyring', keyFile, '--no-journal'], NO_KEY_ENV);
    expect(r.code, r.err).toBe(0);
    const objects = await stored('rekeyed');
    expect(objects.size).toBe(files.size);
    for (const o of objects.values()) expect(o.metadata[ENC_META.keyId]).toBe('other');
    // Only the new key is needed to read it back.
    const cat = await run(['cat', s3('rekeyed/notes/b.txt'), '--decrypt', '--keyring', otherOnlyFile], NO_KEY_ENV);
    expect(cat.code, cat.err).toBe(0);
    expect(sha(cat.out)).toBe(sha(files.get('notes/b.txt')!));
  });

  it('cp and cat: encrypt from a file or stdin with a CLOUDMUX_KEY_ variable, decrypt whole objects and ranges', async (ctx) => {
    if (!endpoint || !bucket) return ctx.skip(NO_S3);
    const env = { ...NO_KEY_ENV, CLOUDMUX_KEY_prod: prod.key };
    const data = files.get('notes/b.txt')!;
    const up = await run(['cp', join(dir.path, 'b.txt'), s3('cp/'), '--encrypt-with', 'prod', '--json'], env);
    expect(up.code, up.err).toBe(0);
    expect(JSON.parse(up.out.toString())).toMatchObject({ bytes: data.byteLength, sha256: sha(data), target: `enc-cli-${process.pid}/cp/b.txt` });
    const piped = await run(['cp', '-', s3('cp/stdin.txt'), '--encrypt-with', 'prod'], env, Buffer.from(`${MARKER} from stdin`));
    expect(piped.code, piped.err).toBe(0);
    const objects = await stored('cp');
    for (const o of objects.values()) expect(o.bytes.includes(Buffer.from(MARKER))).toBe(false);

    const whole = await run(['cat', s3('cp/b.txt'), '--decrypt'], env);
    expect(whole.code, whole.err).toBe(0);
    expect(sha(whole.out)).toBe(sha(data));
    const range = await run(['cat', s3('cp/b.txt'), '--decrypt', '--offset', '65530', '--count', '100'], env);
    expect(range.code, range.err).toBe(0);
    expect(range.out.equals(data.subarray(65530, 65630))).toBe(true);
    const tail = await run(['cat', s3('cp/stdin.txt'), '--decrypt', '--tail', '10'], env);
    expect(tail.out.toString()).toBe('from stdin');

    const down = await run(['cp', s3('cp/b.txt'), join(dir.path, 'down', 'b.txt'), '--decrypt'], env);
    expect(down.code, down.err).toBe(0);
    expect(sha(await readFile(join(dir.path, 'down', 'b.txt')))).toBe(sha(data));
    // Store to store: decrypted at the source, re-encrypted at the destination.
    const s2s = await run(['cp', s3('cp/b.txt'), s3('cp/copy.txt'), '--decrypt', '--encrypt-with', 'prod'], env);
    expect(s2s.code, s2s.err).toBe(0);
    expect(sha((await run(['cat', s3('cp/copy.txt'), '--decrypt'], env)).out)).toBe(sha(data));
    // Without --decrypt, cat hands out the ciphertext as stored.
    const asStored = await run(['cat', s3('cp/b.txt')], env);
    expect(asStored.out.byteLength).toBe(data.byteLength + 16 * Math.ceil(data.byteLength / 65536));
  });

  describe('key problems fail with one clear line and write nothing', () => {
    it('--encrypt-with a key id the keyring lacks, no keyring at all, an unreadable key file: exit 2', async (ctx) => {
      if (!endpoint || !bucket) return ctx.skip(NO_S3);
      const cases: [string[], Record<string, string | undefined>, RegExp][] = [
        [['migrate', srcDir, s3('never'), '--encrypt-with', 'missing', '--keyring', keyFile, '--no-journal'], NO_KEY_ENV,
          /--encrypt-with missing: no such key in key file .*keys\.json and CLOUDMUX_KEY_\* variables; create one with `cloudmux keys generate --id missing`/],
        [['migrate', srcDir, s3('never'), '--encrypt-with', 'prod', '--no-journal'], NO_KEY_ENV,
          /--encrypt-with prod: no such key in CLOUDMUX_KEY_\* variables \(no --keyring given, CLOUDMUX_KEYRING unset\)/],
        [['migrate', srcDir, s3('never'), '--encrypt-with', 'prod', '--keyring', join(dir.path, 'nope.json'), '--no-journal'], NO_KEY_ENV,
          /InvalidConfig.*cannot read key file .*nope\.json: ENOENT/],
        [['migrate', srcDir, s3('never'), '--encrypt-with', 'bad id', '--keyring', keyFile, '--no-journal'], NO_KEY_ENV, /--encrypt-with: key id "bad id" must match/],
        [['cp', join(dir.path, 'b.txt'), s3('never/a.txt'), '--encrypt-with', 'missing', '--keyring', keyFile], NO_KEY_ENV, /--encrypt-with missing: no such key/],
        [['cp', s3('tree/notes/a.txt'), join(dir.path, 'never.txt'), '--encrypt-with', 'missing', '--keyring', keyFile], NO_KEY_ENV, /--encrypt-with missing: no such key/],
        [['cat', join(dir.path, 'b.txt'), '--decrypt', '--keyring', keyFile], NO_KEY_ENV, /--decrypt: .*b\.txt is not encrypted/],
      ];
      for (const [args, env, message] of cases) {
        const r = await run(args, env);
        expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(2);
        expect(r.err.trim().split('\n'), r.err).toHaveLength(1);
        expect(r.err).toMatch(message);
        expect(r.err).not.toContain(prod.key);
      }
      expect((await stored('never')).size).toBe(0);
      expect(existsSync(join(dir.path, 'never.txt'))).toBe(false);
    });

    it('--decrypt of a tree or object whose key id the keyring lacks, or that is not encrypted: exit 2, nothing written', async (ctx) => {
      if (!endpoint || !bucket) return ctx.skip(NO_S3);
      await ensureTree();
      const out = join(dir.path, 'never-dir');
      const lacking = await run(['migrate', s3('tree'), out, '--decrypt', '--keyring', otherOnlyFile, '--no-journal'], NO_KEY_ENV);
      expect(lacking.code, lacking.err).toBe(2);
      expect(lacking.err).toMatch(/--decrypt: <src> .* object blobs\/random\.bin is encrypted with key id prod, which is not in key file .*other\.json and CLOUDMUX_KEY_\* variables/);
      const plain = await run(['migrate', srcDir, out, '--decrypt', '--keyring', keyFile, '--no-journal'], NO_KEY_ENV);
      expect(plain.code, plain.err).toBe(2);
      expect(plain.err).toMatch(/--decrypt: <src> .* object blobs\/random\.bin is not encrypted \(no cloudmux_enc metadata\); read it without --decrypt/);
      const verify = await run(['verify', srcDir, s3('tree'), '--decrypt-b'], NO_KEY_ENV);
      expect(verify.code, verify.err).toBe(2);
      expect(verify.err).toMatch(/<b> .*encrypted with key id prod, which is not in CLOUDMUX_KEY_\* variables/);
      const cp = await run(['cp', s3('tree/notes/a.txt'), join(out, 'a.txt'), '--decrypt', '--keyring', otherOnlyFile], NO_KEY_ENV);
      expect(cp.code, cp.err).toBe(2);
      expect(cp.err).toMatch(/--decrypt: s3:\/\/.*notes\/a\.txt.* is encrypted with key id prod/);
      expect(existsSync(out)).toBe(false);
    });

    it('--decrypt with another key under the same id: IntegrityError, exit 1, no plaintext and nothing written', async (ctx) => {
      if (!endpoint || !bucket) return ctx.skip(NO_S3);
      await ensureTree();
      const out = join(dir.path, 'never-dir-2');
      const m = await run(['migrate', s3('tree'), out, '--decrypt', '--keyring', impostorFile, '--no-journal'], NO_KEY_ENV);
      expect(m.code, m.err).toBe(1);
      expect(m.err.trim().split('\n')).toHaveLength(1);
      expect(m.err).toMatch(/IntegrityError.*cannot unwrap the data key with key id prod/);
      expect(existsSync(out)).toBe(false);
      const cat = await run(['cat', s3('tree/notes/b.txt'), '--decrypt', '--keyring', impostorFile], NO_KEY_ENV);
      expect(cat.code).toBe(1);
      expect(cat.out.byteLength).toBe(0);
      expect(cat.err).toMatch(/IntegrityError.*cannot unwrap/);
      const cp = await run(['cp', s3('tree/notes/b.txt'), s3('never/b.txt'), '--decrypt', '--encrypt-with', 'prod', '--keyring', impostorFile], NO_KEY_ENV);
      expect(cp.code).toBe(1);
      expect((await stored('never')).size).toBe(0);
      expect(m.err + cat.err + cp.err).not.toContain(impostor.key);
    });
  });

  /** The encrypted tree the first case writes (so each case also runs alone with -t). */
  async function ensureTree(): Promise<void> {
    if ((await stored('tree')).size === files.size) return;
    const r = await run(['migrate', srcDir, s3('tree'), '--encrypt-with', 'prod', '--keyring', keyFile, '--no-journal'], NO_KEY_ENV);
    expect(r.code, r.err).toBe(0);
  }
});
