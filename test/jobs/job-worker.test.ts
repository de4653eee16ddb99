import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import { claimOverlaps } from '../../src/jobs/claim-overlaps.js';
import { readJobClaims, readJobStatus, type ClaimInterval } from '../../src/jobs/job-report.js';
import { JobStore } from '../../src/jobs/job-store.js';
import { runJobWorker } from '../../src/jobs/job-worker.js';
import { splitPoint } from '../../src/jobs/key-ranges.js';
import { compareKeys } from '../../src/core/index.js';
import { PgSchemas, requirePostgres } from '../state/postgres-fixture.js';

const schemas = new PgSchemas();
beforeAll(requirePostgres);
afterAll(() => schemas.dropAll());
const names = { src: 'memory://src', dst: 'memory://dst' };

describe('key range split points', () => {
  it('always fall strictly inside the range, in byte order, and make progress on dense prefixes', () => {
    const cases: [string | undefined, string | undefined][] = [
      [undefined, undefined], ['obj-00100', undefined], ['obj-00100', 'obj-00200'], ['a', 'b'], ['z', undefined], ['日本', undefined],
      ['\u{1F600}', undefined], ['a/b/c', 'a/b/d'], ['x\uFFFF', undefined], ['', 'a'],
    ];
    for (const [a, b] of cases) {
      const m = splitPoint(a, b);
      expect(m, `${a} .. ${b}`).toBeDefined();
      expect(compareKeys(m!, a ?? '')).toBeGreaterThan(0);
      if (b !== undefined) expect(compareKeys(m!, b)).toBeLessThan(0);
    }
    expect(splitPoint('a', 'a\u0000')).toBeUndefined();
    expect(splitPoint('b', 'a')).toBeUndefined();
    // Bisecting toward a dense range of keys sharing a prefix reaches inside it in a few steps per character.
    let hi: string | undefined;
    let steps = 0;
    while (steps < 60) {
      steps++;
      hi = splitPoint('obj-00100', hi);
      if (hi === undefined || compareKeys(hi, 'obj-00999') < 0) break;
    }
    expect(hi! < 'obj-00999' && hi! > 'obj-00100').toBe(true);
    expect(steps).toBeLessThan(40);
  });
});

describe('claim overlap checker', () => {
  const c = (key: string, worker: string, from: number, to: number): ClaimInterval => ({ key, worker, from, to, outcome: 'copied' });
  it('accepts hand-overs and finds two holders at once (known-bad histories)', () => {
    expect(claimOverlaps([c('a', 'w1', 0, 10), c('a', 'w2', 10, 20), c('b', 'w1', 5, 30)])).toEqual([]);
    expect(claimOverlaps([c('a', 'w1', 0, 10), c('a', 'w2', 9, 20)]).map((o) => o.key)).toEqual(['a']);
    // A long first claim overlapping two later ones.
    expect(claimOverlaps([c('k', 'w1', 0, 100), c('k', 'w2', 10, 20), c('k', 'w3', 50, 60)]).length).toBe(2);
  });
});

