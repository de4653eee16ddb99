import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FsStore } from '../../providers/fs/index.js';
import { MemoryStore } from '../../providers/memory/index.js';
import { getBuffer } from '../../src/core/index.js';
import type { BlobStore, Body, ObjectMeta, PutOptions } from '../../src/core/index.js';
import { ForwardingStore } from '../../src/layers/forwarding-store.js';
import { offlineFirst, OfflineFirstStore } from '../../src/sync/offline-first.js';
import { SyncEngine } from '../../src/sync/sync-engine.js';
import { testStore } from '../../src/testing/index.js';
import { FaultyStore } from '../faults/faulty-store.js';
import { rotUnnoticed } from '../providers/fs-disk.js';
import { cleanupDirs, localTree, readFile, remoteTree, tempDir, writeFile } from './helpers.js';

// The store is a BlobStore like any other, with background rounds running under the suite's
// writes (a memory remote). Plain layout: a key segment must fit in a file name.
const roots: string[] = [];
testStore('offlineFirst(fs, memory)', {
  async create() {
    const root = await mkdtemp(join(tmpdir(), 'cloudmux-offline-first-'));
    roots.push(root);
    return offlineFirst(root, new MemoryStore(), { device: 'conf', fsync: false, intervalMs: 200, pushDelayMs: 10 });
  },
  async destroy(store) {
    await store.close();
    await Promise.all(roots.splice(0).map((r) => rm(r, { recursive: true, force: true })));
  },
  corrupt: (store, key) => rotUnnoticed((store as OfflineFirstStore).local, key),
  deviations: { oddKeys: 'plain layout (the local directory is a tree any program reads): a key segment must fit in one file name (255 bytes)' },
});

const open: BlobStore[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
  cleanupDirs();
});

function track<T extends BlobStore>(s: T): T {
  open.push(s);
  return s;
}

