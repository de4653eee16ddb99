import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsStore } from '../../providers/fs/index.js';
import type { FsLayout } from '../../providers/fs/config.js';
import { CHUNK_COST, objectPath, parseEntry } from '../../providers/fs/layout.js';
import { MemoryStore } from '../../providers/memory/index.js';
import { compareKeys, keyProblem, listAll, type BlobStore, type ListOptions } from '../../src/core/index.js';

/** Rebuilds the key from the path components the way a listing walks them. */
function keyFromPath(dirs: string[], name: string): string {
  const parts: Buffer[] = [];
  for (const d of dirs) {
    const p = parseEntry(d);
    expect(p && (p.kind === 'dir' || p.kind === 'chunk'), d).toBeTruthy();
    parts.push(p!.bytes);
  }
  const file = parseEntry(name);
  expect(file?.kind, name).toBe('data');
  parts.push(file!.bytes);
  return Buffer.concat(parts).toString('utf8');
}

describe('fs layout: key <-> path', () => {
  const cases = [
    'a', 'a/b', 'a/b/c.txt', 'with space', '%', '%25', '100%/x', 'a%d', 'a%d/b', 'x%m12', 'x%t00', 'x%l', '%e', '.hidden',
    '...', 'a.', 'caf\u00e9', 'cafe\u0301', '\u{1f600}', 's'.repeat(299), '%'.repeat(400), `${'x'.repeat(192)}..`,
    `${'x'.repeat(191)}.`, `${'é'.repeat(150)}/z`, `${'😀'.repeat(120)}`, `${'a'.repeat(191)}😀tail`, `${'k'.repeat(1024)}`,
  ];
  it.each(cases)('round trips %#', (key) => {
    expect(keyProblem(key)).toBeUndefined();
    const p = objectPath(key);
    expect(keyFromPath(p.dirs, p.name)).toBe(key);
    for (const c of [...p.dirs, p.name]) {
      expect(c).not.toMatch(/\//);
      expect(c === '.' || c === '..').toBe(false);
      // Room for the longest suffix the store appends: `%m` + a 20-digit inode.
      expect(Buffer.byteLength(c, 'utf8') + 22, c).toBeLessThanOrEqual(255);
      expect(Buffer.from(c, 'utf8').toString('utf8')).toBe(c);
    }
  });

  it('no key produces a reserved name', () => {
    fc.assert(fc.property(fc.string({ unit: fc.constantFrom('a', '%', 'd', 'm', 't', 'l', 'e', '0', '2', '5', 'F', '.', 'é'), minLength: 1, maxLength: 12 }), (seg) => {
      fc.pre(keyProblem(seg) === undefined);
      const { name } = objectPath(seg);
      expect(parseEntry(name)?.kind).toBe('data');
    }));
  });

  it('every key maps back to itself (random unicode, long segments)', () => {
    const segment = fc.oneof(
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 8 }),
      fc.tuple(fc.constantFrom('x', '%', 'é', '😀', 'ab'), fc.integer({ min: 60, max: 260 })).map(([c, n]) => c.repeat(n)),
    );
    fc.assert(fc.property(fc.array(segment, { minLength: 1, maxLength: 4 }), (segs) => {
      const key = segs.join('/');
      fc.pre(keyProblem(key) === undefined);
      const p = objectPath(key);
      expect(keyFromPath(p.dirs, p.name)).toBe(key);
    }), { numRuns: 300 });
  });

  it(`cuts a segment once its cost reaches ${CHUNK_COST}`, () => {
    expect(objectPath('x'.repeat(CHUNK_COST - 1)).dirs).toEqual([]);
    expect(objectPath('x'.repeat(CHUNK_COST)).dirs).toHaveLength(1);
    expect(objectPath('x'.repeat(CHUNK_COST)).name).toBe('%e');
  });
});