describe('migration jobs in PostgreSQL', () => {
  it('refuses a joiner with another source, destination or options (InvalidConfig), changing nothing', async () => {
    const state = await schemas.open();
    const src = new MemoryStore();
    await src.put('k', 'v');
    const dst = new MemoryStore();
    await runJobWorker(src, dst, { state, job: 'j', names, preflight: false, pollMs: 20 });
    const before = await readJobStatus(state, 'j');
    await expect(runJobWorker(src, dst, { state, job: 'j', names: { src: names.src, dst: 'memory://elsewhere' }, preflight: false }))
      .rejects.toMatchObject({ code: 'InvalidConfig', message: expect.stringContaining('memory://elsewhere') as string });
    await expect(runJobWorker(src, dst, { state, job: 'j', names, exclude: ['*.tmp'], preflight: false })).rejects.toMatchObject({ code: 'InvalidConfig' });
    await expect(runJobWorker(src, dst, { state, job: 'j', names, checksum: 'size-only', preflight: false })).rejects.toMatchObject({ code: 'InvalidConfig' });
    const after = await readJobStatus(state, 'j');
    expect({ ...after, workers: after.workers.map((w) => ({ ...w, lastSeenMsAgo: 0 })) }).toEqual({ ...before, workers: before.workers.map((w) => ({ ...w, lastSeenMsAgo: 0 })) });
    await expect(readJobStatus(state, 'nope')).rejects.toMatchObject({ code: 'NotFound' });
  });

  it('splits listing into ranges that idle workers take: every key listed once, the job done by three workers', async () => {
    const state = await schemas.open();
    const src = new MemoryStore();
    const dst = new MemoryStore();
    const n = 600;
    for (let i = 0; i < n; i++) await src.put(`obj-${String(i).padStart(5, '0')}`, `v${i}`);
    const results = await Promise.all([1, 2, 3].map((w) => runJobWorker(src, dst, {
      state, job: 'split', worker: `w${w}`, names, preflight: false, concurrency: 4, pollMs: 5, listBatch: 10, leaseMs: 20_000, splitMinKeys: 50,
    })));
    const status = await readJobStatus(state, 'split');
    expect(status.summary).toMatchObject({ listed: n, copied: n, failed: 0 });
    expect(status.ranges.total).toBeGreaterThan(1);
    expect(status.ranges.done).toBe(status.ranges.total);
    // Each worker's own listings add up to the whole bucket: no key listed twice.
    expect(results.reduce((a, r) => a + r.mine.listed, 0)).toBe(n);
    expect(results.reduce((a, r) => a + r.mine.copied, 0)).toBe(n);
    expect(claimOverlaps(await readJobClaims(state, 'split'))).toEqual([]);
    expect(status.workers.map((w) => w.state)).toEqual(['finished', 'finished', 'finished']);
  });

  it('a dead worker loses only its leases: they expire on the database clock and another worker takes the objects over', async () => {
    const state = await schemas.open();
    const src = new MemoryStore();
    const dst = new MemoryStore();
    for (let i = 0; i < 30; i++) await src.put(`k${String(i).padStart(2, '0')}`, `v${i}`);
    // A worker that joins, lists everything, claims five objects and dies without a word.
    const dead = new JobStore(state, 'takeover', 'dead');
    await dead.join({ src: names.src, dst: names.dst, include: [], exclude: [], checksum: 'auto', deleteSource: false }, 'h', 1);
    const range = (await dead.claimRange(60_000))!;
    const listed = [];
    for await (const i of src.list()) if (i.type === 'object') listed.push({ key: i.key, src: { key: i.key, size: i.size, etag: i.etag, lastModified: i.lastModified } });
    await dead.rangeProgress(range, listed, 0, listed.at(-1)!.key, 60_000);
    await dead.finishRange(range);
    const stolen = await dead.claimObjects(5, 300);
    expect(stolen).toHaveLength(5);
    const r = await runJobWorker(src, dst, { state, job: 'takeover', worker: 'alive', names, preflight: false, leaseMs: 5_000, pollMs: 20 });
    expect(r.summary).toMatchObject({ listed: 30, copied: 30, failed: 0 });
    const claims = await readJobClaims(state, 'takeover');
    expect(claims.filter((c) => c.worker === 'dead')).toHaveLength(5);
    expect(claims.filter((c) => c.worker === 'alive' && stolen.some((s) => s.key === c.key))).toHaveLength(5);
    expect(claimOverlaps(claims)).toEqual([]);
    // The dead worker's late record is refused: its claim is no longer the object's.
    expect(await dead.record(stolen[0]!, { type: 'failed', key: stolen[0]!.key, reason: 'late' })).toBe(false);
    expect(await dead.release(stolen[0]!, 'failed')).toBe(false);
    expect((await readJobStatus(state, 'takeover')).summary.failed).toBe(0);
  });
});
