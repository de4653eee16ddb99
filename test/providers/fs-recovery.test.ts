import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { appendFile, lstat, mkdtemp, open, readdir, realpath, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsStore } from '../../providers/fs/index.js';
import type { FsLayout } from '../../providers/fs/config.js';
import { getBuffer, listAll, type ListItem } from '../../src/core/index.js';
import { expectCode, sha256Hex } from '../../src/testing/index.js';

const HOUR = 60 * 60 * 1000;

async function age(path: string, ms: number): Promise<void> {
  const t = new Date(Date.now() - ms);
  await utimes(path, t, t);
}

/** A pid that belonged to a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((resolve) => child.on('exit', resolve));
  return child.pid!;
}

function keysOf(items: ListItem[]): string[] {
  return items.map((i) => (i.type === 'object' ? i.key : `p:${i.prefix}`));
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(() => true, () => false);
}

/** Where each layout keeps a key's files besides its data (see layout.ts and plain-layout.ts). */
function pathsOf(layout: FsLayout, store: FsStore) {
  const hidden = async (...parts: string[]) => join(await realpath(store.options.root), '.cloudmux', ...parts);
  return {
    /** A temp file (of a put in flight, or a crash leftover) beside `key`'s data file. */
    async temp(key: string, hex: string): Promise<string> {
      const data = await store.dataPath(key);
      return join(dirname(data), layout === 'plain' ? `.cloudmux-tmp-${hex}` : `${basename(data)}%t${hex}`);
    },
    async sidecar(key: string, inode: bigint): Promise<string> {
      const data = await store.dataPath(key);
      return layout === 'plain' ? hidden('meta', ...key.split('/'), `${inode}.json`) : join(dirname(data), `${basename(data)}%m${inode}`);
    },
    async lock(key: string): Promise<string> {
      const data = await store.dataPath(key);
      return layout === 'plain' ? hidden('locks', createHash('sha256').update(key).digest('hex')) : join(dirname(data), `${basename(data)}%l`);
    },
    /** Names in a data directory that are the store's own temp or lock files. */
    isOwn: (name: string): boolean => (layout === 'plain' ? name.startsWith('.cloudmux-') : /%[tl]/.test(name)),
  };
}

