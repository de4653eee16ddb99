import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FsStore } from '../../providers/fs/store.js';
import { getBuffer, listObjects, type BlobStore } from '../../src/core/index.js';
import { VERSIONS_PREFIX } from '../../src/sync/remote-scan.js';
import { SyncEngine } from '../../src/sync/sync-engine.js';
import { FaultyStore } from '../faults/faulty-store.js';
import { seededRandom } from '../faults/random.js';
import { AzureStore } from '../../providers/azure/store.js';
import { resolveAzureConfig } from '../../providers/azure/config.js';
import { Router } from '../../src/router/router.js';
import { SqliteStateStore } from '../../src/state/sqlite.js';
import { FaultProxy } from '../faults/proxy.js';
import { ownAzurite, ownS3rver } from '../harness/restartable.js';
import { FLAT, routerFixture } from '../router/fixture.js';
import { checkConvergence, type DeviceWrite, type FinalState } from './convergence-checker.js';
import { cleanupDirs, localTree, remoteTree, sha, tempDir } from './helpers.js';

afterEach(cleanupDirs);

const POOL = ['a.txt', 'b.txt', 'c.md', 'd/e.txt', 'd/f.bin', 'g/h/i.txt'];
const DEVICES = ['d0', 'd1', 'd2'];

/** A device's way to the remote, and a switch that takes it offline. */
interface DeviceLink {
  store: BlobStore;
  offline(on: boolean): void;
}

interface Device {
  name: string;
  dir: string;
  remote: BlobStore;
  link: DeviceLink;
  offlineUntil: number;
}

/** A random change to a device's directory, recorded in `history`. */
function mutate(dev: Device, round: number, random: () => number, history: DeviceWrite[]): void {
  const files = [...localTree(dev.dir).keys()];
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const free = POOL.filter((p) => !files.includes(p));
  const abs = (p: string): string => join(dev.dir, ...p.split('/'));
  const content = (): string => `${dev.name}:${round}:${history.length}:${random().toString(36).slice(2)}\n`;
  const r = random();
  const seq = history.length;
  if (files.length === 0 || (r < 0.3 && free.length > 0)) {
    if (free.length === 0) return;
    const path = pick(free);
    const c = content();
    mkdirSync(dirname(abs(path)), { recursive: true });
    writeFileSync(abs(path), c);
    history.push({ seq, device: dev.name, round, op: 'create', path, sha: sha(c) });
  } else if (r < 0.65) {
    const path = pick(files);
    const prevSha = sha(readFileSync(abs(path)));
    const c = content();
    writeFileSync(abs(path), c);
    history.push({ seq, device: dev.name, round, op: 'edit', path, sha: sha(c), prevSha });
    if (path === TRACE) console.log(`[${dev.name}] edits ${path}: ${prevSha.slice(0, 8)} → ${sha(c).slice(0, 8)}`);
  } else if (r < 0.8 || free.length === 0) {
    const path = pick(files);
    const prevSha = sha(readFileSync(abs(path)));
    unlinkSync(abs(path));
    history.push({ seq, device: dev.name, round, op: 'delete', path, prevSha });
  } else {
    const from = pick(files);
    const path = pick(free);
    const prevSha = sha(readFileSync(abs(from)));
    mkdirSync(dirname(abs(path)), { recursive: true });
    renameSync(abs(from), abs(path));
    history.push({ seq, device: dev.name, round, op: 'rename', from, path, sha: prevSha, prevSha });
  }
}

/** One round of a device in this process (online or not, as its link says). */
/** SYNC_CHAOS_TRACE=<path>: print every action on that path (to see how a version was lost). */
const TRACE = process.env.SYNC_CHAOS_TRACE;

async function roundInProcess(dev: Device): Promise<number> {
  const engine = SyncEngine.open({
    local: dev.dir, remote: dev.remote, device: dev.name, pair: 'convergence', fsync: false,
    onEvent: TRACE === undefined ? undefined : (e) => {
      if (e.type === 'action' && (e.outcome.action.path === TRACE || ('from' in e.outcome.action && e.outcome.action.from === TRACE))) {
        console.log(`[${dev.name}] ${e.outcome.action.kind} ${e.outcome.action.case} ${e.outcome.action.path} → ${e.outcome.result} ${e.outcome.detail ?? ''}`);
      }
    },
  });
  try {
    const r = await engine.round();
    return r.planned.length;
  } finally {
    engine.close();
  }
}

