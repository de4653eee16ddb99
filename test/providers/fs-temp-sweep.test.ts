import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsStore } from '../../providers/fs/index.js';
import type { FsLayout } from '../../providers/fs/config.js';
import { getBuffer, listAll } from '../../src/core/index.js';
import { migrate } from '../../src/replication/migrate.js';
import { pseudoRandomBytes, sha256Hex } from '../../src/testing/index.js';

const here = import.meta.dirname;
const fsModule = pathToFileURL(resolve(here, '../../providers/fs/index.ts')).href;
const migrateModule = pathToFileURL(resolve(here, '../../src/replication/migrate.ts')).href;

/** A child that migrates SRC to DST slowly (1 MB/s), to be killed with -9 in the middle. */
const CHILD = `
import { FsStore } from ${JSON.stringify(fsModule)};
import { migrate } from ${JSON.stringify(migrateModule)};
const { SRC, DST, LAYOUT } = process.env;
await migrate(new FsStore({ root: SRC, fsync: false }), new FsStore({ root: DST, fsync: false, layout: LAYOUT }), { bytesPerSecond: 1_000_000, preflight: false });
`;

const isTemp = (layout: FsLayout) => (name: string): boolean => (layout === 'plain' ? name.startsWith('.cloudmux-tmp-') : name.includes('%t'));

/** Waits (bounded) until a temp file with some bytes appears in `dir`. */
async function tempAppears(dir: string, layout: FsLayout, what: string): Promise<string> {
  for (let i = 0; i < 1200; i++) {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names.filter(isTemp(layout))) {
      if ((await stat(join(dir, name)).catch(() => undefined))?.size) return name;
    }
    await sleep(100);
  }
  throw new Error(`no temp file of ${what} appeared in ${dir}`);
}

for (const layout of ['plain', 'escaped'] as FsLayout[]) describe(`fs (layout=${layout}): temp files of dead writers`, () => {
  let base: string;
  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), `cloudmux-fs-sweep-${layout}-`));
  });
  afterEach(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it('kill -9 during a migrate to fs: the resumed run leaves no temp file behind (no hour to wait)', async () => {
    const src = join(base, 'src');
    const dst = join(base, 'dst');
    const data = pseudoRandomBytes(15_000_000, 'sweep');
    await new FsStore({ root: src, fsync: false }).put('big.bin', data);
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD], {
      env: { ...process.env, SRC: src, DST: dst, LAYOUT: layout },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    const exited = new Promise((r) => child.on('exit', r));
    try {
      const temp = await tempAppears(dst, layout, 'the killed migrate');
      child.kill('SIGKILL');
      await exited;
      expect(await readdir(dst)).toContain(temp);
    } finally {
      child.kill('SIGKILL');
    }
    const store = new FsStore({ root: dst, fsync: false, layout });
    const summary = await migrate(new FsStore({ root: src, readOnly: true }), store, { preflight: false });
    expect(summary.failed).toBe(0);
    expect((await readdir(dst)).filter(isTemp(layout))).toEqual([]);
    expect(sha256Hex(await getBuffer(store, 'big.bin', { verify: true }))).toBe(sha256Hex(data));
  }, 300_000);

  it('a live writer\'s temp file is never swept, however old the age limit says it is', async () => {
    const root = join(base, 'root');
    const writer = new FsStore({ root, fsync: false, layout });
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    async function* stalled(): AsyncGenerator<Buffer> {
      yield Buffer.alloc(200_000, 1);
      await held;
      yield Buffer.alloc(200_000, 2);
    }
    const put = writer.put('slow', stalled());
    const temp = await tempAppears(root, layout, 'the live put');
    // Another store over the root (another process would do the same), sweeping everything past 0 ms.
    const sweeper = new FsStore({ root, fsync: false, layout, leftoverTtlMs: 0 });
    await listAll(sweeper);
    expect(await readdir(root)).toContain(temp);
    release();
    await put;
    expect((await getBuffer(sweeper, 'slow', { verify: true })).byteLength).toBe(400_000);
  });

  it('temp files this host cannot judge (another host, an older version) go by age only', async () => {
    const root = join(base, 'root');
    const store = new FsStore({ root, fsync: false, layout });
    await store.put('k', 'v');
    const names = layout === 'plain'
      ? [`.cloudmux-tmp-${'ab'.repeat(8)}00000000${'0'.repeat(8)}${'0'.repeat(16)}`, '.cloudmux-tmp-0123456789abcdef']
      : [`k%t${'ab'.repeat(8)}00000000${'0'.repeat(8)}${'0'.repeat(16)}`, 'k%t0123456789abcdef'];
    for (const n of names) await writeFile(join(root, n), 'x');
    await listAll(store);
    for (const n of names) expect(await readdir(root)).toContain(n);
    await listAll(new FsStore({ root, fsync: false, layout, leftoverTtlMs: 0 }));
    for (const n of names) expect(await readdir(root)).not.toContain(n);
  });
});