/** Polls `check` until it holds (no time limit of its own: the test's timeout is the limit). */
async function until(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; ; i++) {
    if (await check()) return;
    if (i % 200 === 199) console.log(`still waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function text(store: BlobStore, key: string): Promise<string | undefined> {
  try {
    return (await getBuffer(store, key)).toString();
  } catch {
    return undefined;
  }
}

const fast = { fsync: false, intervalMs: 100, pushDelayMs: 5, minBackoffMs: 20, maxBackoffMs: 100 } as const;

describe('offlineFirst', () => {
  it('remote down: writes are acknowledged, reads served locally, status says what is pending; all is pushed when the remote returns', async () => {
    const inner = new MemoryStore();
    const remote = new FaultyStore(inner).outage(true, 'ProviderUnavailable');
    const dir = tempDir('of-down');
    const store = track(offlineFirst(dir, remote, { ...fast, device: 'a' }));
    await store.put('docs/a.txt', 'A1');
    await store.put('docs/b.txt', 'B1');
    await store.put('docs/gone.txt', 'G');
    await store.delete('docs/gone.txt');
    expect(await text(store, 'docs/a.txt')).toBe('A1');
    expect(readFile(dir, 'docs/b.txt')).toBe('B1');
    await until(() => store.status().online === false, 'a round that finds the remote down');
    const s = store.status();
    expect(s.pending).toBeGreaterThanOrEqual(2);
    expect(s.pendingPaths).toEqual(expect.arrayContaining(['docs/a.txt', 'docs/b.txt']));
    expect(s.offlineReason).toMatch(/ProviderUnavailable/);
    expect(await remoteTree(inner)).toEqual(new Map());

    remote.outage(false);
    await until(() => store.status().pending === 0 && store.status().online === true, 'the push after the remote returned');
    expect(await remoteTree(inner)).toEqual(localTree(dir));
    expect([...(await remoteTree(inner)).keys()]).toEqual(['docs/a.txt', 'docs/b.txt']);
  });

  it('pulls a remote change in the background (no call by the user)', async () => {
    const remote = new MemoryStore();
    const dirA = tempDir('of-pull-a');
    const a = track(offlineFirst(dirA, remote, { ...fast, device: 'a' }));
    await a.put('shared/n.txt', 'from a');
    await until(() => a.status().pending === 0 && a.status().online === true, 'a pushed');
    // Another device writes through its own sync engine.
    const dirB = tempDir('of-pull-b');
    const b = SyncEngine.open({ local: dirB, remote, device: 'b', pair: 'p', fsync: false });
    await b.round();
    writeFile(dirB, 'shared/n.txt', 'edited by b');
    writeFile(dirB, 'shared/new.txt', 'new from b');
    expect((await b.round()).counts.done).toBe(2);
    b.close();
    await until(async () => (await text(a, 'shared/new.txt')) === 'new from b' && (await text(a, 'shared/n.txt')) === 'edited by b', 'a pulled b\'s changes');
    const head = await a.head('shared/n.txt');
    expect(head.size).toBe('edited by b'.length);
  });

  it('a conflict is resolved by policy: keep-both by default, newest where configured', async () => {
    const remote = new MemoryStore();
    const down = new FaultyStore(remote);
    const dirA = tempDir('of-conflict-a');
    const a = track(offlineFirst(dirA, down, { ...fast, device: 'a', conflict: ['*.log=newest'] }));
    await a.put('x.txt', 'base');
    await a.put('y.log', 'base');
    await until(() => a.status().pending === 0 && a.status().online === true, 'a pushed the bases');
    const dirB = tempDir('of-conflict-b');
    const b = SyncEngine.open({ local: dirB, remote, device: 'b', pair: 'p', fsync: false, conflict: ['*.log=newest'] });
    await b.round();

    down.outage(true, 'ProviderUnavailable');
    writeFile(dirB, 'x.txt', 'b edit');
    writeFile(dirB, 'y.log', 'b edit (older)');
    await b.round();
    await new Promise((r) => setTimeout(r, 5));
    await a.put('x.txt', 'a edit');
    await a.put('y.log', 'a edit (newer)');
    down.outage(false);
    await until(() => a.status().pending === 0 && a.status().online === true && a.status().conflicts >= 2, 'a reconciled both conflicts');

    // keep-both: the remote version at the path, a's as a conflict copy; newest: a's later write wins.
    const listed: string[] = [];
    for await (const i of a.list()) if (i.type === 'object') listed.push(i.key);
    const copy = listed.find((k) => k.startsWith('x.conflict-a-'));
    expect(copy, listed.join(', ')).toBeDefined();
    expect(await text(a, 'x.txt')).toBe('b edit');
    expect(await text(a, copy!)).toBe('a edit');
    expect(await text(a, 'y.log')).toBe('a edit (newer)');
    await until(async () => (await remoteTree(remote)).size === 3, 'the conflict copy pushed');
    expect(await remoteTree(remote)).toEqual(localTree(dirA));
  });

  it('a write acknowledged while a round pushes the same path stays pending (status) and goes out next round', async () => {
    // The adversary: the round has read and uploaded v1; v2 is written before the round records
    // v1 as the base (which clears the path's queue row).
    let entered!: () => void;
    const inUpload = new Promise<void>((r) => (entered = r));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    class SlowAnswer extends ForwardingStore {
      protected readonly layerName = 'SlowAnswer';
      override async put(key: string, body: Body, opts?: PutOptions): Promise<ObjectMeta> {
        const meta = await super.put(key, body, opts);
        if (key === 'k.txt') {
          entered();
          await gate;
        }
        return meta;
      }
    }
    const inner = new MemoryStore();
    const store = track(offlineFirst(tempDir('of-during'), new SlowAnswer(inner), { ...fast, device: 'a', background: false }));
    await store.put('k.txt', 'v1');
    const round = store.syncNow();
    await inUpload;
    await store.put('k.txt', 'v2');
    release();
    expect((await round).counts.done).toBe(1);
    expect(store.status().pendingPaths).toEqual(['k.txt']);
    await store.syncNow();
    expect(store.status().pending).toBe(0);
    expect((await getBuffer(inner, 'k.txt')).toString()).toBe('v2');
  });

  it('kill -9 after a write was acknowledged, before its push: the next store over the directory pushes it', async () => {
    const dir = tempDir('of-kill');
    const remoteRoot = tempDir('of-kill-remote');
    const child = spawn(process.execPath, ['--import', 'tsx', resolve('test/sync/offline-first-child.ts'), dir, remoteRoot, 'k/acked.txt', 'acked bytes'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<void>((r) => child.on('exit', () => r()));
    await new Promise<void>((done, fail) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('acked')) done();
      });
      child.on('exit', (code) => fail(new Error(`child exited (${code}) before acknowledging: ${err}`)));
    });
    child.kill('SIGKILL');
    await exited;
    expect(out).toMatch(/acked 1/);

    const remote = new FsStore({ root: remoteRoot });
    const store = track(offlineFirst(dir, remote, { ...fast, device: 'child', pair: 'p', background: false }));
    expect(store.status().pendingPaths).toEqual(['k/acked.txt']);
    const r = await store.syncNow();
    expect(r.online).toBe(true);
    expect(store.status().pending).toBe(0);
    expect((await getBuffer(remote, 'k/acked.txt')).toString()).toBe('acked bytes');
  });

  it('refuses keys of the sync\'s own areas', async () => {
    const store = track(offlineFirst(tempDir('of-keys'), new MemoryStore(), { ...fast, background: false }));
    await expect(store.put('.cloudmux_versions/x', 'no')).rejects.toMatchObject({ code: 'InvalidKey' });
    await expect(store.put('.cloudmux-sync/x', 'no')).rejects.toMatchObject({ code: 'InvalidKey' });
    expect(store.toString()).toMatch(/^OfflineFirst\(file:\/\/.*, memory/);
  });
});