for (const layout of ['plain', 'escaped'] as FsLayout[]) describe(`fs (layout=${layout}): crash leftovers and sidecar recovery`, () => {
  let root: string;
  let store: FsStore;
  let paths: ReturnType<typeof pathsOf>;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'cloudmux-fs-recovery-'));
    store = new FsStore({ root, fsync: false, lockTimeoutMs: 2_000, layout });
    paths = pathsOf(layout, store);
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('a put that crashed before its commit leaves the old object whole; list ignores then removes the leftovers', async () => {
    const v1 = await store.put('dir/k', 'version one', { metadata: { n: '1' } });
    const data = await store.dataPath('dir/k');
    const dir = dirname(data);
    // What a crash mid-put leaves: a partial temp file, and (crash between the two renames) the
    // temp data file plus a sidecar already renamed for that temp file's inode.
    const partial = await paths.temp('dir/k', '0123456789abcdef');
    await writeFile(partial, 'version tw');
    const temp = await paths.temp('dir/k', 'fedcba9876543210');
    await writeFile(temp, 'version two');
    const tempIno = (await stat(temp, { bigint: true })).ino;
    const orphan = await paths.sidecar('dir/k', tempIno);
    await writeFile(orphan, JSON.stringify({ v: 1, key: 'dir/k', inode: String(tempIno), size: 11, etag: 'e2', lastModified: new Date().toISOString(), contentType: 'x/y', metadata: {}, checksums: {} }));
    const lock = await paths.lock('dir/k');
    await writeFile(lock, JSON.stringify({ pid: await deadPid(), host: hostname(), token: 't' }));
    // A leftover of a key that no longer exists at all.
    const gone = await paths.temp('dir/gone', '00ff');
    await writeFile(gone, 'x');
    // Plain keeps a key's sidecars in their own directory, which listings do not read: a stale one
    // there is never trusted (wrong inode) and is removed by the key's next write instead.
    const swept = layout === 'plain' ? [partial, temp, lock, gone] : [partial, temp, orphan, lock, gone];
    const leftovers = [partial, temp, orphan, lock, gone];

    const listed = await listAll(store);
    expect(keysOf(listed)).toEqual(['dir/k']);
    expect(listed[0]!.type === 'object' && listed[0]!.etag).toBe(v1.etag);
    const head = await store.head('dir/k');
    expect(head.etag).toBe(v1.etag);
    expect(head.metadata.n).toBe('1');
    expect((await getBuffer(store, 'dir/k', { verify: true })).toString()).toBe('version one');
    // Fresh leftovers may belong to a put in flight: kept.
    for (const path of leftovers) expect(await exists(path), path).toBe(true);

    for (const path of leftovers) await age(path, 2 * HOUR);
    await listAll(store);
    for (const path of swept) expect(await exists(path), path).toBe(false);
    expect((await readdir(dir)).sort()).toEqual(layout === 'plain' ? ['k'] : ['k', `k%m${(await stat(data, { bigint: true })).ino}`]);
    expect(await exists(await paths.sidecar('dir/k', (await stat(data, { bigint: true })).ino))).toBe(true);
    // The dead writer's lock was removed by the sweep; a live put would have broken it anyway.
    await store.put('dir/k', 'version three');
    expect((await getBuffer(store, 'dir/k', { verify: true })).toString()).toBe('version three');
    expect(await exists(orphan)).toBe(false);
  });

  it('a lock left by a dead process on this host is broken at once', async () => {
    await store.put('k', 'one');
    const lock = await paths.lock('k');
    await writeFile(lock, JSON.stringify({ pid: await deadPid(), host: hostname(), token: 'dead' }));
    await store.put('k', 'two', { ifMatch: (await store.head('k')).etag });
    expect((await getBuffer(store, 'k')).toString()).toBe('two');
    await expect(lstat(lock)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a live lock of another host blocks writers (Transient), and is broken once older than staleLockMs', async () => {
    const s = new FsStore({ root, fsync: false, lockTimeoutMs: 300, staleLockMs: 60_000, layout });
    await s.put('k', 'one');
    const lock = await paths.lock('k');
    await writeFile(lock, JSON.stringify({ pid: 1, host: 'some-other-host', token: 'remote' }));
    const err = await expectCode(s.put('k', 'two'), 'Transient');
    expect(err.retryable).toBe(true);
    await expectCode(s.delete('k'), 'Transient');
    expect((await getBuffer(s, 'k')).toString()).toBe('one');
    await age(lock, 61_000);
    await s.put('k', 'two');
    expect((await getBuffer(s, 'k')).toString()).toBe('two');
  });

  it('a missing sidecar is detected and recomputed once, with the etag listings already showed', async () => {
    const body = 'x'.repeat(100_000);
    await store.put('a/b', body, { contentType: 'text/plain', metadata: { keep: 'me' } });
    const data = await store.dataPath('a/b');
    const ino = (await stat(data, { bigint: true })).ino;
    await rm(await paths.sidecar('a/b', ino));

    const [item] = await listAll(store);
    expect(item?.type === 'object' && item.checksums).toBeFalsy();
    const head = await store.head('a/b');
    expect(head.checksums.sha256).toBe(sha256Hex(body));
    expect(head.metadata.cloudmux_sha256).toBe(sha256Hex(body));
    expect(head.size).toBe(100_000);
    expect(item?.type === 'object' && item.etag).toBe(head.etag);
    // Metadata that lived only in the lost sidecar is gone; the bytes are intact and verifiable.
    expect(head.metadata.keep).toBeUndefined();
    expect(head.contentType).toBe('application/octet-stream');
    expect((await getBuffer(store, 'a/b', { verify: true })).toString()).toBe(body);
    // Recorded: the next head does not need to recompute.
    expect(await exists(await paths.sidecar('a/b', ino))).toBe(true);
    expect((await store.head('a/b')).etag).toBe(head.etag);
  });

  it('a data file replaced behind the store (new inode) is never described by the old sidecar', async () => {
    const old = await store.put('k', 'old bytes', { metadata: { v: 'old' } });
    const data = await store.dataPath('k');
    await writeFile(`${data}.tmp-by-hand`, 'new bytes by hand');
    await rename(`${data}.tmp-by-hand`, data);
    const head = await store.head('k');
    expect(head.etag).not.toBe(old.etag);
    expect(head.size).toBe('new bytes by hand'.length);
    expect(head.checksums.sha256).toBe(sha256Hex('new bytes by hand'));
    expect(head.metadata.v).toBeUndefined();
    expect((await getBuffer(store, 'k', { verify: true })).toString()).toBe('new bytes by hand');
  });

  it('a data file rewritten in place to another size keeps its metadata and gets fresh digests', async () => {
    const old = await store.put('k', 'abc', { contentType: 'text/x-a', metadata: { v: 'kept' } });
    await appendFile(await store.dataPath('k'), 'def');
    const head = await store.head('k');
    expect(head.size).toBe(6);
    expect(head.etag).not.toBe(old.etag);
    expect(head.checksums.sha256).toBe(sha256Hex('abcdef'));
    expect(head.contentType).toBe('text/x-a');
    expect(head.metadata.v).toBe('kept');
  });

  it('files dropped into the root by hand are objects', async () => {
    await writeFile(join(root, 'dropped.txt'), 'by hand');
    await store.put('other', 'x');
    expect(keysOf(await listAll(store))).toEqual(['dropped.txt', 'other']);
    const head = await store.head('dropped.txt');
    expect(head.checksums.sha256).toBe(sha256Hex('by hand'));
    expect((await getBuffer(store, 'dropped.txt', { verify: true })).toString()).toBe('by hand');
    await store.delete('dropped.txt');
    expect(keysOf(await listAll(store))).toEqual(['other']);
  });

  it('failed, aborted and rejected puts leave no temp files behind', async () => {
    await store.put('d/k', 'old');
    async function* failing(): AsyncGenerator<Buffer> {
      yield Buffer.alloc(300_000, 1);
      throw new Error('source broke');
    }
    const err = await expectCode(store.put('d/k', failing()), 'ProviderError');
    expect(err.message).toMatch(/reading the body failed/);
    const ac = new AbortController();
    async function* slow(): AsyncGenerator<Buffer> {
      yield Buffer.alloc(300_000, 2);
      ac.abort();
      yield Buffer.alloc(300_000, 3);
    }
    await expectCode(store.put('d/k', slow(), { signal: ac.signal }), 'Aborted');
    await expectCode(store.put('d/k', 'new', { expect: { sha256: sha256Hex('other') } }), 'IntegrityError');
    await expectCode(store.put('d/k', 'new', { ifNoneMatch: '*' }), 'AlreadyExists');
    await expectCode(store.put('d/new', 'new', { ifMatch: 'nope' }), 'NotFound');
    const dir = dirname(await store.dataPath('d/k'));
    const names = await readdir(dir);
    expect(names.filter(paths.isOwn)).toEqual([]);
    expect(names).toHaveLength(layout === 'plain' ? 1 : 2);
    if (layout === 'plain') expect(await readdir(join(await realpath(root), '.cloudmux', 'tmp'))).toEqual([]);
    expect((await getBuffer(store, 'd/k', { verify: true })).toString()).toBe('old');
  });

  it('a file truncated behind the store fails the read instead of ending short', async () => {
    await store.put('big', Buffer.alloc(500_000, 7));
    const { body } = await store.get('big');
    const fh = await open(await store.dataPath('big'), 'r+');
    await fh.truncate(200_000);
    await fh.close();
    const chunks: Buffer[] = [];
    await expect((async () => {
      for await (const c of body) chunks.push(c as Buffer);
    })()).rejects.toMatchObject({ code: 'IntegrityError' });
  });
});

describe('fs: aborting a read', () => {
  it('fails the body with Aborted and releases the file', async () => {
    const root = await mkdtemp(join(tmpdir(), 'cloudmux-fs-abort-'));
    try {
      const store = new FsStore({ root, fsync: false });
      await store.put('big', Buffer.alloc(2_000_000, 1));
      const ac = new AbortController();
      const { body } = await store.get('big', { signal: ac.signal });
      let read = 0;
      await expect((async () => {
        for await (const c of body) {
          read += (c as Buffer).byteLength;
          if (read > 300_000) ac.abort();
        }
      })()).rejects.toMatchObject({ code: 'Aborted' });
      expect(read).toBeLessThan(2_000_000);
      expect(body.destroyed).toBe(true);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