/** One round of a device in a child process that SIGKILLs itself at its n-th remote call. */
async function roundKilled(dev: Device, remoteRoot: string, killAt: number, when: 'before' | 'after'): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', resolve('test/sync/convergence-child.ts'), dev.dir, remoteRoot, dev.name, String(killAt), when], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  if (signal !== 'SIGKILL' && code !== 0) throw new Error(`sync child failed (${code}): ${out.slice(-2000)}`);
  return signal === 'SIGKILL' ? `killed at call ${killAt} (${when})` : 'finished';
}

async function finalState(devices: Device[], remote: BlobStore): Promise<FinalState> {
  const versions = new Set<string>();
  for await (const o of listObjects(remote, { prefix: VERSIONS_PREFIX })) versions.add(sha(await getBuffer(remote, o.key)));
  return { devices: new Map(devices.map((d) => [d.name, localTree(d.dir)])), remote: await remoteTree(remote), versions };
}

/**
 * THE convergence test: three devices and one remote (an fs store shared with child processes),
 * seeded random creates, edits, deletes and renames (concurrent edits of the same few names are
 * the norm), devices offline for whole rounds, and kill -9 of a device's round at a random remote
 * call. After healing and two quiet passes: all trees equal, and the history checker finds every
 * version accounted for. Seed printed; SYNC_CHAOS_SEED replays the same schedule (operations,
 * outages and kill points; the interleaving of concurrent rounds may differ), SYNC_CHAOS_ROUNDS
 * sets the length.
 */
interface ChaosRemote {
  /** The store the devices share (each device wraps it in its own FaultyStore, unless `link`). */
  store: BlobStore;
  /** Each device's own way to the remote (default: a FaultyStore over `store`, offline = ProviderUnavailable). */
  link?(device: string): Promise<DeviceLink>;
  /** Rounds of changes (default SYNC_CHAOS_ROUNDS, else 24). */
  rounds?: number;
  /** The remote as the kill -9 children open it: an fs root, `azure:{…}` or `router:{…}` (convergence-child.ts). Absent: no kills. */
  root?: string;
  close(): Promise<void>;
}

/**
 * One chaos run: seeded random changes on three devices, offline streaks, kill -9 of rounds
 * (when the remote can be shared with a child), then healing until two quiet passes. Returns the
 * checker's findings.
 */
