import { appendFileSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../harness/emulator.js';
import { LocalWatcher, type WatchBatch } from '../../src/sync/watcher.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A watcher on a fresh directory, recording batches; `until` waits (by event) for paths to be reported. */
async function watched(opts: { settleMs?: number; batchMs?: number; ignore?: (p: string) => boolean } = {}) {
  const dir = await tempDir('watch');
  cleanups.push(() => dir.remove());
  const batches: WatchBatch[] = [];
  const waiters: (() => void)[] = [];
  const w = await LocalWatcher.start({
    root: dir.path, settleMs: opts.settleMs ?? 300, batchMs: opts.batchMs ?? 50, ignore: opts.ignore,
    onBatch: (b) => {
      batches.push(b);
      for (const wake of waiters.splice(0)) wake();
    },
  });
  cleanups.push(() => w.close());
  const reported = (): Set<string> => new Set(batches.flatMap((b) => b.paths));
  const reportedSince = (from: number): Set<string> => new Set(batches.slice(from).flatMap((b) => b.paths));
  /** Resolves once every path has been reported in a batch from index `from` on (fails after a generous 30 s). */
  const untilSince = async (from: number, ...paths: string[]): Promise<void> => {
    const deadline = Date.now() + 30_000;
    while (!paths.every((p) => reportedSince(from).has(p))) {
      if (Date.now() > deadline) throw new Error(`not reported: ${paths.filter((p) => !reportedSince(from).has(p)).join(', ')}; got ${[...reportedSince(from)].join(', ')}`);
      await Promise.race([new Promise<void>((r) => waiters.push(r)), sleep(1000)]);
    }
  };
  const until = (...paths: string[]): Promise<void> => untilSince(0, ...paths);
  return { root: dir.path, w, batches, reported, until, untilSince, file: (p: string) => join(dir.path, p) };
}

describe('local watcher', () => {
  it('reports created, changed, renamed and removed files as relative paths, in debounced batches', async () => {
    const t = await watched();
    mkdirSync(t.file('docs/deep'), { recursive: true });
    for (let i = 0; i < 40; i++) writeFileSync(t.file(`docs/deep/f${i}.txt`), `v${i}`);
    writeFileSync(t.file('top.txt'), 'x');
    await t.until('top.txt', ...Array.from({ length: 40 }, (_, i) => `docs/deep/f${i}.txt`));
    // 41 files arrive in far fewer batches than files, each batch sorted and without repeats.
    expect(t.batches.length).toBeLessThan(41);
    for (const b of t.batches) {
      expect(b.paths).toEqual([...new Set(b.paths)].sort());
      expect(b.rescan).toBe(false);
    }
    const seen = t.batches.length;
    writeFileSync(t.file('top.txt'), 'changed');
    renameSync(t.file('docs/deep/f1.txt'), t.file('docs/moved.txt'));
    rmSync(t.file('docs/deep/f2.txt'));
    await t.untilSince(seen, 'top.txt', 'docs/moved.txt', 'docs/deep/f1.txt', 'docs/deep/f2.txt');
  });

  it('a file still being written is reported once it is stable, not before', async () => {
    const t = await watched({ settleMs: 1500 });
    const path = t.file('big.bin');
    writeFileSync(path, 'start');
    // Appends every 20 ms for a while, synchronously inside timers: the settle check (a later
    // timer) cannot run between an append that was due and the stat, so the file never looks
    // stable while appends keep coming, however loaded the machine is.
    let appends = 0;
    let early: number | undefined;
    await new Promise<void>((done) => {
      const tick = (): void => {
        if (t.reported().has('big.bin')) early ??= appends;
        appendFileSync(path, Buffer.alloc(1000, appends));
        if (++appends === 40) return done();
        setTimeout(tick, 20);
      };
      setTimeout(tick, 20);
    });
    expect(early, 'reported while appends were still coming').toBeUndefined();
    await t.until('big.bin');
  });

  it('never reports ignored paths and does not descend into ignored directories', async () => {
    const asked: string[] = [];
    const t = await watched({ ignore: (p) => { asked.push(p); return p === '.sync' || p.startsWith('.sync/') || p.endsWith('.tmp'); } });
    mkdirSync(t.file('.sync'));
    writeFileSync(t.file('.sync/state.db'), 'state');
    writeFileSync(t.file('upload.tmp'), 'partial');
    writeFileSync(t.file('real.txt'), 'data');
    await t.until('real.txt');
    expect([...t.reported()].filter((p) => p.startsWith('.sync') || p.endsWith('.tmp'))).toEqual([]);
    expect(asked).not.toContain('.sync/state.db');
    expect(asked.every((p) => !p.includes('\\') && !p.startsWith('/'))).toBe(true);
  });

  it('close stops delivery, waits for a running onBatch, and can be called twice; a bad root is InvalidConfig', async () => {
    const dir = await tempDir('watch');
    cleanups.push(() => dir.remove());
    let release!: () => void;
    let started!: () => void;
    const running = new Promise<void>((r) => { started = r; });
    const batches: WatchBatch[] = [];
    let finished = false;
    const w = await LocalWatcher.start({
      root: dir.path, settleMs: 100, batchMs: 10,
      onBatch: async (b) => {
        batches.push(b);
        started();
        await new Promise<void>((r) => { release = r; });
        finished = true;
      },
    });
    writeFileSync(join(dir.path, 'a.txt'), 'a');
    await running;
    const closing = w.close();
    writeFileSync(join(dir.path, 'b.txt'), 'b');
    release();
    await closing;
    expect(finished).toBe(true);
    await w.close();
    await sleep(300);
    expect(batches.map((b) => b.paths)).toEqual([['a.txt']]);
    const err = await LocalWatcher.start({ root: join(dir.path, 'missing'), onBatch: () => {} }).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('InvalidConfig');
  });
});
