import { chmod, mkdir, mkdtemp, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsStore, fromUrl } from '../../providers/fs/index.js';
import { MemoryStore } from '../../providers/memory/index.js';
import { compareKeys, getBuffer, listAll, type ListItem } from '../../src/core/index.js';
import { openStore } from '../../src/registry.js';
import { migrate } from '../../src/replication/migrate.js';
import { verifyTrees } from '../../src/replication/verify.js';
import { expectCode, pseudoRandomBytes, sha256Hex } from '../../src/testing/index.js';

/** Every file and directory under `dir` (relative, sorted; symlinks listed, not followed). */
async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) out.push(relative(dir, join(e.parentPath, e.name)));
  return out.sort();
}

function keysOf(items: ListItem[]): string[] {
  return items.map((i) => (i.type === 'object' ? i.key : `p:${i.prefix}`));
}

/** A directory tree as a user makes one: mkdir -p and files written by hand. */
const HAND_MADE: Record<string, string | Buffer> = {
  'README.md': '# my photos\n',
  'photos/2024/cat.jpg': pseudoRandomBytes(150_000, 'cat'),
  'photos/2024/dog.jpg': pseudoRandomBytes(70_000, 'dog'),
  'photos/2024-old/x.png': 'old',
  'photos/2024.txt': 'notes',
  'photos/empty.bin': '',
  'docs/日本語/ファイル.txt': 'unicode',
  'docs/emoji 😀 name.txt': 'emoji',
  'deep/a/b/c/d/e/f.txt': 'deep',
};

async function makeTree(root: string, files: Record<string, string | Buffer> = HAND_MADE): Promise<void> {
  for (const [key, body] of Object.entries(files)) {
    const path = join(root, ...key.split('/'));
    await mkdir(join(path, '..'), { recursive: true });
    await writeFile(path, body);
  }
}