async function chaos(remote: ChaosRemote, tag: string): Promise<string[]> {
  const seed = Number(process.env.SYNC_CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));
  const rounds = Number(process.env.SYNC_CHAOS_ROUNDS ?? remote.rounds ?? 24);
  console.log(`sync chaos (${tag}) seed ${seed}; replay: SYNC_CHAOS_SEED=${seed} npx vitest run test/sync/convergence.test.ts`);
  const random = seededRandom(seed);
  const faulty = async (): Promise<DeviceLink> => {
    const store = new FaultyStore(remote.store);
    return { store, offline: (on) => store.outage(on, 'ProviderUnavailable') };
  };
  const devices: Device[] = await Promise.all(DEVICES.map(async (name) => {
    const link = await (remote.link ? remote.link(name) : faulty());
    return { name, dir: tempDir(`sync-chaos-${name}`), remote: link.store, link, offlineUntil: -1 };
  }));
  const history: DeviceWrite[] = [];
  const log: string[] = [];
  let kills = 0;
  for (let round = 0; round < rounds; round++) {
    if (TRACE !== undefined) console.log(`--- round ${round}`);
    for (const dev of devices) {
      const ops = Math.floor(random() * 3);
      for (let i = 0; i < ops; i++) mutate(dev, round, random, history);
      if (dev.offlineUntil < round && random() < 0.12) dev.offlineUntil = round + Math.floor(random() * 4);
    }
    await Promise.all(devices.map(async (dev) => {
      const offline = dev.offlineUntil >= round;
      // At least one kill -9 attempt per run where kills are possible (a run that drew none proves nothing about them); a round that ends before its kill point finishes.
      const kill = random() < 0.08 || (kills === 0 && round === rounds - 1);
      if (!offline && kill && remote.root !== undefined && kills < 4) {
        kills++;
        const killAt = 1 + Math.floor(random() * 5);
        const when = random() < 0.5 ? 'before' : 'after';
        log.push(`round ${round} ${dev.name}: ${await roundKilled(dev, remote.root, killAt, when)}`);
        return;
      }
      dev.link.offline(offline);
      try {
        await roundInProcess(dev);
      } finally {
        dev.link.offline(false);
      }
    }));
  }
  // Heal: everyone online; passes until two in a row plan nothing.
  let quiet = 0;
  let passes = 0;
  while (quiet < 2 && passes < 12) {
    passes++;
    let planned = 0;
    for (const dev of devices) planned += await roundInProcess(dev);
    quiet = planned === 0 ? quiet + 1 : 0;
  }
  const final = await finalState(devices, remote.store);
  const problems = checkConvergence(history, final);
  if (remote.root !== undefined && kills === 0) problems.push('no kill -9 was attempted: every device was offline in the last round');
  if (quiet < 2) problems.push(`did not settle after ${passes} passes`);
  if (history.length <= rounds / 2) problems.push(`only ${history.length} writes in ${rounds} rounds: the generator is broken`);
  const copies = [...final.remote.keys()].filter((p) => p.includes('.conflict-')).length;
  console.log(`seed ${seed} (${tag}): ${history.length} writes, ${final.remote.size} files (${copies} conflict copies), ${final.versions.size} kept versions, settled after ${passes} passes; ${log.join('; ')}`);
  if (problems.length > 0) console.log(problems.join('\n'));
  await remote.close();
  return problems;
}

/**
 * THE convergence test: three devices and one remote, seeded random creates, edits, deletes and
 * renames (concurrent edits of the same few names are the norm), devices offline for whole
 * rounds, and (fs remote, shared with child processes) kill -9 of a device's round at a random
 * remote call. After healing and two quiet passes: all trees equal, and the history checker finds
 * every version accounted for. Seed printed; SYNC_CHAOS_SEED replays the same schedule
 * (operations, outages and kill points; the interleaving of concurrent rounds may differ),
 * SYNC_CHAOS_ROUNDS sets the length.
 */
