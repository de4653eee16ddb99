import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import { AuthFailedError, IntegrityError, compareKeys, getBuffer, listAll } from '../../src/core/index.js';
import type { Body, ListOptions, PutOptions } from '../../src/core/index.js';
import { MigrationJournal } from '../../src/replication/journal.js';
import { migrate, type MigrationEvent } from '../../src/replication/migrate.js';
import { treesMatch, verifyTrees } from '../../src/replication/verify.js';
import { seedDataset } from './dataset.js';
import { FaultyStore, type FaultPlan } from '../faults/faulty-store.js';
import { expectNoVerifiedRecopy, overrideStore, payload } from './helpers.js';

const dirs: string[] = [];
function journalPath(): string {
  const d = mkdtempSync(join(tmpdir(), 'cloudmux-migrate-test-'));
  dirs.push(d);
  return join(d, 'journal.sqlite');
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function keysOf(store: MemoryStore): Promise<string[]> {
  return (await listAll(store)).map((i) => (i.type === 'object' ? i.key : i.prefix));
}

describe('migrate', () => {
  it('copies a whole tree (empty objects, unicode, nested prefixes) and verify then finds no difference', async () => {
    const src = new MemoryStore();
    const dst = new MemoryStore();
    const keys = await seedDataset(src);
    const s = await migrate(src, dst, { concurrency: 4 });
    expect(s.failed).toBe(0);
    expect(s.copied).toBe(keys.length);
    expect(s.verified).toBe(keys.length);
    expect(s.listed).toBe(keys.length);
    expect(await keysOf(dst)).toEqual([...keys].sort(compareKeys));
    const head = await dst.head('unicode/emoji-😀.bin');
    expect(head.metadata.idx).toBeDefined();
    expect(head.contentType).toBe((await src.head('unicode/emoji-😀.bin')).contentType);
    const report = await verifyTrees(src, dst);
    expect(treesMatch(report)).toBe(true);
    expect(report.matching).toBe(keys.length);
  });

  it('copies only what is missing or differs, and leaves extra destination objects alone', async () => {
    const src = new MemoryStore();
    const dst = new MemoryStore();
    await src.put('same', 'identical');
    await src.put('differs-same-size', 'AAAA');
    await src.put('differs-size', 'short');
    await src.put('missing', 'new');
    await dst.put('same', 'identical');
    await dst.put('differs-same-size', 'BBBB');
    await dst.put('differs-size', 'longer body');
    await dst.put('extra', 'only here');
    const events: MigrationEvent[] = [];
    const s = await migrate(src, dst, { onEvent: (e) => events.push(e) });
    expect(s).toMatchObject({ listed: 4, identical: 1, copied: 3, failed: 0, extraAtDestination: 1 });
    expect(String(await getBuffer(dst, 'differs-same-size'))).toBe('AAAA');
    expect(String(await getBuffer(dst, 'extra'))).toBe('only here');
    const copiedKeys = events.flatMap((e) => (e.type === 'object' && e.outcome === 'copied' ? [e.key] : []));
    expect(copiedKeys.sort()).toEqual(['differs-same-size', 'differs-size', 'missing']);
    // A second run finds everything identical.
    const again = await migrate(src, dst);
    expect(again).toMatchObject({ copied: 0, identical: 4 });
  });

  it('applies include and exclude globs', async () => {
    const src = new MemoryStore();
    const dst = new MemoryStore();
    for (const k of ['logs/a.log', 'logs/b.txt', 'img/x.png', 'img/tmp/y.png', 'top.log']) await src.put(k, k);
    const s = await migrate(src, dst, { include: ['**/*.png', '**/*.log'], exclude: ['img/tmp/**'] });
    expect(s.copied).toBe(3);
    expect(await keysOf(dst)).toEqual(['img/x.png', 'logs/a.log', 'top.log']);
  });

  it('dry-run reports what would be copied and writes nothing', async () => {
    const src = new MemoryStore();
    const dst = new MemoryStore();
    await seedDataset(src, { small: 3 });
    const path = journalPath();
    const s = await migrate(src, dst, { dryRun: true, journal: path });
    expect(s.wouldCopy).toBe(s.listed);
    expect(s.copied).toBe(0);
    expect(await keysOf(dst)).toEqual([]);
    expect(() => rmSync(path)).toThrow(); // no journal either
  });

  it('delete-source removes sources only after their copy verified', async () => {
    const src = new MemoryStore();
    const inner = new MemoryStore();
    for (const k of ['a', 'b', 'c']) await src.put(k, `body of ${k}`);
    // The destination refuses b: its copy never verifies, so b must stay at the source.
    const dst = overrideStore(inner, {
      put: async (key: string, body: Body, opts?: PutOptions) => {
        if (key === 'b') throw new IntegrityError('refused');
        return inner.put(key, body, opts);
      },
    });
    const s = await migrate(src, dst, { deleteSource: true, retries: 1 });
    expect(s).toMatchObject({ copied: 2, failed: 1, sourceDeleted: 2 });
    expect(s.failures[0]).toMatchObject({ key: 'b' });
    expect(s.failures[0]!.reason).toMatch(/IntegrityError/);
    expect(await keysOf(src)).toEqual(['b']);
    expect(await keysOf(inner)).toEqual(['a', 'c']);
  });

  it('fails fast with one line naming the side, before writing anything, when a store does not answer', async () => {
    const src = new MemoryStore();
    await src.put('k', 'v');
    const inner = new MemoryStore();
    const dst = overrideStore(inner, {
      // eslint-disable-next-line require-yield
      list: async function* (_opts?: ListOptions) {
        throw new AuthFailedError('the access key was rejected', { provider: 'memory' });
      },
    });
    const err = await migrate(src, dst, { names: { src: 'memory://src', dst: 'memory://dst' } }).then(() => new Error('no error'), (e: unknown) => e as Error);
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toBe('cannot use the destination memory://dst (AuthFailed): the access key was rejected');
    expect(err.message).not.toContain('\n');
    expect(await keysOf(inner)).toEqual([]);
  });

  it('completes and verifies through FaultyStores injecting 10% faults (errors, lost responses, reset/truncated/corrupt bodies, broken listings)', async () => {
    const srcInner = new MemoryStore();
    const dstInner = new MemoryStore();
    const keys = await seedDataset(srcInner, { small: 120 });
    const plan = (seed: number): FaultPlan => ({
      seed,
      errorRates: { Transient: 0.04, Throttled: 0.02 },
      lostResponse: 0.01,
      resetBody: 0.01,
      truncateBody: 0.01,
      corruptBody: 0.01,
      resetListing: 0.01,
    });
    const src = new FaultyStore(srcInner, plan(11));
    const dst = new FaultyStore(dstInner, plan(12));
    const path = journalPath();
    const s = await migrate(src, dst, { concurrency: 8, journal: path, preflight: false });
    expect(src.injected + dst.injected).toBeGreaterThan(20);
    expect(s.failures).toEqual([]);
    expect(s.copied).toBe(keys.length);
    const report = await verifyTrees(srcInner, dstInner, { download: true });
    expect(report.matching).toBe(keys.length);
    expect(treesMatch(report)).toBe(true);
  });

  it('resumes after an abort from the journal cursor without copying a verified object twice', async () => {
    const src = new MemoryStore();
    const dst = new MemoryStore();
    const keys = await seedDataset(src, { small: 60 });
    const path = journalPath();
    const ctl = new AbortController();
    let copied = 0;
    const first = await migrate(src, dst, {
      concurrency: 3,
      journal: path,
      signal: ctl.signal,
      onEvent: (e) => {
        if (e.type === 'object' && e.outcome === 'copied' && ++copied === 25) ctl.abort();
      },
    });
    expect(first.incomplete).toBe('aborted');
    const second = await migrate(src, dst, { concurrency: 3, journal: path });
    expect(second.resumedAfter).toBeDefined();
    expect(second.failed).toBe(0);
    expect(first.copied + second.copied).toBeLessThanOrEqual(keys.length + 3); // at most the in-flight ones again
    expect(treesMatch(await verifyTrees(src, dst))).toBe(true);
    const j = MigrationJournal.open(path, { src: src.toString(), dst: dst.toString() }, JSON.stringify({ include: [], exclude: [] }));
    try {
      expectNoVerifiedRecopy(j);
      expect(j.counts().verified).toBe(keys.length);
    } finally {
      j.close();
    }
  });

  it('a resumed run copies objects rewritten or created behind its cursor while the killed run went on', async () => {
    const src = new MemoryStore();
    const dst = new MemoryStore();
    for (const k of ['a', 'b', 'c', 'd', 'e', 'f']) await src.put(k, `${k} one`);
    const path = journalPath();
    const ctl = new AbortController();
    const first = await migrate(src, dst, {
      concurrency: 1, journal: path, signal: ctl.signal,
      onEvent: (e) => {
        if (e.type === 'object' && e.key === 'd') ctl.abort();
      },
    });
    expect(first.incomplete).toBe('aborted');
    // While that run went on (after it had passed them), another writer rewrote "a" at the same
    // size and created "b2": both lie behind the cursor the next run resumes after.
    await src.put('a', 'A ONE');
    await src.put('b2', 'new');
    const second = await migrate(src, dst, { concurrency: 1, journal: path });
    expect(second.resumedAfter).toBeDefined();
    expect(second.incomplete).toBeUndefined();
    expect((await getBuffer(dst, 'a')).toString()).toBe('A ONE');
    expect((await getBuffer(dst, 'b2')).toString()).toBe('new');
    expect(treesMatch(await verifyTrees(src, dst, { download: true }))).toBe(true);
    // What the journal proves verified is not copied again.
    const j = MigrationJournal.open(path, { src: src.toString(), dst: dst.toString() }, JSON.stringify({ include: [], exclude: [] }));
    try {
      expectNoVerifiedRecopy(j);
    } finally {
      j.close();
    }
  });

  it('copies an object again when its source changed after a verified copy', async () => {
    const src = new MemoryStore();
    const dst = new MemoryStore();
    await src.put('k', 'v1');
    const path = journalPath();
    await migrate(src, dst, { journal: path });
    await src.put('k', 'v2 is longer');
    const s = await migrate(src, dst, { journal: path });
    expect(s.copied).toBe(1);
    expect(String(await getBuffer(dst, 'k'))).toBe('v2 is longer');
  });

  it('refuses a journal that belongs to another pair of stores', async () => {
    const path = journalPath();
    await migrate(new MemoryStore({ name: 'a' }), new MemoryStore({ name: 'b' }), { journal: path });
    await expect(migrate(new MemoryStore({ name: 'c' }), new MemoryStore({ name: 'b' }), { journal: path })).rejects.toMatchObject({ code: 'InvalidConfig' });
  });

  it('limits bandwidth with bytesPerSecond', async () => {
    const src = new MemoryStore();
    const dst = new MemoryStore();
    await src.put('a', payload(300_000));
    const events: number[] = [];
    const s = await migrate(src, dst, { bytesPerSecond: 1_000_000, onEvent: (e) => { if (e.type === 'progress') events.push(e.bytes); } });
    expect(s.copied).toBe(1);
    expect(events.reduce((a, b) => a + b, 0)).toBe(300_000);
  });
});
