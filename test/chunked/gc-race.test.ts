import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { collect } from '../../src/core/body.js';
import { isCloudmuxError } from '../../src/core/errors.js';
import { FsStore } from '../../providers/fs/index.js';
import { ChunkedStore, collectGarbage, type ChunkedStoreOptions, type GcReport } from '../../src/layers/chunked/index.js';
import { testSeed } from '../harness/cpu-hog.js';
import { danglingReferences, snapshot } from './gc-checker.js';
import { checkRace, type FinalRead, type WriterOp } from './race-checker.js';
import { sha256Hex } from '../../src/testing/data.js';

const SEED_VAR = 'CLOUDMUX_CHUNKED_GC_SEED';
const seed = testSeed(SEED_VAR);
/**
 * Short enough that chunks orphaned early in the run are collected while the writer still runs.
 * CLOUDMUX_CHUNKED_GC_GRACE_MS overrides the GC's (not the writer's) grace: 0 shows the checker
 * catching a GC without one (measured: 187 chunks deleted, 4 reads of committed objects failed).
 */
const GRACE_MS = 3000;
const OPTS: ChunkedStoreOptions = { sizes: { min: 4096, target: 16384, max: 65536 }, threshold: 16384, graceMs: GRACE_MS };
const KEYS = ['a', 'b', 'c', 'd'];
const OPS = 120;
const here = import.meta.dirname;
const mod = (p: string): string => JSON.stringify(pathToFileURL(resolve(here, p)).href);

/**
 * The writer, in its own process: OPS seeded operations on a few keys — new versions that share
 * most chunks with earlier ones (so overwrites orphan some chunks and dedup relies on old ones),
 * and deletes. Each committed operation is printed as a JSON line; a put that outlasted a quarter
 * of the grace period (Transient) is retried, as a caller would.
 */
const WRITER = `
import { FsStore } from ${mod('../../providers/fs/index.ts')};
import { ChunkedStore } from ${mod('../../src/layers/chunked/index.ts')};
import { editedBytes } from ${mod('./helpers.ts')};
import { createHash } from 'node:crypto';
const { ROOT, SEED, OPS, KEYS, OPTS } = process.env;
let s = Number(SEED) >>> 0;
const rnd = () => { s = (s + 0x6d2b79f5) >>> 0; let t = s; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
const keys = KEYS.split(',');
const store = new ChunkedStore(new FsStore({ root: ROOT, fsync: false }), JSON.parse(OPTS));
for (let i = 0; i < Number(OPS); i++) {
  const k = Math.floor(rnd() * keys.length);
  const key = keys[k];
  if (rnd() < 0.15) {
    await store.delete(key);
    process.stdout.write(JSON.stringify({ op: 'delete', key }) + '\\n');
    continue;
  }
  const data = editedBytes(200_000 + k * 10_000, 1000 + k, Math.floor(rnd() * 12));
  for (let attempt = 1; ; attempt++) {
    try {
      const meta = await store.put(key, data);
      process.stdout.write(JSON.stringify({ op: 'put', key, sha256: meta.checksums.sha256 }) + '\\n');
      break;
    } catch (e) {
      if (e?.code !== 'Transient' || attempt >= 20) throw e;
    }
  }
}
`;

function rng(seed0: number): () => number {
  let s = seed0 >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const roots: string[] = [];
afterAll(() => Promise.all(roots.map((r) => rm(r, { recursive: true, force: true }))));

describe('race checker', () => {
  it('flags known-bad histories: a lost put, a resurrected delete, a read that failed mid-run', () => {
    const history: WriterOp[] = [{ op: 'put', key: 'a', sha256: 'aa'.repeat(32) }, { op: 'put', key: 'b', sha256: 'bb'.repeat(32) }, { op: 'delete', key: 'b' }];
    expect(checkRace(history, new Map<string, FinalRead>([['a', { sha256: 'aa'.repeat(32) }], ['b', { absent: true }]]), [])).toEqual([]);
    expect(checkRace(history, new Map<string, FinalRead>([['a', { error: 'IntegrityError' }], ['b', { absent: true }]]), [])).toHaveLength(1);
    expect(checkRace(history, new Map<string, FinalRead>([['a', { sha256: 'cc'.repeat(32) }], ['b', { sha256: 'bb'.repeat(32) }]]), [])).toHaveLength(2);
    expect(checkRace(history, new Map<string, FinalRead>([['a', { sha256: 'aa'.repeat(32) }], ['b', { absent: true }]]), ['a: IntegrityError'])).toHaveLength(1);
  });
});

describe(`GC racing a writer in another process (seed ${seed}; replay: ${SEED_VAR}=${seed})`, () => {
  it('never removes a chunk a committed manifest uses', async () => {
    console.log(`chunked GC race: seed ${seed} (replay with ${SEED_VAR}=${seed})`);
    const root = await mkdtemp(join(tmpdir(), 'cloudmux-chunked-race-'));
    roots.push(root);
    const store = new ChunkedStore(new FsStore({ root, fsync: false }), OPTS);
    const history: WriterOp[] = [];
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', WRITER], {
      env: { ...process.env, ROOT: root, SEED: String(seed), OPS: String(OPS), KEYS: KEYS.join(','), OPTS: JSON.stringify(OPTS) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let buffered = '';
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        history.push(JSON.parse(buffered.slice(0, nl)) as WriterOp);
        buffered = buffered.slice(nl + 1);
      }
    });
    let exitCode: number | null | undefined;
    const exited = new Promise<void>((r) => child.on('exit', (code) => {
      exitCode = code;
      r();
    }));
    const pause = rng(seed);
    const midRun: string[] = [];
    const reports: GcReport[] = [];
    try {
      while (exitCode === undefined) {
        reports.push(await collectGarbage(store, { graceMs: Number(process.env.CLOUDMUX_CHUNKED_GC_GRACE_MS ?? GRACE_MS) }));
        // Read every key the writer has committed so far: no read may hit a collected chunk.
        for (const key of KEYS) {
          try {
            await collect((await store.get(key, { verify: true })).body);
          } catch (e) {
            if (!isCloudmuxError(e, 'NotFound')) midRun.push(`${key}: ${isCloudmuxError(e) ? e.code : String(e)}: ${(e as Error).message}`);
          }
        }
        await Promise.race([exited, sleep(Math.floor(pause() * 300))]);
      }
    } finally {
      child.kill('SIGKILL');
    }
    expect(exitCode, 'writer failed').toBe(0);
    expect(history.length).toBe(OPS);
    const final = new Map<string, FinalRead>();
    for (const key of KEYS) {
      try {
        final.set(key, { sha256: sha256Hex(await collect((await store.get(key, { verify: true })).body)) });
      } catch (e) {
        final.set(key, isCloudmuxError(e, 'NotFound') ? { absent: true } : { error: isCloudmuxError(e) ? e.code : String(e) });
      }
    }
    const violations = checkRace(history, final, midRun);
    const deleted = reports.reduce((n, r) => n + r.deleted, 0);
    console.log(`GC race: ${reports.length} GC rounds deleted ${deleted} chunks while ${OPS} writes ran; violations: ${violations.length}`);
    expect(violations).toEqual([]);
    expect(danglingReferences(await snapshot(store.inner, store.chunkPrefix))).toEqual([]);
    // With the writer gone, a GC without grace leaves exactly the referenced chunks.
    await collectGarbage(store, { graceMs: 0 });
    const s = await snapshot(store.inner, store.chunkPrefix);
    expect([...s.chunks].sort()).toEqual([...new Set([...s.manifests.values()].flat())].sort());
  }, 600_000);
});
