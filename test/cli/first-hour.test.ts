import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listAll } from '../../src/core/index.js';
import { generateKey } from '../../src/layers/encryption/index.js';
import { openStore } from '../../src/registry.js';
import { pseudoRandomBytes } from '../../src/testing/data.js';
import { FaultProxy } from '../faults/proxy.js';
import { tempDir } from '../harness/emulator.js';
import { runCli, type CliRun } from './run-cli.js';

/**
 * Issue 16, the CLI part: store URLs mean what they say (the key typed is the key written, or exit 2
 * naming the problem), `cp` into directories and `cp -r`, and file:// as a whole store in the CLI
 * (`rm`, `--encrypt-with`, `--decrypt`). Each case failed on the main of before the fix.
 */

const run = (args: string[], opts: { stdin?: Buffer; env?: Record<string, string | undefined> } = {}): Promise<CliRun> => runCli(args, opts);
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const keys = async (url: string): Promise<string[]> => (await listAll(await openStore(url))).flatMap((m) => (m.type === 'object' ? [m.key] : []));

const endpoint = process.env.S3_ENDPOINT;
const bucket = process.env.S3_BUCKET;
const NO_S3 = 'no S3 emulator in this run (CLOUDMUX_EMULATORS excludes s3)';
const s3Query = (): string => `endpoint=${endpoint ?? ''}&forcePathStyle=true&region=us-east-1`;
const s3Prefix = `first-hour-${process.pid}`;

/** A usage error: exit 2, one line on stderr matching `message`. */
function expectUsage(r: CliRun, message: RegExp, what: string): void {
  expect(r.code, `${what}: ${r.err}`).toBe(2);
  expect(r.err.trim().split('\n'), r.err).toHaveLength(1);
  expect(r.err).toMatch(message);
}

