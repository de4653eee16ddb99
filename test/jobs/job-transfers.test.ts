import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import { readJobStatus } from '../../src/jobs/job-report.js';
import { runJobWorker } from '../../src/jobs/job-worker.js';
import type { AdaptiveConcurrency } from '../../src/layers/adaptive-concurrency.js';
import { BandwidthTimetable } from '../../src/layers/bandwidth-timetable.js';
import type { MigrationEvent } from '../../src/replication/stages/summary.js';
import { PgSchemas, requirePostgres } from '../state/postgres-fixture.js';

// Priority, metered links, adaptive concurrency and bandwidth timetables in migration jobs
// (`migrate --job` with --priority, --metered, --concurrency auto, --bwlimit "08:00,1M 19:00,off").

const schemas = new PgSchemas();
beforeAll(requirePostgres);
afterAll(() => schemas.dropAll());
const names = { src: 'memory://src', dst: 'memory://dst' };
const priority = { rules: [{ class: 'critical' as const, match: 'db/**' }, { class: 'bulk' as const, minSize: 1000 }] };

/** A source of 3 critical (db/), 4 normal and 3 bulk (≥ 1000 bytes) objects, sizes chosen against key order. */
async function source(): Promise<MemoryStore> {
  const src = new MemoryStore();
  const put = (key: string, size: number): Promise<unknown> => src.put(key, 'x'.repeat(size));
  for (const [k, n] of [['a-big', 5000], ['a-bigger', 9000], ['b-huge', 20_000], ['db/3', 300], ['db/1', 900], ['db/2', 100],
    ['n/1', 50], ['n/2', 10], ['n/3', 30], ['n/4', 20]] as const) await put(k, n);
  return src;
}

const copiedKeys = (events: MigrationEvent[]): string[] => events.flatMap((e) => (e.type === 'object' && e.outcome === 'copied' ? [e.key] : []));

describe('migration jobs: priority classes', () => {
  it('copies critical first, then normal, then bulk, smaller before larger in each; a joiner without rules takes the job\'s', async () => {
    const state = await schemas.open();
    const src = await source();
    const dst = new MemoryStore();
    // List everything first, so that claims see every object (a lister and copier running together
    // order only what has been listed).
    await runJobWorker(src, dst, { state, job: 'p', worker: 'lister', names, preflight: false, priority, copy: false, pollMs: 10 });
    const events: MigrationEvent[] = [];
    const r = await runJobWorker(src, dst, { state, job: 'p', worker: 'copier', names, preflight: false, concurrency: 1, pollMs: 10, onEvent: (e) => events.push(e) });
    expect(r.summary).toMatchObject({ listed: 10, copied: 10, failed: 0 });
    expect(r.summary.incomplete).toBeUndefined();
    expect(copiedKeys(events)).toEqual(['db/2', 'db/3', 'db/1', 'n/2', 'n/4', 'n/3', 'n/1', 'a-big', 'a-bigger', 'b-huge']);
  });

  it('refuses a joiner with other priority rules (InvalidConfig), and a job without rules keeps key order', async () => {
    const state = await schemas.open();
    const src = await source();
    await runJobWorker(src, new MemoryStore(), { state, job: 'q', names, preflight: false, priority, copy: false, pollMs: 10 });
    await expect(runJobWorker(src, new MemoryStore(), { state, job: 'q', names, preflight: false, priority: { rules: [{ class: 'critical', match: 'n/**' }] } }))
      .rejects.toMatchObject({ code: 'InvalidConfig', message: expect.stringContaining('priority') as string });

    const plain: MigrationEvent[] = [];
    await runJobWorker(src, new MemoryStore(), { state, job: 'plain', names, preflight: false, copy: false, pollMs: 10 });
    await runJobWorker(src, new MemoryStore(), { state, job: 'plain', names, preflight: false, concurrency: 1, pollMs: 10, onEvent: (e) => plain.push(e) });
    const keys = copiedKeys(plain);
    expect(keys).toEqual([...keys].sort());
    await expect(runJobWorker(src, new MemoryStore(), { state, job: 'plain', names, preflight: false, priority })).rejects.toMatchObject({ code: 'InvalidConfig' });
  });
});

describe('migration jobs: metered links', () => {
  it('a metered worker copies only critical objects and ends incomplete; an unmetered run then finishes the job', async () => {
    const state = await schemas.open();
    const src = await source();
    const dst = new MemoryStore();
    const metered = await runJobWorker(src, dst, { state, job: 'm', names, preflight: false, priority, metered: true, concurrency: 2, pollMs: 10 });
    expect(metered.summary.incomplete).toBe('metered: 7 non-critical objects deferred');
    expect(metered.mine.incomplete).toBe('metered: 7 non-critical objects deferred');
    expect(metered.summary).toMatchObject({ listed: 10, copied: 3, failed: 0 });
    const held: string[] = [];
    for await (const o of dst.list()) if (o.type === 'object') held.push(o.key);
    expect(held.sort()).toEqual(['db/1', 'db/2', 'db/3']);
    expect((await readJobStatus(state, 'm')).state).toBe('running');

    const later = await runJobWorker(src, dst, { state, job: 'm', names, preflight: false, pollMs: 10 });
    expect(later.summary).toMatchObject({ listed: 10, copied: 10, failed: 0 });
    expect(later.summary.incomplete).toBeUndefined();
    expect((await readJobStatus(state, 'm')).state).toBe('complete');
  });

  it('metered without rules defers everything (as a local run does), copying nothing', async () => {
    const state = await schemas.open();
    const dst = new MemoryStore();
    const r = await runJobWorker(await source(), dst, { state, job: 'all', names, preflight: false, metered: true, pollMs: 10 });
    expect(r.summary.incomplete).toBe('metered: 10 non-critical objects deferred');
    expect(r.summary.copied).toBe(0);
  });
});

describe('migration jobs: adaptive concurrency and bandwidth timetables', () => {
  it('concurrency auto: the worker copies through its own limiter per side, within its bounds', async () => {
    const state = await schemas.open();
    const limiters: AdaptiveConcurrency[] = [];
    const src = await source();
    const dst = new MemoryStore();
    const r = await runJobWorker(src, dst, {
      state, job: 'auto', names, preflight: false, concurrency: 'auto', adaptive: { min: 1, max: 3 }, pollMs: 10, onLimiter: (l) => limiters.push(l),
    });
    expect(r.summary).toMatchObject({ listed: 10, copied: 10, failed: 0 });
    expect(limiters.map((l) => l.name).sort()).toEqual(['memory://dst', 'memory://src']);
    for (const l of limiters) {
      expect(l.limit).toBeGreaterThanOrEqual(1);
      expect(l.limit).toBeLessThanOrEqual(3);
      expect(l.inFlight).toBe(0);
    }
  });

  it('a bwlimit timetable paces the worker by the window in force on its clock', async () => {
    const state = await schemas.open();
    const src = await source();
    const dst = new MemoryStore();
    const asked: Date[] = [];
    // 03:00 on the worker's clock: the 02:00 window (no limit) holds, so the run is not slowed; every read asked it.
    const now = (): Date => {
      const d = new Date(2026, 0, 5, 3, 0, 0);
      asked.push(d);
      return d;
    };
    const table = BandwidthTimetable.parse('02:00,off 08:00,1K');
    const r = await runJobWorker(src, dst, { state, job: 'bw', names, preflight: false, bwlimit: table, now, pollMs: 10 });
    expect(r.summary).toMatchObject({ copied: 10, failed: 0 });
    expect(asked.length).toBeGreaterThanOrEqual(10);
  });
});
