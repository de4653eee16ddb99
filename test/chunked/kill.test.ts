import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { getBuffer } from '../../src/core/helpers.js';
import { isCloudmuxError } from '../../src/core/errors.js';
import { FsStore } from '../../providers/fs/index.js';
import { ChunkedStore, collectGarbage, type ChunkedStoreOptions } from '../../src/layers/chunked/index.js';
import { testSeed } from '../harness/cpu-hog.js';
import { CountingStore, editedBytes } from './helpers.js';
import { danglingReferences, snapshot } from './gc-checker.js';

const SEED_VAR = 'CLOUDMUX_CHUNKED_KILL_SEED';
const seed = testSeed(SEED_VAR);
const OPTS: ChunkedStoreOptions = { sizes: { min: 16384, target: 65536, max: 262144 }, threshold: 65536, concurrency: 2 };
const here = import.meta.dirname;
const mod = (p: string): string => JSON.stringify(pathToFileURL(resolve(here, p)).href);

/**
 * A child that puts SEED's bytes to KEY through a ChunkedStore over an fs store, and hangs the
 * upload of chunk number STUCK (the ones before it stored) so the parent can kill -9 it mid-put.
 */
const CHILD = `
import { FsStore } from ${mod('../../providers/fs/index.ts')};
import { ChunkedStore } from ${mod('../../src/layers/chunked/index.ts')};
import { editedBytes } from ${mod('./helpers.ts')};
const { ROOT, KEY, DATA_SEED, EDIT_SEED, SIZE, STUCK } = process.env;
const fs = new FsStore({ root: ROOT, fsync: false });
const put = fs.put.bind(fs);
let n = 0;
fs.put = async (key, body, opts) => {
  if (key.startsWith('.cmx-chunks/') && ++n === Number(STUCK)) {
    process.stdout.write('stuck\\n');
    await new Promise(() => {});
  }
  return put(key, body, opts);
};
const store = new ChunkedStore(fs, ${JSON.stringify(OPTS)});
await store.put(KEY, editedBytes(Number(SIZE), Number(DATA_SEED), EDIT_SEED ? Number(EDIT_SEED) : undefined));
process.stdout.write('finished\\n');
`;

/** Runs the child until it reports its stuck upload, then kills it with SIGKILL. */
async function killMidPut(root: string, key: string, size: number, stuck: number, dataSeed: number, editSeed?: number): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD], {
    env: { ...process.env, ROOT: root, KEY: key, DATA_SEED: String(dataSeed), EDIT_SEED: editSeed === undefined ? '' : String(editSeed), SIZE: String(size), STUCK: String(stuck) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  let out = '';
  await new Promise<void>((ok, fail) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('stuck')) ok();
      if (out.includes('finished')) fail(new Error('the child finished its put before getting stuck'));
    });
    void exited.then((code) => fail(new Error(`child exited (${code}) before getting stuck: ${out}`)));
  });
  child.kill('SIGKILL');
  await exited;
}

const roots: string[] = [];
afterAll(() => Promise.all(roots.map((r) => rm(r, { recursive: true, force: true }))));

describe(`kill -9 during a chunked put (seed ${seed}; replay: ${SEED_VAR}=${seed})`, () => {
  it('leaves no manifest naming a missing chunk and the previous version whole; the rerun uploads only what is missing; GC removes the orphans and nothing referenced', async () => {
    console.log(`chunked kill -9: seed ${seed} (replay with ${SEED_VAR}=${seed})`);
    const root = await mkdtemp(join(tmpdir(), 'cloudmux-chunked-kill-'));
    roots.push(root);
    const size = 3 * 1024 * 1024;
    const v1 = editedBytes(size, seed);
    const counting = new CountingStore(new FsStore({ root, fsync: false }));
    const store = new ChunkedStore(counting, OPTS);
    await store.put('big', v1);
    const stuck = 3 + (seed % 8); // chunk uploads before the kill: at least two stored
    await killMidPut(root, 'big', size, stuck, seed, seed + 1); // v2 of big: some of its chunks are new
    await killMidPut(root, 'other', size, stuck, seed + 7); // a new object: its stored chunks are orphans

    const after = await snapshot(counting.inner, store.chunkPrefix);
    expect(danglingReferences(after)).toEqual([]);
    expect([...after.manifests.keys()]).toEqual(['big']);
    expect((await getBuffer(store, 'big', { verify: true })).equals(v1)).toBe(true);
    let err: unknown;
    try {
      await store.head('other');
    } catch (e) {
      err = e;
    }
    expect(isCloudmuxError(err, 'NotFound')).toBe(true);

    // The rerun of 'other' uploads only the chunks the killed put did not store.
    const otherData = editedBytes(size, seed + 7);
    const fresh = new ChunkedStore(counting, OPTS);
    const heldBefore = after.chunks.size;
    counting.reset();
    await fresh.put('other', otherData);
    const otherChunks = (await fresh.manifest('other'))!.chunks;
    const stored = new Set([...after.chunks]);
    const missing = otherChunks.filter((c) => !stored.has(c.id));
    expect(fresh.totals.chunksSent).toBe(new Set(missing.map((c) => c.id)).size);
    expect(fresh.totals.chunksSent).toBeLessThan(otherChunks.length);
    expect(heldBefore).toBeGreaterThan((await store.manifest('big'))!.chunks.length);
    await fresh.delete('other');

    // GC (no writer running: no grace needed) removes exactly what no manifest names.
    const report = await collectGarbage(store, { graceMs: 0 });
    const final = await snapshot(counting.inner, store.chunkPrefix);
    expect(report.missing).toEqual([]);
    expect(danglingReferences(final)).toEqual([]);
    const named = new Set(final.manifests.get('big'));
    expect([...final.chunks].sort()).toEqual([...named].sort());
    expect(report.deleted).toBeGreaterThan(0);
    expect((await getBuffer(store, 'big', { verify: true })).equals(v1)).toBe(true);
  }, 300_000);
});