for (const layout of ['plain', 'escaped'] as FsLayout[]) describe(`fs (layout=${layout}) listing equals the reference store`, () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cloudmux-fs-order-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  // Keys built to stress the ordering argument: file-vs-directory clashes (`a` and `a/b`), bytes
  // that sort around `/` (`-`, `.`, `0`), non-BMP characters (UTF-8 and UTF-16 orders differ), and
  // segments long enough to be cut into chunk directories, sharing long prefixes.
  const long = 'q'.repeat(CHUNK_COST - 2);
  const piece = fc.constantFrom('a', 'b', '-', '.', '0', '~', '\uff5e', '\u{1f600}', '\u{10000}', 'é', '%', long, `${long}ab`, `${long}a`);
  const segmentArb = fc.array(piece, { minLength: 1, maxLength: 3 }).map((p) => p.join(''));
  const keyArb = fc.array(segmentArb, { minLength: 1, maxLength: 3 }).map((s) => s.join('/')).filter((k) => keyProblem(k) === undefined
    && (layout === 'escaped' || k.split('/').every((seg) => Buffer.byteLength(seg) <= 255)));
  /** Plain holds no key below another (a path is a file or a directory): drop the deeper ones. */
  const storable = (keys: string[]): string[] => (layout === 'escaped' ? keys : keys.filter((k) => !keys.some((o) => k.startsWith(`${o}/`) || o.startsWith(`${k}/`))));

  it('for random key sets, prefixes, delimiters and startAfter', async () => {
    let run = 0;
    await fc.assert(fc.asyncProperty(
      fc.uniqueArray(keyArb, { minLength: 1, maxLength: 25 }).map(storable).filter((keys) => keys.length > 0),
      fc.record({ prefixLen: fc.nat(), afterLen: fc.option(fc.nat()), delimiter: fc.constantFrom(undefined, '/', '-', '\u{1f600}') }),
      async (keys, q) => {
        const dir = join(root, `r${run++}`);
        const fs = new FsStore({ root: dir, fsync: false, layout });
        const mem = new MemoryStore();
        for (const k of keys) {
          await fs.put(k, k);
          await mem.put(k, k);
        }
        const sorted = [...keys].sort(compareKeys);
        const pick = sorted[q.prefixLen % sorted.length]!;
        const prefix = pick.slice(0, q.prefixLen % (pick.length + 1)).replace(/[\ud800-\udbff]$/, '');
        const startAfter = q.afterLen === null ? undefined : sorted[q.afterLen % sorted.length]!.slice(0, 1 + (q.afterLen % 7));
        const opts: ListOptions = { prefix: prefix.endsWith('/') && prefix.length === 1 ? '' : prefix, delimiter: q.delimiter, startAfter: startAfter?.replace(/[\ud800-\udbff]$/, '') };
        const strip = (items: Awaited<ReturnType<typeof listAll>>) => items.map((i) => (i.type === 'object' ? `o:${i.key}` : `p:${i.prefix}`));
        // Both list the same, or both refuse the query (a random prefix can be invalid, e.g. ".").
        const outcome = (store: BlobStore) => listAll(store, opts).then(strip, (e: unknown) => `error ${(e as { code?: string }).code}`);
        expect(await outcome(fs), JSON.stringify(opts)).toEqual(await outcome(mem));
        await rm(dir, { recursive: true, force: true });
      },
    ), { numRuns: 40 });
  });

  if (layout === 'escaped') it('a key and keys below it coexist; deleting removes emptied directories', async () => {
    const dir = join(root, 'clash');
    const s: BlobStore = new FsStore({ root: dir, fsync: false, layout });
    for (const k of ['a', 'a/b', 'a/b/c', 'a-c', 'a.d']) await s.put(k, k);
    expect((await listAll(s)).map((i) => (i.type === 'object' ? i.key : ''))).toEqual(['a', 'a-c', 'a.d', 'a/b', 'a/b/c']);
    expect((await listAll(s, { delimiter: '/' })).map((i) => (i.type === 'object' ? i.key : `p:${i.prefix}`))).toEqual(['a', 'a-c', 'a.d', 'p:a/']);
    for (const k of ['a/b/c', 'a/b', 'a', 'a-c', 'a.d']) await s.delete(k);
    // Only the layout marker is left.
    expect(await readdir(dir)).toEqual(['%layout']);
  });

  if (layout === 'plain') it('files and directories sort by the keys they stand for; deleting removes emptied directories', async () => {
    const dir = join(root, 'order');
    const s: BlobStore = new FsStore({ root: dir, fsync: false, layout });
    const keys = ['a', 'a-b', 'a.d', 'b/c/d', 'b0', 'b-', 'c/x', 'c0'];
    for (const k of [...keys].reverse()) await s.put(k, k);
    // `-` (0x2d) < `.` (0x2e) < `/` (0x2f) < `0` (0x30): the directory `b` lists between `b-` and `b0`.
    expect((await listAll(s)).map((i) => (i.type === 'object' ? i.key : ''))).toEqual(['a', 'a-b', 'a.d', 'b-', 'b/c/d', 'b0', 'c/x', 'c0']);
    expect((await listAll(s, { delimiter: '/' })).map((i) => (i.type === 'object' ? i.key : `p:${i.prefix}`))).toEqual(['a', 'a-b', 'a.d', 'b-', 'p:b/', 'b0', 'p:c/', 'c0']);
    expect((await listAll(s, { startAfter: 'b-' })).map((i) => (i.type === 'object' ? i.key : ''))).toEqual(['b/c/d', 'b0', 'c/x', 'c0']);
    for (const k of keys) await s.delete(k);
    // The hidden directory stays (marker, empty meta/locks/tmp); every emptied key directory is gone.
    expect(await readdir(dir)).toEqual(['.cloudmux']);
    expect((await readdir(join(dir, '.cloudmux'), { recursive: true })).sort()).toEqual(['layout', 'locks', 'meta', 'tmp']);
  });

  it('files on disk are the keys, readable by hand', async () => {
    const dir = join(root, 'by-hand');
    const s = new FsStore({ root: dir, fsync: false, layout });
    await s.put('photos/2024/cat.jpg', 'meow');
    const path = await s.dataPath('photos/2024/cat.jpg');
    expect(relative(await import('node:fs/promises').then((m) => m.realpath(dir)), path)).toBe(layout === 'plain' ? join('photos', '2024', 'cat.jpg') : join('photos%d', '2024%d', 'cat.jpg'));
  });
});
