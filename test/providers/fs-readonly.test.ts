import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, open, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsStore } from '../../providers/fs/index.js';
import { getBuffer, listAll } from '../../src/core/index.js';
import { expectCode, sha256Hex } from '../../src/testing/index.js';
import { runCli } from '../cli/run-cli.js';

/** Every entry under `root` with what a write would change (not atime: reading may move it). */
async function snapshot(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  async function walk(dir: string): Promise<void> {
    for (const name of (await readdir(dir)).sort()) {
      const path = join(dir, name);
      const st = await lstat(path, { bigint: true });
      const digest = st.isFile() ? createHash('sha256').update(await readFile(path)).digest('hex').slice(0, 16) : '';
      out[relative(root, path)] = `${st.mode}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}:${digest}`;
      if (st.isDirectory()) await walk(path);
    }
  }
  const st = await lstat(root, { bigint: true });
  out['.'] = `${st.mode}:${st.ino}:${st.mtimeNs}:${st.ctimeNs}`;
  await walk(root);
  return out;
}

describe('fs read-only: sources and read-only commands leave the tree untouched', () => {
  let base: string;
  let env: Record<string, string>;

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'cloudmux-fs-ro-'));
    env = { XDG_STATE_HOME: join(base, 'state') };
  });
  afterEach(async () => {
    await rm(base, { recursive: true, force: true });
  });

  /**
   * A source as users have them: files by hand (no sidecars), files a store wrote (sidecars in
   * .cloudmux), one of those rewritten since (its sidecar in doubt), and an hour-old temp file a
   * writer left behind (what a read-write listing would sweep).
   */
  async function makeSource(): Promise<string> {
    const src = join(base, 'src');
    await mkdir(join(src, 'hand', 'deep'), { recursive: true });
    await writeFile(join(src, 'hand', 'a.txt'), 'by hand a');
    await writeFile(join(src, 'hand', 'deep', 'b.bin'), Buffer.alloc(70_000, 3));
    const store = new FsStore({ root: src, fsync: false });
    await store.put('stored/c.txt', 'stored c', { metadata: { m: '1' } });
    await store.put('stored/d.txt', 'stored d');
    const fh = await open(join(src, 'stored', 'd.txt'), 'r+');
    await fh.write('STORED D', 0);
    await fh.close();
    const old = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await writeFile(join(src, 'hand', '.cloudmux-tmp-0123456789abcdef'), 'leftover');
    await utimes(join(src, 'hand', '.cloudmux-tmp-0123456789abcdef'), old, old);
    return src;
  }

  it('ls, cat, verify, migrate --dry-run and migrate from a local tree change nothing in it', async () => {
    const src = await makeSource();
    const before = await snapshot(src);
    const run = async (args: string[], code = 0) => {
      const r = await runCli(args, { env });
      expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(code);
      expect(await snapshot(src), `cloudmux ${args.join(' ')} changed the source`).toEqual(before);
      return r;
    };
    expect((await run(['ls', '-R', src])).out.toString()).toContain('stored/d.txt');
    await run(['ls', `file://${src}/hand/`]);
    expect((await run(['cat', join(src, 'stored', 'd.txt')])).out.toString()).toBe('STORED D');
    expect((await run(['cat', `file://${src}/hand/a.txt`])).out.toString()).toBe('by hand a');

    const dst = join(base, 'dst');
    await run(['migrate', '--dry-run', src, dst]);
    await expect(lstat(dst)).rejects.toMatchObject({ code: 'ENOENT' }); // A dry run creates no destination either.
    await run(['migrate', src, dst]);
    await run(['migrate', src, 'memory://ro-check']);
    await run(['verify', src, dst]);
    await run(['verify', '--download', src, dst]);
    // Migrated as the source holds them now: the rewritten file's new bytes.
    const copy = new FsStore({ root: dst });
    expect((await getBuffer(copy, 'stored/d.txt', { verify: true })).toString()).toBe('STORED D');
    expect((await copy.head('stored/c.txt')).metadata.m).toBe('1');
    expect((await listAll(copy)).map((i) => (i.type === 'object' ? i.key : i.prefix))).toEqual(['hand/a.txt', 'hand/deep/b.bin', 'stored/c.txt', 'stored/d.txt']);
    // A dry run over the existing destination writes nothing there either.
    const dstBefore = await snapshot(dst);
    await run(['migrate', '--dry-run', src, dst]);
    expect(await snapshot(dst)).toEqual(dstBefore);
  });

  it('ls of a directory that does not exist fails with NotFound (exit 1) and creates nothing', async () => {
    const missing = join(base, 'no', 'such', 'dir');
    const r = await runCli(['ls', missing], { env });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/NotFound/);
    await expect(lstat(join(base, 'no'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('the store API: reads answer, writes fail AccessDenied, digests are not stored', async () => {
    const src = await makeSource();
    const before = await snapshot(src);
    const store = new FsStore({ root: src, readOnly: true });
    expect((await store.head('hand/a.txt')).checksums.sha256).toBe(sha256Hex('by hand a'));
    expect((await store.head('stored/d.txt')).checksums.sha256).toBe(sha256Hex('STORED D'));
    expect((await getBuffer(store, 'hand/deep/b.bin', { verify: true })).byteLength).toBe(70_000);
    expect(await listAll(store)).toHaveLength(4);
    await expectCode(store.put('new', 'x'), 'AccessDenied');
    await expectCode(store.copy('hand/a.txt', 'new'), 'AccessDenied');
    await expectCode(store.updateMetadata('hand/a.txt', { metadata: { a: 'b' } }), 'AccessDenied');
    await expectCode(store.delete('hand/a.txt'), 'AccessDenied');
    expect(await snapshot(src)).toEqual(before);

    // A missing root: an empty store (a destination not written yet), or NotFound without createRoot.
    const absent = join(base, 'absent');
    expect(await listAll(new FsStore({ root: absent, readOnly: true }))).toEqual([]);
    await expectCode(new FsStore({ root: absent, readOnly: true }).head('k'), 'NotFound');
    await expectCode(listAll(new FsStore({ root: absent, readOnly: true, createRoot: false })), 'NotFound');
    await expect(lstat(absent)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
