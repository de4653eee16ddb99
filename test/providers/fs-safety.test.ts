import { mkdir, mkdtemp, readdir, readFile, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsStore } from '../../providers/fs/index.js';
import type { FsLayout } from '../../providers/fs/config.js';
import { getBuffer, listAll } from '../../src/core/index.js';
import { expectCode } from '../../src/testing/index.js';

/** Every path under `dir`, relative, sorted (symlinks listed, not followed). */
async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) out.push(relative(dir, join(e.parentPath, e.name)));
  return out.sort();
}

for (const layout of ['plain', 'escaped'] as FsLayout[]) describe(`fs (layout=${layout}): keys never reach outside the root`, () => {
  /** The on-disk name of the directory holding the keys `<segment>/…`. */
  const dirOf = (segment: string): string => (layout === 'plain' ? segment : `${segment}%d`);
  let base: string;
  let root: string;
  let outside: string;
  let store: FsStore;

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'cloudmux-fs-safety-'));
    root = join(base, 'root');
    outside = join(base, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'secret'), 'do not touch');
    await writeFile(join(outside, 'x'), 'outside x');
    store = new FsStore({ root, fsync: false, layout });
    await store.put('seed', 'seed');
  });
  afterEach(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it('rejects traversal keys before any I/O', async () => {
    const before = await tree(base);
    for (const key of ['../outside/secret', 'a/../../outside/x', '..', '.', './x', '/etc/passwd', `${'/'}${outside}/x`, 'a//b', 'a\\..\\x', '..\\outside\\x', 'a/..']) {
      await expectCode(store.put(key, 'evil'), 'InvalidKey');
      await expectCode(store.get(key), 'InvalidKey');
      await expectCode(store.head(key), 'InvalidKey');
      await expectCode(store.delete(key), 'InvalidKey');
      await expectCode(store.copy('seed', key), 'InvalidKey');
      await expectCode(store.updateMetadata(key, { metadata: {} }), 'InvalidKey');
    }
    await expectCode(listAll(store, { prefix: '../' }), 'InvalidKey');
    expect(await tree(base)).toEqual(before);
  });

  it('stores look-alike keys (encoded dots, percent escapes, dot runs) inside the root', async () => {
    // Plain cannot hold both `...` and `.../x` (a path is a file or a directory): it keeps the latter.
    const keys = ['%2e%2e/x', '%2E%2E/outside/x', '..%2Fx', ...(layout === 'escaped' ? ['...'] : []), '.../x', '..a/x', `${'x'.repeat(192)}..`, `${'x'.repeat(191)}./..b`, '%', '%%2F'];
    for (const key of keys) await store.put(key, `body ${key}`);
    for (const key of keys) expect((await getBuffer(store, key)).toString()).toBe(`body ${key}`);
    expect((await listAll(store)).map((i) => (i.type === 'object' ? i.key : i.prefix)).sort()).toEqual([...keys, 'seed'].sort());
    expect(await readFile(join(outside, 'x'), 'utf8')).toBe('outside x');
    expect((await tree(outside)).sort()).toEqual(['secret', 'x']);
    const realRoot = await realpath(root);
    for (const key of keys) expect((await store.dataPath(key)).startsWith(`${realRoot}${sep}`), key).toBe(true);
  });

  it('refuses a symlinked directory planted inside the root', async () => {
    await symlink(outside, join(root, dirOf('evil')));
    await expectCode(store.put('evil/x', 'overwrite'), 'AccessDenied');
    await expectCode(store.put('evil/new/deeper', 'create'), 'AccessDenied');
    await expectCode(store.get('evil/x'), 'AccessDenied');
    await expectCode(store.head('evil/secret'), 'AccessDenied');
    await expectCode(store.copy('evil/secret', 'stolen'), 'AccessDenied');
    await expectCode(store.copy('seed', 'evil/x'), 'AccessDenied');
    await expectCode(store.delete('evil/x'), 'AccessDenied');
    expect((await listAll(store)).map((i) => (i.type === 'object' ? i.key : i.prefix))).toEqual(['seed']);
    expect(await tree(outside)).toEqual(['secret', 'x']);
    expect(await readFile(join(outside, 'x'), 'utf8')).toBe('outside x');
  });

  it('refuses a symlinked directory deeper in the path', async () => {
    await store.put('a/b/c', 'inside');
    await rm(join(root, dirOf('a'), dirOf('b')), { recursive: true });
    await symlink(outside, join(root, dirOf('a'), dirOf('b')));
    await expectCode(store.get('a/b/x'), 'AccessDenied');
    await expectCode(store.put('a/b/x', 'overwrite'), 'AccessDenied');
    expect(await readFile(join(outside, 'x'), 'utf8')).toBe('outside x');
  });

  it('refuses a symlink planted as an object file, and never writes through it', async () => {
    await symlink(join(outside, 'secret'), join(root, 'link'));
    await expectCode(store.get('link'), 'AccessDenied');
    await expectCode(store.head('link'), 'AccessDenied');
    await expectCode(store.copy('link', 'stolen'), 'AccessDenied');
    await store.put('link', 'replaced').catch(() => undefined);
    await store.delete('link').catch(() => undefined);
    expect(await readFile(join(outside, 'secret'), 'utf8')).toBe('do not touch');
    expect((await listAll(store)).map((i) => (i.type === 'object' ? i.key : i.prefix))).not.toContain('stolen');
  });

  it('works through a root that is itself a symlink', async () => {
    const alias = join(base, 'alias');
    await symlink(root, alias);
    const s = new FsStore({ root: alias, fsync: false, layout });
    await s.put('via/alias', 'ok');
    expect((await getBuffer(store, 'via/alias')).toString()).toBe('ok');
    expect((await listAll(s)).map((i) => (i.type === 'object' ? i.key : i.prefix))).toEqual(['seed', 'via/alias']);
  });
});