describe('fs plain layout: ordinary directories are stores', () => {
  let base: string;
  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'cloudmux-fs-plain-'));
  });
  afterEach(async () => {
    await chmod(base, 0o755).catch(() => undefined);
    await rm(base, { recursive: true, force: true });
  });

  it('a hand-made tree lists in byte order, reads and verifies, and listing writes nothing', async () => {
    const root = join(base, 'mine');
    await makeTree(root);
    // An empty directory and a symlink (even to a file inside) are not objects.
    await mkdir(join(root, 'photos', 'nothing-here'));
    await symlink(join(root, 'README.md'), join(root, 'link-to-readme'));
    const before = await tree(root);
    const store = await openStore(root);
    expect(store).toBeInstanceOf(FsStore);
    expect(await (store as FsStore).layout()).toBe('plain');

    const listed = await listAll(store);
    const keys = Object.keys(HAND_MADE).sort(compareKeys);
    // `photos/2024-old/…` < `photos/2024.txt` < `photos/2024/…`: `-` < `.` < `/` in byte order.
    expect(keysOf(listed)).toEqual(keys);
    expect(keys.indexOf('photos/2024-old/x.png')).toBeLessThan(keys.indexOf('photos/2024.txt'));
    expect(keys.indexOf('photos/2024.txt')).toBeLessThan(keys.indexOf('photos/2024/cat.jpg'));
    for (const item of listed) if (item.type === 'object') expect(item.size).toBe(Buffer.byteLength(HAND_MADE[item.key]!));
    expect(keysOf(await listAll(store, { prefix: 'photos/', delimiter: '/' }))).toEqual(['photos/2024-old/', 'photos/2024.txt', 'photos/2024/', 'photos/empty.bin'].map((k) => (k.endsWith('/') ? `p:${k}` : k)));
    expect(await tree(root)).toEqual(before);

    for (const [key, body] of Object.entries(HAND_MADE)) {
      const head = await store.head(key);
      expect(head.checksums.sha256, key).toBe(sha256Hex(body));
      expect((await getBuffer(store, key, { verify: true })).equals(Buffer.from(body)), key).toBe(true);
    }
    // Digests, once computed, live in the hidden tree and nowhere else.
    const added = (await tree(root)).filter((p) => !before.includes(p));
    expect(added.length).toBeGreaterThan(0);
    expect(added.every((p) => p === '.cloudmux' || p.startsWith(`.cloudmux/`)), added.join(', ')).toBe(true);
  });

  it('a byte rewritten in a hand-made file after its digests were recorded is noticed: new digest, new etag', async () => {
    const root = join(base, 'rot');
    await makeTree(root, { 'a/b.bin': pseudoRandomBytes(100_000, 'rot') });
    const store = new FsStore({ root });
    const first = await store.head('a/b.bin');
    const bytes = await readFile(join(root, 'a', 'b.bin'));
    bytes[500]! ^= 0xff;
    const fh = await import('node:fs/promises').then((m) => m.open(join(root, 'a', 'b.bin'), 'r+'));
    await fh.write(bytes, 500, 1, 500);
    await fh.close();
    const head = await store.head('a/b.bin');
    expect(head.etag).not.toBe(first.etag);
    expect(head.checksums.sha256).toBe(sha256Hex(bytes));
    expect((await getBuffer(store, 'a/b.bin', { verify: true })).equals(bytes)).toBe(true);
  });

  it('migrate copies a hand-made tree to memory:// and verifies it, from a read-only directory too', async () => {
    const root = join(base, 'src');
    await makeTree(root);
    const before = await tree(root);
    const dst = new MemoryStore();
    await chmod(base, 0o555).catch(() => undefined);
    await chmod(root, 0o555);
    try {
      const summary = await migrate(await openStore(root), dst, { concurrency: 4 });
      expect(summary.failures).toEqual([]);
      expect(summary.copied).toBe(Object.keys(HAND_MADE).length);
    } finally {
      await chmod(root, 0o755);
      await chmod(base, 0o755);
    }
    for (const [key, body] of Object.entries(HAND_MADE)) expect((await getBuffer(dst, key)).equals(Buffer.from(body)), key).toBe(true);
    expect((await verifyTrees(await openStore(root), dst)).differing).toBe(0);
    // Root tried to write sidecars while read-only: nothing but the original files.
    expect((await tree(root)).filter((p) => !p.startsWith('.cloudmux'))).toEqual(before);
  });

  it('an export written through the store is plain files at the keys\' paths, and nothing else outside .cloudmux/', async () => {
    const src = new MemoryStore();
    const data: Record<string, Buffer> = {};
    for (const [i, key] of ['a.txt', 'dir/b.bin', 'dir/sub/c', 'unicode/ünï/ファイル', 'with space/x y', '%41/literal%', 'z'].entries()) {
      data[key] = pseudoRandomBytes(1 + i * 3_000, key);
      await src.put(key, data[key]!, { contentType: 'text/x-test', metadata: { n: String(i) } });
    }
    const root = join(base, 'export');
    const dst = await openStore(pathToFileURL(root).href);
    const summary = await migrate(src, dst, { concurrency: 4 });
    expect(summary.failures).toEqual([]);
    for (const [key, body] of Object.entries(data)) expect((await readFile(join(root, ...key.split('/')))).equals(body), key).toBe(true);
    const files = (await readdir(root, { withFileTypes: true, recursive: true }))
      .filter((e) => e.isFile())
      .map((e) => relative(root, join(e.parentPath, e.name)))
      .filter((p) => !p.startsWith('.cloudmux/'));
    expect(files.sort()).toEqual(Object.keys(data).map((k) => join(...k.split('/'))).sort());
    // Metadata round-trips through the hidden sidecars.
    expect((await dst.head('dir/b.bin')).metadata.n).toBe('1');
    expect((await dst.head('dir/b.bin')).contentType).toBe('text/x-test');
  });

  it('keys plain cannot hold fail with InvalidKey before anything is written', async () => {
    const root = join(base, 'clash');
    const store = new FsStore({ root, fsync: false });
    await store.put('a', 'file a');
    await store.put('d/x', 'in d');
    const before = await tree(root);
    const cases: [string, RegExp][] = [
      ['a/b', /"a" is an object \(a file\)/],
      ['a/b/c', /"a" is an object/],
      ['d', /names a directory that holds objects/],
      [`long/${'s'.repeat(256)}`, /fit in one file name \(255 bytes\), this one is 256; use layout=escaped/],
      ['.cloudmux/x', /top-level segment \.cloudmux is reserved/],
      ['.cloudmux', /top-level segment \.cloudmux is reserved/],
      ['x/.cloudmux-tmp-00', /starting \.cloudmux- are reserved/],
    ];
    for (const [key, message] of cases) {
      const err = await expectCode(store.put(key, 'x'), 'InvalidKey');
      expect(err.message, key).toMatch(message);
      await expectCode(store.copy('a', key), 'InvalidKey');
      // A streamed body is never read into a temp file either.
      let pulled = false;
      await expectCode(store.put(key, (async function* () {
        pulled = true;
        yield Buffer.from('x');
      })()), 'InvalidKey');
      expect(pulled, key).toBe(false);
    }
    expect(await tree(root)).toEqual(before);
    // A 255-byte segment is one file name, and `.cloudmux` below the top is an ordinary name.
    for (const key of [`long/${'s'.repeat(255)}`, `long/${'é'.repeat(127)}`, 'x/.cloudmux/y', 'x/.cloudmuxy']) {
      await store.put(key, key);
      expect((await getBuffer(store, key)).toString()).toBe(key);
    }
    expect(keysOf(await listAll(store))).toEqual(['a', 'd/x', `long/${'s'.repeat(255)}`, `long/${'é'.repeat(127)}`, 'x/.cloudmux/y', 'x/.cloudmuxy']);
    // Once the objects below it are gone, the directory gives way (emptied directories are pruned).
    await store.delete('d/x');
    await store.put('d', 'now a file');
    expect(await readFile(join(root, 'd'), 'utf8')).toBe('now a file');
    // An empty directory made by hand gives way too.
    await mkdir(join(root, 'empty-dir'));
    await store.put('empty-dir', 'file now');
    expect((await getBuffer(store, 'empty-dir')).toString()).toBe('file now');
  });

  it('the other odd keys of the conformance suite work in plain', async () => {
    const root = join(base, 'odd');
    const store = new FsStore({ root, fsync: false });
    const keys = [
      'with space', 'plus+sign', 'percent%20', 'hash#tag', 'question?mark', 'amp&ersand', 'equals=sign', 'colon:semi;', 'quote\'"',
      'brackets[]{}()', 'tilde~at@dollar$', 'comma,bang!star*', '日本語/キー', 'emoji😀/x', 'greek/αβγ', 'caf\u00e9', 'cafe\u0301',
      'dots.in.name', 'a/b/c/d/e/f', `max/${Array.from({ length: 10 }, () => 'k'.repeat(100)).join('/')}`,
    ];
    for (const key of keys) await store.put(key, `body of ${key}`);
    for (const key of keys) expect((await getBuffer(store, key)).toString(), key).toBe(`body of ${key}`);
    expect(keysOf(await listAll(store))).toEqual([...keys].sort(compareKeys));
    await expectCode(store.put(`long-seg-${'s'.repeat(290)}`, 'x'), 'InvalidKey');
  });

  it('temp files left by a crash are not objects, and old ones are removed by the next listing', async () => {
    const root = join(base, 'crash');
    const store = new FsStore({ root, fsync: false });
    await store.put('d/k', 'kept');
    const stale = join(root, 'd', '.cloudmux-tmp-0123abcd');
    const fresh = join(root, 'd', '.cloudmux-tmp-4567ef01');
    const staleSidecar = join(root, '.cloudmux', 'tmp', '.cloudmux-tmp-89ab');
    for (const p of [stale, fresh, staleSidecar]) await writeFile(p, 'partial');
    const old = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await utimes(stale, old, old);
    await utimes(staleSidecar, old, old);
    expect(keysOf(await listAll(store))).toEqual(['d/k']);
    expect(await readdir(join(root, 'd'))).toEqual(expect.arrayContaining(['k', '.cloudmux-tmp-4567ef01']));
    expect(await readdir(join(root, 'd'))).not.toContain('.cloudmux-tmp-0123abcd');
    expect(await readdir(join(root, '.cloudmux', 'tmp'))).toEqual([]);
    expect((await getBuffer(store, 'd/k', { verify: true })).toString()).toBe('kept');
  });

  it('sidecars of objects deleted by hand are removed once old, and never describe a new file', async () => {
    const root = join(base, 'orphans');
    const store = new FsStore({ root, fsync: false });
    await store.put('p/q/r', 'one', { metadata: { m: '1' } });
    await store.put('p/s', 'two');
    await rm(join(root, 'p', 'q'), { recursive: true });
    const orphan = join(root, '.cloudmux', 'meta', 'p', 'q');
    expect(await tree(orphan)).toHaveLength(2);
    expect(keysOf(await listAll(store))).toEqual(['p/s']);
    expect(await tree(orphan)).toHaveLength(2); // Young: could be a put in flight.
    const old = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await utimes(orphan, old, old);
    await listAll(store);
    await expect(readdir(orphan)).rejects.toMatchObject({ code: 'ENOENT' });
    // A file put back by hand at the old path is described by its own bytes.
    await makeTree(root, { 'p/q/r': 'by hand' });
    expect((await store.head('p/q/r')).metadata.m).toBeUndefined();
    expect((await getBuffer(store, 'p/q/r', { verify: true })).toString()).toBe('by hand');
  });

  it('the hidden directory removed by hand while the store is open is made again', async () => {
    const root = join(base, 'rmrf');
    const store = new FsStore({ root, fsync: false });
    await store.put('a/b', 'one', { metadata: { m: '1' } });
    await rm(join(root, '.cloudmux'), { recursive: true });
    // The object lost its metadata with the sidecar, not its bytes.
    expect((await getBuffer(store, 'a/b', { verify: true })).toString()).toBe('one');
    await store.put('a/b', 'two', { metadata: { m: '2' } });
    await store.put('c', 'three', { ifNoneMatch: '*' });
    expect((await store.head('a/b')).metadata.m).toBe('2');
    expect(await readFile(join(root, '.cloudmux', 'layout'), 'utf8')).toBe('plain\n');
  });

  it('a symlink planted as the hidden directory is refused and never written through', async () => {
    const root = join(base, 'evil');
    const outside = join(base, 'outside');
    await mkdir(root);
    await mkdir(outside);
    await symlink(outside, join(root, '.cloudmux'));
    const store = new FsStore({ root, fsync: false });
    await expectCode(store.put('k', 'v'), 'AccessDenied');
    expect(await readdir(outside)).toEqual([]);
    expect(keysOf(await listAll(store))).toEqual([]);

    // Deeper in the sidecar tree too: a sidecar is never written through a planted symlink.
    const deeper = join(base, 'deeper');
    const s2 = new FsStore({ root: deeper, fsync: false });
    await s2.put('seed', 'x');
    await symlink(outside, join(deeper, '.cloudmux', 'meta', 'a'));
    await expectCode(s2.put('a/b', 'v'), 'AccessDenied');
    expect(await readdir(outside)).toEqual([]);
    expect(keysOf(await listAll(s2))).toEqual(['seed']);
  });
});

