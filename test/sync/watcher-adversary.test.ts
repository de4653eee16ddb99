import { appendFileSync, existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../harness/emulator.js';
import { LocalWatcher } from '../../src/sync/watcher.js';
import { feedSeed, prng } from '../harness/replay-seed.js';

const FILE = 'test/sync/watcher-adversary.test.ts';

/** One file-system operation on a path, numbered in the order they were done. */
interface Touch { op: number; path: string; what?: string }
/** A batch, and how many operations had been done when it was delivered. */
interface Delivered { afterOps: number; paths: string[] }

/**
 * The watcher's promise, as a sync engine relies on it: every path touched is reported in some
 * batch delivered after the last operation on it (the engine, reading it then, sees its final
 * state); no ignored path is ever reported. Returns one line per violation.
 */
export function checkWatchHistory(touches: Touch[], batches: Delivered[], ignored: (p: string) => boolean): string[] {
  const out: string[] = [];
  const last = new Map<string, number>();
  for (const t of touches) if (!ignored(t.path)) last.set(t.path, Math.max(last.get(t.path) ?? -1, t.op));
  for (const [path, op] of last) {
    if (!batches.some((b) => b.afterOps > op && b.paths.includes(path))) {
      const before = batches.filter((b) => b.paths.includes(path)).map((b) => b.afterOps);
      const how = touches.filter((t) => t.path === path).slice(-3).map((t) => `${t.op}:${t.what ?? '?'}`).join(' ');
      out.push(`missed: ${path} last touched by op ${op}, reported after ops [${before.join(', ')}]; its last touches ${how}`);
    }
  }
  for (const b of batches) for (const p of b.paths) if (ignored(p)) out.push(`ignored: ${p} reported after op ${b.afterOps}`);
  return out;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('watcher checker', () => {
  const ign = (p: string): boolean => p.endsWith('.tmp');
  it('accepts a good history and finds a report that came before the last change, or an ignored path', () => {
    const touches = [{ op: 0, path: 'a' }, { op: 1, path: 'b' }, { op: 2, path: 'a' }, { op: 3, path: 'x.tmp' }];
    expect(checkWatchHistory(touches, [{ afterOps: 2, paths: ['a', 'b'] }, { afterOps: 4, paths: ['a'] }], ign)).toEqual([]);
    expect(checkWatchHistory(touches, [{ afterOps: 3, paths: ['a', 'b'] }, { afterOps: 4, paths: ['b'] }], ign)).toEqual([]);
    expect(checkWatchHistory(touches, [{ afterOps: 2, paths: ['a', 'b'] }], ign)).toEqual(['missed: a last touched by op 2, reported after ops [2]; its last touches 0:? 2:?']);
    expect(checkWatchHistory(touches, [{ afterOps: 4, paths: ['a', 'b', 'x.tmp'] }], ign)).toEqual(['ignored: x.tmp reported after op 4']);
  });
});

describe('watcher adversary', () => {
  it('seeded storms of creates, same-size rewrites, appends, renames, deletes and slow writes: every touched path is reported after its last change', async () => {
    const rnd = prng(feedSeed('watcher adversary', FILE, 'WATCH_SEED'));
    const dir = await tempDir('watch-adv');
    cleanups.push(() => dir.remove());
    const ignored = (p: string): boolean => p === '.state' || p.startsWith('.state/') || p.endsWith('.tmp');
    const batches: Delivered[] = [];
    const touches: Touch[] = [];
    let ops = 0;
    const w = await LocalWatcher.start({
      root: dir.path, settleMs: 250, batchMs: 40, ignore: ignored,
      onBatch: async (b) => {
        batches.push({ afterOps: ops, paths: b.paths });
        // A slow consumer now and then: changes during it go into the next batch.
        if (rnd.chance(0.2)) await sleep(rnd.int(200));
      },
    });
    cleanups.push(() => w.close());
    const abs = (p: string): string => join(dir.path, p);
    const names = ['a.txt', 'b.txt', 'd1/c.txt', 'd1/d2/e.txt', 'd3/f.bin', 'g.tmp', '.state/db', 'h.txt'];
    const touch = (p: string, what: string): void => {
      touches.push({ op: ops++, path: p, what });
    };
    for (let step = 0; step < 120; step++) {
      const p = rnd.pick(names);
      const exists = existsSync(abs(p));
      const kind = rnd.int(6);
      mkdirSync(dirname(abs(p)), { recursive: true });
      if (!exists || kind === 0) {
        writeFileSync(abs(p), `content ${step} ${'x'.repeat(rnd.int(50))}`);
        touch(p, exists ? 'rewrite' : 'create');
      } else if (kind === 1) {
        // Same size, new bytes: only mtime tells.
        writeFileSync(abs(p), Buffer.alloc(statSync(abs(p)).size, step % 256));
        touch(p, 'same-size');
      } else if (kind === 2) {
        appendFileSync(abs(p), 'more');
        touch(p, 'append');
      } else if (kind === 3) {
        const to = rnd.pick(names.filter((n) => n !== p));
        mkdirSync(dirname(abs(to)), { recursive: true });
        renameSync(abs(p), abs(to));
        touch(p, `rename-to ${to}`);
        touch(to, `rename-from ${p}${existsSync(abs(to)) ? '' : '?'}`);
      } else if (kind === 4) {
        rmSync(abs(p));
        touch(p, 'delete');
      } else {
        // A slow write: several appends with pauses shorter than the settle time.
        for (let i = 0; i < 1 + rnd.int(5); i++) {
          appendFileSync(abs(p), `chunk ${i}\n`);
          touch(p, 'slow-append');
          await sleep(rnd.int(60));
        }
      }
      if (rnd.chance(0.3)) await sleep(rnd.int(100));
    }
    // Quiet now: wait (by batches, generously) for the watcher to catch up, then check.
    for (let i = 0; i < 120 && checkWatchHistory(touches, batches, ignored).some((v) => v.startsWith('missed')); i++) await sleep(500);
    const violations = checkWatchHistory(touches, batches, ignored);
    expect(violations, violations.join('\n')).toEqual([]);
  }, 180_000);
});
