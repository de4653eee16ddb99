import { afterEach, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryStore } from '../../providers/memory/index.js';
import { getText } from '../../src/core/index.js';
import { SyncEngine } from '../../src/sync/sync-engine.js';
import { offlineFirst, type OfflineFirstOptions, type OfflineFirstStore } from '../../src/sync/offline-first.js';
import { cleanupDirs, remoteTree, tempDir, writeFile } from './helpers.js';

// offlineFirst(dir, remote, { profile }) with the semantics of `cloudmux sync --profile`.

afterEach(cleanupDirs);
const open: OfflineFirstStore[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

/** A remote holding `files`, written by another device's sync. */
async function seeded(files: Record<string, string | Buffer>): Promise<MemoryStore> {
  const remote = new MemoryStore();
  const dir = tempDir('seed');
  for (const [p, c] of Object.entries(files)) writeFile(dir, p, c);
  const e = SyncEngine.open({ local: dir, remote, device: 'seed', pair: 'p', fsync: false });
  try {
    const r = await e.round();
    expect(r.counts.failed).toBe(0);
  } finally {
    e.close();
  }
  return remote;
}

function store(dir: string, remote: MemoryStore, opts: OfflineFirstOptions): OfflineFirstStore {
  const s = offlineFirst(dir, remote, { device: 'phone', fsync: false, background: false, ...opts });
  open.push(s);
  return s;
}

describe('offlineFirst with a device profile', () => {
  it('a preset by name (mobile): excluded paths never move either way, and on its metered link only small files go', async () => {
    const remote = await seeded({ 'notes/a.md': 'remote note', 'node_modules/x.js': 'dep', 'photos/big.jpg': Buffer.alloc(2 * 1024 * 1024, 7) });
    const dir = tempDir('of-mobile');
    const s = store(dir, remote, { profile: 'mobile' });
    await s.put('notes/b.md', 'local note');
    await s.put('build/out.o', 'object file');
    await s.put('.DS_Store', 'litter');
    await s.put('video.mp4', Buffer.alloc(2 * 1024 * 1024, 1));
    // Excluded writes are kept on the device and owe nothing.
    expect(s.status().pendingPaths.sort()).toEqual(['notes/b.md', 'video.mp4']);

    const r = await s.syncNow();
    expect(r.online).toBe(true);
    expect(r.counts.failed).toBe(0);
    expect(await getText(s, 'notes/a.md')).toBe('remote note');
    expect(existsSync(join(dir, 'node_modules/x.js'))).toBe(false);
    // Metered: the 2 MiB files wait (critical is ≤ 1 MiB in the preset), reported and still owed.
    expect(r.skipped.filter((x) => x.reason === 'metered').map((x) => x.path).sort()).toEqual(['photos/big.jpg', 'video.mp4']);
    expect(existsSync(join(dir, 'photos/big.jpg'))).toBe(false);
    expect([...(await remoteTree(remote)).keys()].sort()).toEqual(['node_modules/x.js', 'notes/a.md', 'notes/b.md', 'photos/big.jpg']);
    expect(s.status().pendingPaths).toEqual(['video.mp4']);
    expect(await getText(s, 'build/out.o')).toBe('object file');
    expect(JSON.parse(s.engine.state.getMeta('profile')!)).toMatchObject({ name: 'mobile' });
  });

  it('metered: false overrides the profile, as --no-metered does', async () => {
    const remote = await seeded({ 'photos/big.jpg': Buffer.alloc(2 * 1024 * 1024, 7) });
    const dir = tempDir('of-unmetered');
    const s = store(dir, remote, { profile: 'mobile', metered: false });
    await s.put('video.mp4', Buffer.alloc(2 * 1024 * 1024, 1));
    const r = await s.syncNow();
    expect(r.skipped).toEqual([]);
    expect(existsSync(join(dir, 'photos/big.jpg'))).toBe(true);
    expect((await remoteTree(remote)).has('video.mp4')).toBe(true);
    expect(s.status().pending).toBe(0);
  });

  it('a named profile of the config, and list-only paths: known without their bytes, downloaded on fetch', async () => {
    const remote = await seeded({ 'docs/a.txt': 'a', 'archive/2019.tar': 'old bytes', 'tmp/x': 'scratch' });
    const dir = tempDir('of-listonly');
    const profiles = { laptop: { extends: 'desktop' as const, exclude: ['tmp/**'], listOnly: ['archive/**'] } };
    const s = store(dir, remote, { profile: 'laptop', profiles });
    await s.syncNow();
    expect(await getText(s, 'docs/a.txt')).toBe('a');
    expect(existsSync(join(dir, 'tmp/x'))).toBe(false);
    expect(existsSync(join(dir, 'archive/2019.tar'))).toBe(false);
    expect(s.status().listOnly).toEqual([{ path: 'archive/2019.tar', size: 9 }]);

    const r = await s.fetch(['archive/2019.tar']);
    expect(r.counts.failed).toBe(0);
    expect(await getText(s, 'archive/2019.tar')).toBe('old bytes');
    expect(s.status().listOnly).toEqual([]);
  });

  it('a profile spec object, and an unknown name refused (InvalidArgument naming the choices) before anything is created', async () => {
    const remote = await seeded({ 'keep/a': 'a', 'skip/b': 'b' });
    const dir = tempDir('of-spec');
    const s = store(dir, remote, { profile: { include: ['keep/**'] } });
    await s.syncNow();
    expect(existsSync(join(dir, 'keep/a'))).toBe(true);
    expect(existsSync(join(dir, 'skip/b'))).toBe(false);

    const fresh = tempDir('of-unknown');
    expect(() => offlineFirst(fresh, remote, { profile: 'tablet', background: false }))
      .toThrow(expect.objectContaining({ code: 'InvalidArgument', message: expect.stringContaining('mobile, desktop, server') as string }) as Error);
    expect(existsSync(join(fresh, '.cloudmux-sync'))).toBe(false);
  });
});
