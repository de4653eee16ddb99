import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import type { BlobStore } from '../../src/core/index.js';
import { parseConfig } from '../../src/config/load.js';
import { CloudmuxError } from '../../src/core/errors.js';
import { PROFILE_PRESETS, SyncProfile, resolveProfile } from '../../src/sync/profiles.js';
import { SyncEngine, type RoundReport, type SyncEngineOptions } from '../../src/sync/sync-engine.js';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { routerFixture, type Fixture } from '../router/fixture.js';
import { runCli } from '../cli/run-cli.js';
import { cleanupDirs, localTree, readFile, remoteTree, removeFile, sha, tempDir, writeFile } from './helpers.js';

afterEach(cleanupDirs);

const engines: SyncEngine[] = [];
const fixtures: Fixture[] = [];
afterEach(async () => {
  for (const e of engines.splice(0)) e.close();
  for (const f of fixtures.splice(0)) await f.close();
});

type Device = SyncEngine & { dir: string };

function device(remote: BlobStore, name: string, extra: Partial<SyncEngineOptions> = {}, dir = tempDir(`profile-${name}`)): Device {
  const e = SyncEngine.open({ local: dir, remote, device: name, pair: 'memory://test', fsync: false, ...extra });
  engines.push(e);
  return Object.assign(e, { dir });
}

/** The same directory and state reopened under another profile (what `--profile` on the next run does). */
function reopen(d: Device, profile: SyncProfile | undefined): Device {
  d.close();
  engines.splice(engines.indexOf(d), 1);
  return device(d.remote, d.device, { profile }, d.dir);
}

const noFailures = (r: RoundReport): void => {
  expect(r.online).toBe(true);
  expect(r.counts.failed).toBe(0);
};

/** Every path a round planned or acted on. */
const touched = (r: RoundReport): string[] => [...r.planned.flatMap((a) => ('from' in a ? [a.path, a.from] : [a.path])), ...r.outcomes.map((o) => o.action.path)];