describe('fs layout: choosing and detecting', () => {
  let base: string;
  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'cloudmux-fs-detect-'));
  });
  afterEach(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it('new roots are plain; layout=escaped from the URL or options; bad values are InvalidConfig', async () => {
    const plain = new FsStore({ root: join(base, 'new') });
    expect(await plain.layout()).toBe('plain');
    const viaUrl = await openStore(`${pathToFileURL(join(base, 'esc')).href}?layout=escaped`);
    expect((viaUrl as FsStore).options.layout).toBe('escaped');
    await viaUrl.put('a/b', 'x');
    expect(await readdir(join(base, 'esc'))).toEqual(expect.arrayContaining(['a%d', '%layout']));
    expect(() => fromUrl(new URL(`${pathToFileURL(base).href}?layout=flat`))).toThrow(/layout must be plain or escaped, got flat/);
    expect(() => new FsStore({ root: base, layout: 'flat' as never })).toThrow(/layout must be plain or escaped/);
  });

  it('an escaped tree written before markers existed is opened as escaped, then sealed with a marker', async () => {
    const root = join(base, 'legacy');
    const legacy = new FsStore({ root, layout: 'escaped', fsync: false });
    await legacy.put('photos/cat.jpg', 'meow');
    await legacy.put('top', 'level');
    await rm(join(root, '%layout'));
    const reopened = new FsStore({ root });
    expect(await reopened.layout()).toBe('escaped');
    expect(keysOf(await listAll(reopened))).toEqual(['photos/cat.jpg', 'top']);
    await reopened.put('more', 'x');
    expect(await readFile(join(root, '%layout'), 'utf8')).toBe('escaped\n');

    // Only top-level keys (sidecars, no `%d` directories) are recognised too.
    const flat = join(base, 'flat');
    await new FsStore({ root: flat, layout: 'escaped', fsync: false }).put('only', 'x');
    await rm(join(flat, '%layout'));
    expect(await new FsStore({ root: flat }).layout()).toBe('escaped');
  });

  it('a marker wins over detection, and an explicit layout that contradicts it is InvalidConfig', async () => {
    const esc = join(base, 'e');
    await new FsStore({ root: esc, layout: 'escaped' }).put('k', 'v');
    await expectCode(new FsStore({ root: esc, layout: 'plain' }).head('k'), 'InvalidConfig');
    const err = await expectCode(new FsStore({ root: esc, layout: 'plain' }).put('k2', 'v'), 'InvalidConfig');
    expect(err.message).toMatch(/holds a escaped-layout store; it cannot be opened with layout=plain/);

    // A plain store whose own keys look like escaped directories stays plain: its marker says so.
    const pl = join(base, 'p');
    const store = new FsStore({ root: pl });
    await store.put('odd%d/x', 'v');
    expect(await new FsStore({ root: pl }).layout()).toBe('plain');
    await expectCode(new FsStore({ root: pl, layout: 'escaped' }).list().next(), 'InvalidConfig');
  });

  it('without a marker, an explicit layout is taken as given', async () => {
    const root = join(base, 'hand');
    await makeTree(root, { 'x%d/y': 'looks escaped' });
    expect(await new FsStore({ root }).layout()).toBe('escaped');
    const plain = new FsStore({ root, layout: 'plain' });
    expect(keysOf(await listAll(plain))).toEqual(['x%d/y']);
  });
});