describe('sync convergence under chaos', () => {
  it('fs remote (listing diff), offline rounds, kill -9 mid-round: converge, nothing lost', async () => {
    const root = tempDir('sync-chaos-remote');
    const store = new FsStore({ root, fsync: false });
    expect(await chaos({ store, root, close: () => store.close() }, 'fs')).toEqual([]);
  }, 600_000);

  it('router remote (change feed), offline rounds: converge, nothing lost', async () => {
    const f = await routerFixture({ providers: ['p', 'q'], policies: [{ replicas: 2, writeQuorum: 2 }] });
    expect(await chaos({ store: f.router, close: () => f.close() }, 'router')).toEqual([]);
  }, 600_000);

  it('Azurite directly (listing diff, native If-Match writes and deletes), each device offline through its own fault proxy, kill -9 mid-round: converge, nothing lost', async () => {
    const az = await ownAzurite({ container: 'sync-chaos' });
    const links: { store: BlobStore; proxy: FaultProxy }[] = [];
    const upstream = new URL(az.connectionString.match(/BlobEndpoint=([^;]+)/)![1]!);
    const store = az.store();
    try {
      const problems = await chaos({
        store,
        rounds: 16,
        root: `azure:${JSON.stringify({ connectionString: az.connectionString, container: 'sync-chaos' })}`,
        async link() {
          // Offline = every request's connection reset by the proxy: the SDK's own network error, not a simulated one.
          let down = false;
          const proxy = await FaultProxy.start({ upstream: upstream.origin, protocol: 'azure', decide: () => (down ? 'resetRequest' : null), maxRequests: 1_000_000, lifetimeMs: 1_800_000 });
          const proxied = az.connectionString.replace(upstream.origin, proxy.url.replace(/\/$/, ''));
          const dev = new AzureStore(resolveAzureConfig(undefined, { connectionString: proxied, container: 'sync-chaos' }));
          links.push({ store: dev, proxy });
          return { store: dev, offline: (on) => (down = on) };
        },
        close: async () => undefined,
      }, 'azurite');
      expect(links.some((l) => l.proxy.log.some((e) => e.fault === 'resetRequest')), 'no device was ever offline').toBe(true);
      expect(problems).toEqual([]);
    } finally {
      await Promise.allSettled(links.flatMap((l) => [l.store.close(), l.proxy.close()]));
      await store.close();
      await az.dispose();
    }
  }, 900_000);

  it('router over s3rver + Azurite (s3rver has no conditional writes: the catalog gives them), offline rounds, kill -9 of a second router process mid-round: converge, nothing lost', async () => {
    const [s3, az] = await Promise.all([ownS3rver({ bucket: 'sync-chaos' }), ownAzurite({ container: 'sync-chaos' })]);
    const dir = tempDir('sync-chaos-router-emu');
    const state = join(dir, 'state.db');
    const router = new Router({
      providers: [{ name: 's3', store: s3.store(), prices: FLAT }, { name: 'azure', store: az.store(), prices: FLAT }],
      state: new SqliteStateStore({ path: state, durability: 'normal' }),
      policies: [{ replicas: 2, writeQuorum: 2 }],
      health: { probeIntervalMs: 0 },
    });
    // A killed round runs in a child with a router of its own on the same catalog file (as a second
    // process of one deployment), killed at a random router call.
    const root = `router:${JSON.stringify({ s3: { endpoint: s3.endpoint, bucket: 'sync-chaos' }, azure: { connectionString: az.connectionString, container: 'sync-chaos' }, state })}`;
    try {
      expect(await chaos({ store: router, rounds: 16, root, close: async () => undefined }, 'router(s3rver, azurite)')).toEqual([]);
    } finally {
      await router.close();
      await Promise.allSettled([s3.dispose(), az.dispose()]);
    }
  }, 900_000);
});

describe('the convergence checker', () => {
  const w = (seq: number, op: DeviceWrite['op'], path: string, s?: string, prev?: string): DeviceWrite => ({ seq, device: 'x', round: 0, op, path, sha: s, prevSha: prev });
  const state = (remote: [string, string][], versions: string[] = [], devices: [string, string][][] = [remote]): FinalState => ({
    remote: new Map(remote), versions: new Set(versions), devices: new Map(devices.map((t, i) => [`d${i}`, new Map(t)])),
  });

  it('accepts: winners, conflict copies, versions, and versions superseded by a device that saw them', () => {
    const history = [w(0, 'create', 'a', 'v1'), w(1, 'edit', 'a', 'v2', 'v1'), w(2, 'create', 'b', 'v3'), w(3, 'create', 'c', 'v4'), w(4, 'delete', 'c', undefined, 'v4'), w(5, 'create', 'e', 'v5')];
    expect(checkConvergence(history, state([['a', 'v2'], ['a.conflict-x', 'v3']], ['v5']))).toEqual([]);
  });
  it('rejects a lost version', () => {
    const history = [w(0, 'create', 'a', 'v1'), w(1, 'create', 'a', 'v2')];
    expect(checkConvergence(history, state([['a', 'v2']]))).toEqual([expect.stringMatching(/^lost: create of a by x in round 0 \(v1\)/)]);
  });
  it('rejects a supersede that came before the write (a device cannot knowingly replace what it has not seen)', () => {
    const history = [w(0, 'edit', 'a', 'v2', 'v1'), w(1, 'create', 'a', 'v1')];
    expect(checkConvergence(history, state([['a', 'v2']]))).toEqual([expect.stringMatching(/^lost: create of a/)]);
  });
  it('rejects diverged trees and invented content', () => {
    const history = [w(0, 'create', 'a', 'v1')];
    const problems = checkConvergence(history, state([['a', 'v1'], ['b', 'junk']], [], [[['a', 'v1']]]));
    expect(problems).toEqual([expect.stringMatching(/^device d0 differs from the remote/), expect.stringMatching(/^remote b holds content no device wrote/)]);
  });
});