describe('device profiles', () => {
  it('a path outside the profile is neither pushed, pulled nor deleted, on either side', async () => {
    const remote = new MemoryStore();
    const profile = new SyncProfile('p', { include: ['docs/**', '*.md'], exclude: ['**/*.log'] });
    const phone = device(remote, 'phone', { profile });
    const laptop = device(remote, 'laptop');
    writeFile(phone.dir, 'docs/a.txt', 'a');
    writeFile(phone.dir, 'readme.md', 'r');
    writeFile(phone.dir, 'docs/debug.log', 'phone log');
    writeFile(phone.dir, 'photos/big.jpg', 'phone photo');
    noFailures(await phone.round());
    // Only the included paths went up.
    expect([...(await remoteTree(remote)).keys()]).toEqual(['docs/a.txt', 'readme.md']);

    writeFile(laptop.dir, 'photos/big.jpg', 'laptop photo');
    writeFile(laptop.dir, 'photos/other.jpg', 'o');
    writeFile(laptop.dir, 'docs/debug.log', 'laptop log');
    noFailures(await laptop.round());
    const r = await phone.round();
    noFailures(r);
    expect(touched(r).filter((p) => !['docs/a.txt', 'readme.md'].includes(p))).toEqual([]);
    // Nothing came down, the phone's own copies stand.
    expect(readFile(phone.dir, 'photos/big.jpg')).toBe('phone photo');
    expect(readFile(phone.dir, 'photos/other.jpg')).toBeUndefined();
    expect(readFile(phone.dir, 'docs/debug.log')).toBe('phone log');

    // Deletes of excluded paths do not cross either way.
    removeFile(phone.dir, 'photos/big.jpg');
    noFailures(await phone.round());
    expect(readFile(laptop.dir, 'photos/big.jpg')).toBe('laptop photo');
    expect((await remoteTree(remote)).has('photos/big.jpg')).toBe(true);
    removeFile(laptop.dir, 'docs/debug.log');
    noFailures(await laptop.round());
    noFailures(await phone.round());
    expect(readFile(phone.dir, 'docs/debug.log')).toBe('phone log');

    // Included paths still sync both ways.
    writeFile(laptop.dir, 'docs/b.txt', 'b');
    noFailures(await laptop.round());
    noFailures(await phone.round());
    expect(readFile(phone.dir, 'docs/b.txt')).toBe('b');
  });

  it('switching a profile to exclude a synced path leaves it on both sides, and an inclusion later deletes nothing', async () => {
    const remote = new MemoryStore();
    let phone = device(remote, 'phone');
    const laptop = device(remote, 'laptop');
    writeFile(phone.dir, 'keep.txt', 'k');
    writeFile(phone.dir, 'media/song.mp3', 'song');
    writeFile(phone.dir, 'media/clip.mp4', 'clip');
    noFailures(await phone.round());
    noFailures(await laptop.round());
    expect(localTree(laptop.dir)).toEqual(localTree(phone.dir));

    const narrow = new SyncProfile('narrow', { exclude: ['media/**'] });
    phone = reopen(phone, narrow);
    let r = await phone.round();
    noFailures(r);
    expect(r.planned).toEqual([]);
    expect(phone.state.base('media/song.mp3')).toBeUndefined();
    expect(phone.state.base('keep.txt')).toBeDefined();
    expect(readFile(phone.dir, 'media/song.mp3')).toBe('song');
    expect((await remoteTree(remote)).has('media/song.mp3')).toBe(true);

    // While excluded: the phone frees space, the laptop edits. Neither crosses.
    removeFile(phone.dir, 'media/song.mp3');
    writeFile(laptop.dir, 'media/clip.mp4', 'clip v2');
    noFailures(await laptop.round());
    noFailures(await phone.round());
    expect(readFile(phone.dir, 'media/clip.mp4')).toBe('clip');
    noFailures(await laptop.round());
    expect(readFile(laptop.dir, 'media/song.mp3')).toBe('song');

    // Included again: the removed file comes back (no delete was recorded), the edit is a conflict
    // under the default keep-both: both versions survive.
    phone = reopen(phone, undefined);
    r = await phone.round();
    noFailures(r);
    expect(r.outcomes.some((o) => o.action.kind === 'delete-remote' || o.action.kind === 'delete-local')).toBe(false);
    expect(readFile(phone.dir, 'media/song.mp3')).toBe('song');
    expect((await remoteTree(remote)).get('media/song.mp3')).toBe(sha('song'));
    const contents = [...localTree(phone.dir).values()];
    expect(contents).toContain(sha('clip'));
    expect(contents).toContain(sha('clip v2'));
  });

  it('a file above the size cap is skipped and reported on both sides, and nothing is deleted for it', async () => {
    const remote = new MemoryStore();
    const profile = new SyncProfile('small', { maxFileSize: 1000 });
    const phone = device(remote, 'phone', { profile });
    const laptop = device(remote, 'laptop');
    writeFile(phone.dir, 'small.txt', 's');
    writeFile(phone.dir, 'big-here.bin', Buffer.alloc(2000, 1));
    let r = await phone.round();
    noFailures(r);
    expect(r.skipped).toContainEqual(expect.objectContaining({ path: 'big-here.bin', reason: 'too-large' }));
    expect([...(await remoteTree(remote)).keys()]).toEqual(['small.txt']);

    writeFile(laptop.dir, 'big-there.bin', Buffer.alloc(5000, 2));
    noFailures(await laptop.round());
    r = await phone.round();
    noFailures(r);
    expect(r.skipped.map((s) => [s.path, s.reason])).toEqual(expect.arrayContaining([['big-here.bin', 'too-large'], ['big-there.bin', 'too-large']]));
    expect(readFile(phone.dir, 'big-there.bin')).toBeUndefined();
    expect(r.pending).toBe(0);

    // A synced file that grows over the cap on the other side: not downloaded, not deleted here.
    writeFile(laptop.dir, 'small.txt', Buffer.alloc(3000, 3));
    noFailures(await laptop.round());
    r = await phone.round();
    noFailures(r);
    expect(r.skipped).toContainEqual(expect.objectContaining({ path: 'small.txt', reason: 'too-large' }));
    expect(readFile(phone.dir, 'small.txt')).toBe('s');
    // Deleting the small local copy while the remote is over the cap does not delete the remote.
    removeFile(phone.dir, 'small.txt');
    noFailures(await phone.round());
    expect((await remoteTree(remote)).get('small.txt')).toBe(sha(Buffer.alloc(3000, 3)));
  });

  it('a profile\'s conflict rules apply, after --conflict rules', async () => {
    const remote = new MemoryStore();
    const profile = new SyncProfile('p', { conflict: ['notes/**=local', 'remote'] });
    const a = device(remote, 'a', { profile, conflict: ['notes/mine/**=remote'] });
    const b = device(remote, 'b');
    for (const p of ['notes/x.txt', 'notes/mine/y.txt', 'z.txt']) writeFile(a.dir, p, 'base');
    noFailures(await a.round());
    noFailures(await b.round());
    for (const p of ['notes/x.txt', 'notes/mine/y.txt', 'z.txt']) {
      writeFile(a.dir, p, 'from a');
      writeFile(b.dir, p, 'from b');
    }
    noFailures(await b.round());
    noFailures(await a.round());
    expect(readFile(a.dir, 'notes/x.txt')).toBe('from a');
    expect(readFile(a.dir, 'notes/mine/y.txt')).toBe('from b');
    expect(readFile(a.dir, 'z.txt')).toBe('from b');
  });

  it('over a change feed, a profile change brings newly included remote paths in', async () => {
    const fx = await routerFixture({ providers: ['m'] });
    fixtures.push(fx);
    let phone = device(fx.router, 'phone', { profile: new SyncProfile('docs', { include: ['docs/**'] }) });
    const laptop = device(fx.router, 'laptop');
    writeFile(laptop.dir, 'docs/a.txt', 'a');
    writeFile(laptop.dir, 'music/s.mp3', 's');
    noFailures(await laptop.round());
    noFailures(await phone.round());
    noFailures(await phone.round());
    expect([...localTree(phone.dir).keys()]).toEqual(['docs/a.txt']);
    phone = reopen(phone, undefined);
    noFailures(await phone.round());
    expect([...localTree(phone.dir).keys()]).toEqual(['docs/a.txt', 'music/s.mp3']);
  });
});

