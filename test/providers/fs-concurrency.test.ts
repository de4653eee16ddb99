import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsStore } from '../../providers/fs/index.js';
import type { FsLayout } from '../../providers/fs/config.js';
import { CloudmuxError, collect, getBuffer, isCloudmuxError } from '../../src/core/index.js';
import { pseudoRandomBytes, sha256Hex } from '../../src/testing/index.js';

const storeModule = pathToFileURL(resolve(import.meta.dirname, '../../providers/fs/index.ts')).href;

/**
 * A separate Node process holding its own FsStore over `root`. It prints `ready`, waits for `go`
 * on stdin (so all contenders start together), runs its task and prints one JSON line.
 */
const CHILD = `
import { FsStore } from ${JSON.stringify(storeModule)};
import { createInterface } from 'node:readline';
const { ROOT, TASK, ID, LAYOUT } = process.env;
const store = new FsStore({ root: ROOT, fsync: false, layout: LAYOUT });
const lines = createInterface({ input: process.stdin });
console.log('ready');
for await (const line of lines) if (line === 'go') break;
lines.close();
try {
  if (TASK === 'create') {
    const meta = await store.put('race/key', 'writer ' + ID, { ifNoneMatch: '*' });
    console.log(JSON.stringify({ ok: true, etag: meta.etag }));
  } else {
    let done = 0, conflicts = 0;
    while (done < 5) {
      const { meta, body } = await store.get('counter');
      const chunks = [];
      for await (const c of body) chunks.push(c);
      const n = Number(Buffer.concat(chunks).toString());
      try { await store.put('counter', String(n + 1), { ifMatch: meta.etag }); done++; }
      catch (e) { if (e.code !== 'PreconditionFailed') throw e; conflicts++; }
    }
    console.log(JSON.stringify({ ok: true, conflicts }));
  }
} catch (e) {
  console.log(JSON.stringify({ ok: false, code: e.code, message: e.message }));
}
`;

interface ChildResult {
  ok: boolean;
  code?: string;
  message?: string;
  conflicts?: number;
}

/** Starts `n` children, releases them together, and collects their results. */
async function contend(n: number, root: string, task: 'create' | 'counter', layout: FsLayout): Promise<ChildResult[]> {
  const children: ChildProcess[] = [];
  const results: Promise<ChildResult>[] = [];
  const ready: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD], {
      env: { ...process.env, ROOT: root, TASK: task, ID: String(i), LAYOUT: layout },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    children.push(child);
    const lines = createInterface({ input: child.stdout! });
    let onReady!: () => void;
    ready.push(new Promise((r) => (onReady = r)));
    results.push(new Promise((resolveResult, reject) => {
      lines.on('line', (line) => {
        if (line === 'ready') onReady();
        else if (line.startsWith('{')) resolveResult(JSON.parse(line) as ChildResult);
      });
      // 'close', not 'exit': stdout may still hold the result line when the process exits.
      child.on('close', (code) => reject(new Error(`child ${i} exited (${code}) without a result`)));
    }));
  }
  try {
    await Promise.all(ready);
    for (const c of children) c.stdin!.write('go\n');
    return await Promise.all(results);
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill();
  }
}

for (const layout of ['plain', 'escaped'] as FsLayout[]) describe(`fs (layout=${layout}): across processes`, () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cloudmux-fs-procs-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('ten processes racing a create-only put: exactly one wins, the rest get AlreadyExists', async () => {
    const results = await contend(10, root, 'create', layout);
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    expect(results.filter((r) => !r.ok).map((r) => r.code)).toEqual(Array(9).fill('AlreadyExists'));
    const store = new FsStore({ root, layout });
    const body = (await getBuffer(store, 'race/key', { verify: true })).toString();
    expect(body).toBe(`writer ${results.findIndex((r) => r.ok)}`);
  }, 180_000); // Spawning ten tsx processes takes most of a minute on a loaded 2-core box.

  it('compare-and-swap increments from four processes lose nothing', async () => {
    const store = new FsStore({ root, layout });
    await store.put('counter', '0');
    const results = await contend(4, root, 'counter', layout);
    expect(results.every((r) => r.ok), JSON.stringify(results)).toBe(true);
    expect((await getBuffer(store, 'counter')).toString()).toBe('20');
  }, 180_000); // Spawning ten tsx processes takes most of a minute on a loaded 2-core box.
});

for (const layout of ['plain', 'escaped'] as FsLayout[]) describe(`fs (layout=${layout}): overwrites, reads and deletes interleaved in one process`, () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cloudmux-fs-storm-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('every read is one whole version whose metadata describes exactly its bytes', async () => {
    const store = new FsStore({ root, fsync: false, layout });
    // Small (read whole) and large (streamed from the descriptor) versions, each with its own tag.
    const versions = [0, 1, 2, 3, 4, 5].map((i) => pseudoRandomBytes(i % 2 === 0 ? 1_000 + i : 300_000 + i, `v${i}`));
    const digests = new Set(versions.map((v) => sha256Hex(v)));
    await store.put('hot', versions[0]!, { metadata: { tag: sha256Hex(versions[0]!) } });
    let stop = false;
    const writer = async (w: number): Promise<void> => {
      for (let i = 0; !stop; i++) {
        const v = versions[(w + i) % versions.length]!;
        if (i % 7 === 6) await store.delete('hot');
        else await store.put('hot', v, { metadata: { tag: sha256Hex(v) } });
      }
    };
    let reads = 0;
    let missing = 0;
    const reader = async (): Promise<void> => {
      for (let i = 0; i < 60; i++) {
        try {
          const { meta, body } = await store.get('hot', { verify: true });
          const bytes = await collect(body);
          const digest = sha256Hex(bytes);
          expect(digests.has(digest)).toBe(true);
          expect(meta.checksums.sha256).toBe(digest);
          expect(meta.metadata.tag).toBe(digest);
          expect(meta.size).toBe(bytes.byteLength);
          reads++;
        } catch (e) {
          if (!isCloudmuxError(e, 'NotFound')) throw e;
          missing++;
        }
      }
    };
    const writers = [writer(0), writer(3)];
    try {
      await Promise.all([reader(), reader(), reader()]);
    } finally {
      stop = true;
      await Promise.all(writers);
    }
    expect(reads).toBeGreaterThan(0);
    expect(reads + missing).toBe(180);
  }, 180_000); // Spawning ten tsx processes takes most of a minute on a loaded 2-core box.

  it('concurrent updateMetadata and put never pair metadata with the wrong bytes', async () => {
    const store = new FsStore({ root, fsync: false, layout });
    await store.put('um', 'first');
    const ops: Promise<unknown>[] = [];
    for (let i = 0; i < 40; i++) {
      ops.push(i % 2 === 0
        ? store.put('um', `body ${i}`, { metadata: { i: String(i) } })
        : store.updateMetadata('um', { metadata: { touched: String(i) } }).catch((e: unknown) => {
          if (!(e instanceof CloudmuxError)) throw e;
        }));
    }
    await Promise.all(ops);
    const { meta, body } = await store.get('um', { verify: true });
    expect(meta.checksums.sha256).toBe(sha256Hex(await collect(body)));
  }, 180_000); // Spawning ten tsx processes takes most of a minute on a loaded 2-core box.
});