describe('issue 16: the CLI a new user meets', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let hello = '';
  beforeAll(async () => {
    dir = await tempDir('first-hour');
    hello = join(dir.path, 'hello.txt');
    await writeFile(hello, 'hello, world\n');
  });
  afterAll(async () => {
    await dir.remove();
  });

  describe('URLs that mean what they say', () => {
    it('a # is part of the key, and the options after ? still apply (S3 emulator: not real AWS)', async (ctx) => {
      if (!endpoint || !bucket) return ctx.skip(NO_S3);
      const key = `${s3Prefix}/sp ace#frag`;
      // The endpoint unencoded, exactly as a user types it.
      const r = await run(['cp', hello, `s3://${bucket}/${key}?${s3Query()}`]);
      expect(r.code, r.err).toBe(0);
      const store = await openStore(`s3://${bucket}?endpoint=${encodeURIComponent(endpoint)}&forcePathStyle=true&region=us-east-1`);
      try {
        expect((await store.head(key)).size).toBe(13);
        expect((await listAll(store, { prefix: `${s3Prefix}/` })).flatMap((m) => (m.type === 'object' ? [m.key] : []))).toEqual([key]);
      } finally {
        await store.delete(key);
        await store.close();
      }
    });

    it('memory:// and file:// keep # and percent-escapes as typed: the key written is the key typed', async () => {
      expect((await run(['cp', hello, 'memory://u1/sp ace#frag'])).code).toBe(0);
      expect((await run(['cp', hello, 'memory://u1/q%3Fmark%25'])).code).toBe(0);
      expect(await keys('memory://u1')).toEqual(['q?mark%', 'sp ace#frag']);
      expect((await run(['cat', 'memory://u1/sp ace#frag'])).out.toString()).toBe('hello, world\n');
      const target = join(dir.path, 'hash#dir');
      const down = await run(['cp', 'memory://u1/sp ace#frag', `${pathToFileURL(target).href.replace('%23', '#')}/`]);
      expect(down.code, down.err).toBe(0);
      expect(await readFile(join(target, 'sp ace#frag'), 'utf8')).toBe('hello, world\n');
    });

    it('., .., %2E%2E, // and control characters in a key are InvalidKey, exit 2, nothing written', async (ctx) => {
      const bad = ['a/../b', '../escape', 'a/./b', 'a/%2E%2E/c', 'a/%2e/c', 'new\nline', 'tab\there', 'a//b', 'nul%00x'];
      for (const key of bad) {
        expectUsage(await run(['cp', hello, `memory://u2/${key}`]), /InvalidKey/, key);
        expectUsage(await run(['cp', '-', `memory://u2/${key}`], { stdin: Buffer.from('x') }), /InvalidKey/, `- ${key}`);
        expectUsage(await run(['cat', `memory://u2/${key}`]), /InvalidKey/, `cat ${key}`);
        expectUsage(await run(['rm', `memory://u2/${key}`]), /InvalidKey/, `rm ${key}`);
      }
      expect(await keys('memory://u2')).toEqual([]);
      if (!endpoint || !bucket) return ctx.skip(NO_S3);
      for (const key of ['a/../b', '../escape', 'a/%2E%2E/c', 'new\nline']) {
        expectUsage(await run(['cp', hello, `s3://${bucket}/${s3Prefix}/${key}?${s3Query()}`]), /InvalidKey/, `s3 ${key}`);
      }
      const store = await openStore(`s3://${bucket}/${s3Prefix}?endpoint=${encodeURIComponent(endpoint)}&forcePathStyle=true&region=us-east-1`);
      expect(await listAll(store)).toEqual([]);
      await store.close();
    });

    it('a malformed percent-escape is a usage error naming the URL', async () => {
      const r = await run(['cat', 'memory://x/a%zz']);
      expectUsage(r, /InvalidConfig.*memory:\/\/x\/a%zz.*malformed percent-escape "%zz"/, 'a%zz');
      expectUsage(await run(['cp', hello, 'memory://x/a%zz']), /malformed percent-escape/, 'cp a%zz');
      expectUsage(await run(['ls', 'memory://x/a%zz']), /malformed percent-escape/, 'ls a%zz');
    });

    it('unknown URL options are refused for every scheme', async () => {
      const cases: [string[], RegExp][] = [
        [['cp', hello, 'memory://x/k?bogus=1'], /memory: unknown URL parameter "bogus"/],
        [['ls', 'memory://x?bogus=1'], /unknown URL parameter "bogus"/],
        [['cp', hello, 's3://b/k?forcePathStyel=true'], /unknown URL parameter "forcePathStyel"/],
        [['cp', hello, 'gs://b/k?bogus=1'], /unknown URL parameter "bogus"/],
        [['cp', hello, 'az://acct/container/k?bogus=1&endpoint=http://127.0.0.1:1'], /unknown az:\/\/ URL parameter "bogus"/],
        [['ls', `${pathToFileURL(dir.path).href}?bogus=1`], /unknown fs store parameter bogus/],
        [['cp', hello, `${pathToFileURL(dir.path).href}/x.txt?fsync=false`], /store options on a file:\/\/ URL/],
        [['migrate', 'memory://x/prefix', join(dir.path, 'never-migrated'), '--no-journal'], /memory:\/\/ store has no prefix/],
      ];
      for (const [args, message] of cases) expectUsage(await run(args), message, args.join(' '));
      expect(existsSync(join(dir.path, 'x.txt'))).toBe(false);
      expect(existsSync(join(dir.path, 'never-migrated'))).toBe(false);
    });
  });

  describe('cp to a directory', () => {
    it('a trailing / or an existing directory means "into it, keeping the source name" (local path and file://)', async () => {
      const exists = join(dir.path, 'd1');
      await mkdir(exists);
      const cases: [string, string][] = [
        [`${exists}/`, join(exists, 'hello.txt')],
        [exists, join(exists, 'hello.txt')],
        [`${join(dir.path, 'new1')}/`, join(dir.path, 'new1', 'hello.txt')],
        [`${pathToFileURL(join(dir.path, 'new2')).href}/`, join(dir.path, 'new2', 'hello.txt')],
        [`${pathToFileURL(join(dir.path, 'd3')).href}/`, join(dir.path, 'd3', 'hello.txt')],
      ];
      await mkdir(join(dir.path, 'd3'));
      for (const [dst, file] of cases) {
        const r = await run(['cp', hello, dst]);
        expect(r.code, `${dst}: ${r.err}`).toBe(0);
        expect(await readFile(file, 'utf8')).toBe('hello, world\n');
      }
      // From a store too, and a plain name stays a file name.
      await run(['cp', hello, 'memory://c1/in/obj.txt']);
      expect((await run(['cp', 'memory://c1/in/obj.txt', `${join(dir.path, 'new3')}/`])).code).toBe(0);
      expect(await readFile(join(dir.path, 'new3', 'obj.txt'), 'utf8')).toBe('hello, world\n');
      expect((await run(['cp', 'memory://c1/in/obj.txt', join(dir.path, 'plain-name')])).code).toBe(0);
      expect((await stat(join(dir.path, 'plain-name'))).isFile()).toBe(true);
      expectUsage(await run(['cp', '-', `${exists}/`], { stdin: Buffer.from('x') }), /is a directory; give the file name when copying from stdin/, 'stdin to dir');
    });

    it('a directory as source says so and suggests -r; cp -r copies the tree, verified, both ways', async () => {
      const tree = join(dir.path, 'tree');
      const files: Record<string, Buffer> = {
        'a.txt': Buffer.from('a'),
        'sub/b.bin': pseudoRandomBytes(200_000, 'first-hour-b'),
        'sub/deeper/c.txt': Buffer.from('c'),
      };
      for (const [k, v] of Object.entries(files)) {
        await mkdir(join(tree, k, '..'), { recursive: true });
        await writeFile(join(tree, k), v);
      }
      expectUsage(await run(['cp', tree, 'memory://r1/']), /tree is a directory; use cp -r to copy a tree/, 'dir source');
      expectUsage(await run(['cp', '-r', hello, 'memory://r1/']), /is a file; cp -r copies a directory/, 'file with -r');

      const up = await run(['cp', '-r', tree, 'memory://r1', '--json']);
      expect(up.code, up.err).toBe(0);
      expect(await keys('memory://r1')).toEqual(Object.keys(files).sort());
      const summary = up.out.toString().trim().split('\n').map((l) => JSON.parse(l) as { event: string; copied?: number }).find((e) => e.event === 'summary');
      expect(summary?.copied).toBe(3);

      const down = join(dir.path, 'tree-copy');
      const back = await run(['cp', '-r', 'memory://r1', `${pathToFileURL(down).href}/`]);
      expect(back.code, back.err).toBe(0);
      for (const [k, v] of Object.entries(files)) expect(sha(await readFile(join(down, k))), k).toBe(sha(v));

      // A prefix of a store to another store's prefix.
      const fsStore = join(dir.path, 'fs-store');
      expect((await run(['cp', '-r', `${pathToFileURL(down).href}/sub/`, `${pathToFileURL(fsStore).href}/dst/`])).code).toBe(0);
      expect(await keys(`${pathToFileURL(fsStore).href}/dst`)).toEqual(['b.bin', 'deeper/c.txt']);
    });

    it('cp -r to and from S3 (emulator)', async (ctx) => {
      if (!endpoint || !bucket) return ctx.skip(NO_S3);
      const tree = join(dir.path, 's3-tree');
      await mkdir(join(tree, 'x'), { recursive: true });
      await writeFile(join(tree, 'x', 'one.txt'), 'one');
      await writeFile(join(tree, 'two.txt'), 'two');
      const url = `s3://${bucket}/${s3Prefix}/tree/?${s3Query()}`;
      const up = await run(['cp', '-r', tree, url]);
      expect(up.code, up.err).toBe(0);
      const out = join(dir.path, 's3-tree-back');
      const down = await run(['cp', '-r', url, out]);
      expect(down.code, down.err).toBe(0);
      expect(await readFile(join(out, 'x', 'one.txt'), 'utf8')).toBe('one');
      expect(await readFile(join(out, 'two.txt'), 'utf8')).toBe('two');
      const rm = await run(['rm', '-r', url]);
      expect(rm.code, rm.err + rm.out.toString()).toBe(0);
    });

    it('cp, cat, ls and rm -r retry a 503 the provider asks to be retried (S3 emulator behind a fault proxy)', async (ctx) => {
      if (!endpoint || !bucket) return ctx.skip(NO_S3);
      // Each kind of request fails once with a retryable answer, then passes. Before, a one-shot
      // command failed on the first one (CI met s3rver's DeleteObjects InternalError this way).
      const failedOnce = new Set<string>();
      const proxy = await FaultProxy.start({
        upstream: endpoint,
        decide: (req) => {
          const kind = `${req.method} ${req.path.includes('?delete') ? 'delete' : req.path.includes('list-type') ? 'list' : 'object'}`;
          if (failedOnce.has(kind)) return null;
          failedOnce.add(kind);
          return 'slowDown';
        },
      });
      try {
        const q = `endpoint=${proxy.url}&forcePathStyle=true&region=us-east-1`;
        const base = `s3://${bucket}/${s3Prefix}/retried`;
        expect((await run(['cp', hello, `${base}/a.txt?${q}`])).code).toBe(0);
        expect((await run(['cp', hello, `${base}/sub/b.txt?${q}`])).code).toBe(0);
        const cat = await run(['cat', `${base}/a.txt?${q}`]);
        expect(cat.code, cat.err).toBe(0);
        expect(cat.out.toString()).toBe('hello, world\n');
        const ls = await run(['ls', '-R', `${base}/?${q}`]);
        expect(ls.code, ls.err).toBe(0);
        expect(ls.out.toString()).toMatch(/sub\/b\.txt/);
        const rm = await run(['rm', '-r', `${base}/?${q}`]);
        expect(rm.code, rm.err + rm.out.toString()).toBe(0);
        expect(await keys(`s3://${bucket}/${s3Prefix}/retried?endpoint=${encodeURIComponent(endpoint)}&forcePathStyle=true&region=us-east-1`)).toEqual([]);
        // Every kind of request met its fault: the commands passed by retrying, not by luck.
        expect(proxy.log.filter((e) => e.fault === 'slowDown').length).toBeGreaterThanOrEqual(4);
      } finally {
        await proxy.close();
      }
    });
  });

  describe('file:// is a whole store in the CLI', () => {
    it('rm and rm -r take local paths and file:// URLs; --dry-run deletes nothing', async () => {
      const t = join(dir.path, 'rm-tree');
      await mkdir(join(t, 'sub'), { recursive: true });
      await writeFile(join(t, 'a'), 'a');
      await writeFile(join(t, 'sub', 'b'), 'b');
      await writeFile(join(dir.path, 'lone.txt'), 'x');
      const dry = await run(['rm', '-r', '--dry-run', `${pathToFileURL(t).href}/`]);
      expect(dry.code, dry.err).toBe(0);
      expect(dry.out.toString().trim().split('\n')).toHaveLength(2);
      expect(existsSync(join(t, 'sub', 'b'))).toBe(true);
      expectUsage(await run(['rm', t]), /is a directory; use rm -r/, 'rm dir');
      const r = await run(['rm', '-r', `${pathToFileURL(t).href}/`, join(dir.path, 'lone.txt'), join(dir.path, 'never-there.txt')]);
      expect(r.code, r.err).toBe(0);
      expect(existsSync(t)).toBe(false);
      expect(existsSync(join(dir.path, 'lone.txt'))).toBe(false);
      // Not a .cloudmux/ left behind where there was none.
      expect(existsSync(join(dir.path, '.cloudmux'))).toBe(false);

      // Inside an fs store, rm goes through the store: the object and its metadata go.
      const store = join(dir.path, 'rm-store');
      expect((await run(['cp', hello, `${pathToFileURL(store).href}/k/`])).code).toBe(0);
      expect((await run(['migrate', join(dir.path, 'd1'), pathToFileURL(store).href, '--no-journal'])).code).toBe(0);
      expect(await keys(pathToFileURL(store).href)).toEqual(['hello.txt', 'k/hello.txt']);
      expect((await run(['rm', '-r', join(store, 'k')])).code).toBe(0);
      expect((await run(['rm', `${pathToFileURL(store).href}/hello.txt`])).code).toBe(0);
      expect(await keys(pathToFileURL(store).href)).toEqual([]);
    });

    it('cp --encrypt-with to a local path or file://, cat and cp --decrypt from it', async () => {
      const k = generateKey('fh');
      const env = { CLOUDMUX_KEY_fh: k.key, CLOUDMUX_KEYRING: undefined };
      const secret = Buffer.from('PLAINTEXT-FIRST-HOUR '.repeat(5000));
      const plain = join(dir.path, 'secret.txt');
      await writeFile(plain, secret);
      const vault = join(dir.path, 'vault');
      const enc = await run(['cp', plain, `${vault}/`, '--encrypt-with', 'fh'], { env });
      expect(enc.code, enc.err).toBe(0);
      const stored = await readFile(join(vault, 'secret.txt'));
      expect(stored.includes(Buffer.from('PLAINTEXT-FIRST-HOUR'))).toBe(false);
      const cat = await run(['cat', join(vault, 'secret.txt'), '--decrypt'], { env });
      expect(cat.code, cat.err).toBe(0);
      expect(sha(cat.out)).toBe(sha(secret));
      const range = await run(['cat', `${pathToFileURL(vault).href}/secret.txt`, '--decrypt', '--offset', '21', '--count', '9'], { env });
      expect(range.out.toString()).toBe('PLAINTEXT');
      const out = join(dir.path, 'decrypted.txt');
      expect((await run(['cp', `${pathToFileURL(vault).href}/secret.txt`, out, '--decrypt'], { env })).code).toBe(0);
      expect(sha(await readFile(out))).toBe(sha(secret));
      // Encrypted into a sub-directory of a store: the store's root holds the header.
      expect((await run(['cp', plain, join(vault, 'deep', 'er.txt'), '--encrypt-with', 'fh'], { env })).code).toBe(0);
      expect(sha((await run(['cat', join(vault, 'deep', 'er.txt'), '--decrypt'], { env })).out)).toBe(sha(secret));
      expect(await readdir(vault)).toEqual(expect.arrayContaining(['.cloudmux', 'deep', 'secret.txt']));
      // Not encrypted: refused with the usual message.
      expectUsage(await run(['cat', plain, '--decrypt'], { env }), /--decrypt: .*secret\.txt is not encrypted/, 'plain --decrypt');
      expectUsage(await run(['cp', plain, join(dir.path, 'never.txt'), '--decrypt'], { env }), /--decrypt: .*secret\.txt is not encrypted/, 'cp plain --decrypt');
      // Refusing wrote nothing into the user's directory.
      expect(existsSync(join(dir.path, '.cloudmux'))).toBe(false);
      expect(existsSync(join(dir.path, 'never.txt'))).toBe(false);
    });
  });
});