describe('priority and metered links', () => {
  it('within a round, the critical class goes first, then small before large', async () => {
    const remote = new MemoryStore();
    const profile = new SyncProfile('p', { priority: { rules: [{ class: 'critical', match: 'urgent/**' }, { class: 'bulk', match: 'archive/**' }] } });
    const a = device(remote, 'a', { profile, concurrency: 1 });
    const b = device(remote, 'b', { profile, concurrency: 1 });
    writeFile(a.dir, 'big.bin', Buffer.alloc(5000, 1));
    writeFile(a.dir, 'archive/tiny.txt', 't');
    writeFile(a.dir, 'small.txt', 's');
    writeFile(a.dir, 'urgent/large.bin', Buffer.alloc(3000, 2));
    writeFile(a.dir, 'mid.txt', 'm'.repeat(100));
    const order = ['urgent/large.bin', 'small.txt', 'mid.txt', 'big.bin', 'archive/tiny.txt'];
    let r = await a.round();
    noFailures(r);
    expect(r.outcomes.map((o) => o.action.path)).toEqual(order);
    r = await b.round();
    noFailures(r);
    expect(r.outcomes.map((o) => [o.action.kind, o.action.path])).toEqual(order.map((p) => ['download', p]));
  });

  it('on a metered link only the critical class moves; the rest waits, reported and queued, and moves once the link is not metered', async () => {
    const remote = new MemoryStore();
    const spec = { metered: true, priority: { rules: [{ class: 'critical' as const, match: '**/*.md' }] } };
    let phone = device(remote, 'phone', { profile: new SyncProfile('p', spec) });
    const laptop = device(remote, 'laptop');
    writeFile(laptop.dir, 'gone.bin', 'g');
    writeFile(laptop.dir, 'remote.bin', 'r');
    writeFile(laptop.dir, 'remote.md', 'rm');
    noFailures(await laptop.round());
    noFailures(await device(remote, 'seed', {}, phone.dir).round()); // the phone once synced unmetered
    engines.pop()!.close();
    removeFile(laptop.dir, 'gone.bin');
    writeFile(laptop.dir, 'remote.bin', 'r2');
    writeFile(laptop.dir, 'remote.md', 'rm2');
    noFailures(await laptop.round());
    writeFile(phone.dir, 'note.md', 'n');
    writeFile(phone.dir, 'photo.jpg', 'p');

    let r = await phone.round();
    noFailures(r);
    expect(r.skipped.filter((x) => x.reason === 'metered').map((x) => x.path).sort()).toEqual(['photo.jpg', 'remote.bin']);
    expect(readFile(phone.dir, 'remote.md')).toBe('rm2');
    expect(readFile(phone.dir, 'remote.bin')).toBe('r');
    expect(readFile(phone.dir, 'gone.bin')).toBeUndefined(); // a delete moves no content: it goes ahead
    expect([...(await remoteTree(remote)).keys()]).toEqual(['note.md', 'remote.bin', 'remote.md']);
    expect(r.pending).toBe(1);
    expect(phone.state.base('remote.bin')?.sha256).toBe(sha('r'));

    // The CLI's --no-metered: the engine option overrides the profile.
    phone.close();
    engines.splice(engines.indexOf(phone), 1);
    phone = device(remote, 'phone', { profile: new SyncProfile('p', spec), metered: false }, phone.dir);
    r = await phone.round();
    noFailures(r);
    expect(r.skipped).toEqual([]);
    expect(readFile(phone.dir, 'remote.bin')).toBe('r2');
    expect((await remoteTree(remote)).get('photo.jpg')).toBe(sha('p'));
    expect(r.pending).toBe(0);
  });

  it('the mobile preset is metered: files up to 1 MiB move, larger ones wait', async () => {
    const remote = new MemoryStore();
    const phone = device(remote, 'phone', { profile: resolveProfile('mobile') });
    writeFile(phone.dir, 'doc.txt', Buffer.alloc(1024 ** 2, 1));
    writeFile(phone.dir, 'song.mp3', Buffer.alloc(1024 ** 2 + 1, 2));
    const r = await phone.round();
    noFailures(r);
    expect([...(await remoteTree(remote)).keys()]).toEqual(['doc.txt']);
    expect(r.skipped).toEqual([expect.objectContaining({ path: 'song.mp3', reason: 'metered' })]);
  });
});

describe('list-only paths', () => {
  it('a list-only remote file is listed, not downloaded, arrives on fetch (metered too), syncs while here, and deleting the copy evicts it', async () => {
    const remote = new MemoryStore();
    const profile = new SyncProfile('p', { listOnly: ['videos/**'], metered: true, priority: { rules: [{ class: 'critical', maxSize: 100 }] } });
    const phone = device(remote, 'phone', { profile });
    const laptop = device(remote, 'laptop');
    writeFile(laptop.dir, 'videos/a.mp4', Buffer.alloc(500, 1));
    writeFile(laptop.dir, 'doc.txt', 'd');
    noFailures(await laptop.round());
    let r = await phone.round();
    noFailures(r);
    expect(readFile(phone.dir, 'doc.txt')).toBe('d');
    expect(readFile(phone.dir, 'videos/a.mp4')).toBeUndefined();
    expect(r.listed).toEqual([{ path: 'videos/a.mp4', size: 500 }]);
    expect(JSON.parse(phone.state.getMeta('listed')!)).toEqual(r.listed);

    phone.requestFetch(['videos/a.mp4']);
    r = await phone.round();
    noFailures(r);
    expect(localTree(phone.dir).get('videos/a.mp4')).toBe(sha(Buffer.alloc(500, 1)));
    expect(r.listed).toEqual([]);
    noFailures(await phone.round());
    expect(JSON.parse(phone.state.getMeta('fetch')!)).toEqual([]);

    // While here it syncs (the edit is small: critical on this metered link).
    writeFile(laptop.dir, 'videos/a.mp4', 'v2');
    noFailures(await laptop.round());
    noFailures(await phone.round());
    expect(readFile(phone.dir, 'videos/a.mp4')).toBe('v2');

    // Deleting the local copy evicts it: the remote keeps it, it is listed again.
    removeFile(phone.dir, 'videos/a.mp4');
    r = await phone.round();
    noFailures(r);
    expect(r.outcomes.filter((o) => o.action.kind === 'delete-remote')).toEqual([]);
    expect((await remoteTree(remote)).get('videos/a.mp4')).toBe(sha('v2'));
    expect(r.listed).toEqual([{ path: 'videos/a.mp4', size: 2 }]);
    noFailures(await laptop.round());
    expect(readFile(laptop.dir, 'videos/a.mp4')).toBe('v2');

    // A local file at a list-only path is uploaded as usual.
    writeFile(phone.dir, 'videos/b.mp4', 'b');
    noFailures(await phone.round());
    expect((await remoteTree(remote)).get('videos/b.mp4')).toBe(sha('b'));
  });
});

describe('profile presets and config', () => {
  it('presets: mobile caps size and leaves caches and build outputs out; server takes everything', () => {
    const mobile = resolveProfile('mobile');
    expect(mobile.maxFileSize).toBe(50 * 1024 ** 2);
    for (const p of ['app/node_modules/x/index.js', 'proj/build/out.o', '.cache/a', 'src/__pycache__/m.pyc', 'Photos/.DS_Store']) expect(mobile.includes(p)).toBe(false);
    for (const p of ['notes/todo.md', 'Photos/2026/img.jpg', '.config/app.toml']) expect(mobile.includes(p)).toBe(true);
    const desktop = resolveProfile('desktop');
    expect(desktop.maxFileSize).toBe(4 * 1024 ** 3);
    expect(desktop.includes('app/node_modules/x/index.js')).toBe(true);
    const server = resolveProfile('server');
    expect(server.includes('anything/at/all')).toBe(true);
    expect(server.tooLarge(2 ** 50)).toBe(false);
    expect(Object.keys(PROFILE_PRESETS)).toEqual(['mobile', 'desktop', 'server']);
  });

  it('config profiles parse, extend presets, and override a preset of the same name', () => {
    const cfg = parseConfig({
      providers: [{ name: 'm', url: 'memory://' }],
      sync: {
        profiles: {
          tablet: { extends: 'mobile', maxFileSize: '200M', conflict: ['*.md=newest'] },
          mobile: { maxFileSize: 10_000_000 },
          work: { include: ['work/**'], exclude: ['**/*.iso'], metered: true, priority: { rules: [{ class: 'critical', match: 'work/urgent/**', maxSize: '1M' }], default: 'bulk' } },
        },
      },
    });
    const defined = cfg.sync!.profiles;
    const tablet = resolveProfile('tablet', defined);
    expect(tablet.maxFileSize).toBe(200 * 1024 ** 2);
    expect(tablet.includes('a/node_modules/b')).toBe(false);
    expect(tablet.conflictRules()).toEqual(['*.md=newest']);
    const mobile = resolveProfile('mobile', defined);
    expect(mobile.maxFileSize).toBe(10_000_000);
    expect(mobile.exclude).toEqual(PROFILE_PRESETS.mobile.exclude);
    const work = resolveProfile('work', defined);
    expect(work.includes('work/a.txt')).toBe(true);
    expect(work.includes('work/disk.iso')).toBe(false);
    expect(work.includes('home/a.txt')).toBe(false);
    expect(work.metered).toBe(true);
    expect(work.priority.classify({ key: 'work/urgent/a', size: 1024 ** 2 })).toBe('critical');
    expect(work.priority.classify({ key: 'work/urgent/a', size: 1024 ** 2 + 1 })).toBe('bulk');
    expect(() => resolveProfile('nope', defined)).toThrow(/no such profile; expected one of: mobile, desktop, server, tablet, work/);
  });

  it('a bad profile is InvalidConfig naming each field', () => {
    let err: unknown;
    try {
      parseConfig({
        providers: [{ name: 'm', url: 'memory://' }],
        sync: { profiles: { phone: { maxFileSize: 'huge', exclude: [''], conflict: ['docs/**=sometimes'], extends: 'laptop', fetch: 1, priority: { rules: [{ class: 'urgent' }] } } } },
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CloudmuxError);
    expect((err as CloudmuxError).code).toBe('InvalidConfig');
    const msg = (err as Error).message;
    expect(msg).toContain('sync.profiles.phone.maxFileSize: expected a size');
    expect(msg).toContain('sync.profiles.phone.exclude[0]');
    expect(msg).toContain('sync.profiles.phone.conflict[0]: conflict policy "sometimes"');
    expect(msg).toMatch(/sync\.profiles\.phone\.extends: expected one of "mobile" \| "desktop" \| "server"/);
    expect(msg).toContain('sync.profiles.phone: unknown key "fetch"');
    expect(msg).toContain('sync.profiles.phone.priority.rules[0].class: expected one of "critical" | "normal" | "bulk"');
  });
});

describe('cloudmux sync --profile', () => {
  it('takes a config profile: excluded and oversized files stay put, reported, exit 0; a bad profile exits 2 and changes nothing', async () => {
    const dir = tempDir('cli-profile');
    const remoteDir = tempDir('cli-profile-remote');
    const remote = pathToFileURL(remoteDir).href;
    const config = join(tempDir('cli-profile-cfg'), 'cloudmux.yaml');
    writeFileSync(config, `providers:\n  - name: m\n    url: memory://\nsync:\n  profiles:\n    phone:\n      extends: mobile\n      maxFileSize: 1K\n      exclude: ["tmp/**"]\n`);
    writeFile(dir, 'notes.txt', 'n');
    writeFile(dir, 'tmp/scratch', 'x');
    writeFile(dir, 'video.bin', Buffer.alloc(4096, 1));
    let r = await runCli(['sync', dir, remote, '--device', 'phone', '--profile', 'phone', '--config', config]);
    expect(r.code).toBe(0);
    expect(r.err).toContain('skipped (too-large');
    expect(r.err).toContain('video.bin');
    expect(r.err).not.toContain('tmp/scratch');
    expect([...localTree(remoteDir).keys()]).toEqual(['notes.txt']);

    // Presets need no config.
    r = await runCli(['sync', dir, remote, '--profile', 'desktop']);
    expect(r.code).toBe(0);
    expect(readFile(remoteDir, 'video.bin')).toBeDefined();

    const bad = join(tempDir('cli-profile-bad'), 'cloudmux.yaml');
    writeFileSync(bad, `providers:\n  - name: m\n    url: memory://\nsync:\n  profiles:\n    phone:\n      maxFileSize: lots\n`);
    const fresh = tempDir('cli-profile-fresh');
    writeFile(fresh, 'a.txt', 'a');
    const before = localTree(remoteDir);
    r = await runCli(['sync', fresh, remote, '--profile', 'phone', '--config', bad]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('sync.profiles.phone.maxFileSize');
    expect(localTree(remoteDir)).toEqual(before);
    expect(existsSync(join(fresh, '.cloudmux-sync'))).toBe(false);

    r = await runCli(['sync', fresh, remote, '--profile', 'nope']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('no such profile; expected one of: mobile, desktop, server');
    expect(existsSync(join(fresh, '.cloudmux-sync'))).toBe(false);
  });

  it('list-only files show in sync status and arrive on sync fetch', async () => {
    const laptop = tempDir('cli-fetch-laptop');
    const phone = tempDir('cli-fetch-phone');
    const remote = pathToFileURL(tempDir('cli-fetch-remote')).href;
    const config = join(tempDir('cli-fetch-cfg'), 'cloudmux.yaml');
    writeFileSync(config, `providers:\n  - name: m\n    url: memory://\nsync:\n  profiles:\n    phone:\n      listOnly: ["videos/**"]\n      exclude: ["private/**"]\n`);
    writeFile(laptop, 'videos/trip.mp4', 'movie');
    writeFile(laptop, 'notes.txt', 'n');
    expect((await runCli(['sync', laptop, remote])).code).toBe(0);
    writeFile(phone, 'private/diary.txt', 'secret');
    expect((await runCli(['sync', phone, remote, '--profile', 'phone', '--config', config])).code).toBe(0);
    expect(readFile(phone, 'videos/trip.mp4')).toBeUndefined();
    let r = await runCli(['sync', 'status', phone, '--json']);
    expect(JSON.parse(r.out.toString())).toMatchObject({ profile: 'phone', listed: [{ path: 'videos/trip.mp4', size: 5 }] });
    r = await runCli(['sync', 'status', phone]);
    expect(r.out.toString()).toContain('videos/trip.mp4 (5 bytes)');
    r = await runCli(['sync', 'fetch', 'notes.txt', '--local', phone]);
    expect(r.code).toBe(2);
    r = await runCli(['sync', 'fetch', 'videos/trip.mp4', '--local', phone]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(readFile(phone, 'videos/trip.mp4')).toBe('movie');
    // fetch kept to the recorded profile: the excluded file did not go up.
    expect(readFile(laptop, 'private/diary.txt')).toBeUndefined();
    expect((await runCli(['sync', laptop, remote])).code).toBe(0);
    expect(readFile(laptop, 'private/diary.txt')).toBeUndefined();
    r = await runCli(['sync', 'status', phone, '--json']);
    expect(JSON.parse(r.out.toString())).toMatchObject({ listed: [] });
  });

  it('an unknown --profile exits 2 and creates nothing', async () => {
    const fresh = tempDir('cli-profile-fresh2');
    const remote = pathToFileURL(tempDir('cli-profile-remote2')).href;
    const r = await runCli(['sync', fresh, remote, '--profile', 'nope']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('no such profile; expected one of: mobile, desktop, server');
    expect(existsSync(join(fresh, '.cloudmux-sync'))).toBe(false);
  });
});
