import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import { compareKeys, type ListItem, type ListOptions } from '../../src/core/index.js';
import { readJobStatus } from '../../src/jobs/job-report.js';
import { runJobWorker } from '../../src/jobs/job-worker.js';
import { probeSplit } from '../../src/jobs/range-probe.js';
import { PgSchemas, requirePostgres } from '../state/postgres-fixture.js';

const schemas = new PgSchemas();
beforeAll(requirePostgres);
afterAll(() => schemas.dropAll());
const names = { src: 'memory://src', dst: 'memory://dst' };

/** A memory store whose listing pages (of `page` keys) each cost `ms`, and which counts listing requests. */
class SlowListing extends MemoryStore {
  requests = 0;
  constructor(private readonly page: number, private readonly ms: number) {
    super();
  }

  override async *list(opts: ListOptions = {}): AsyncGenerator<ListItem> {
    this.requests++;
    let n = 0;
    for await (const item of super.list(opts)) {
      if (n++ % Math.min(this.page, opts.pageSize ?? this.page) === 0) await new Promise((ok) => setTimeout(ok, this.ms));
      yield item;
    }
  }
}

const dense = (i: number): string => `k${String(i).padStart(6, '0')}`;

async function fill(store: MemoryStore, n: number, key = dense): Promise<string[]> {
  const keys = Array.from({ length: n }, (_, i) => key(i));
  for (const k of keys) await store.put(k, 'x');
  return keys;
}

/** How many keys of `keys` lie in (after, end]. */
const within = (keys: string[], after: string | undefined, end: string | undefined): number =>
  keys.filter((k) => (after === undefined || compareKeys(k, after) > 0) && (end === undefined || compareKeys(k, end) <= 0)).length;

describe('probing a range for a split point', () => {
  it('splits dense sequential keys inside them, with both halves holding at least minKeys, in a few requests', async () => {
    const store = new MemoryStore();
    const keys = await fill(store, 20_000);
    for (const [from, end] of [[dense(150), undefined], [undefined, undefined], [dense(3000), dense(9000)], [dense(18_500), undefined]] as const) {
      const p = await probeSplit(store, from, end, { minKeys: 500 });
      expect(p.at, `${from} .. ${end}`).toBeDefined();
      const head = within(keys, from, p.at);
      const tail = within(keys, p.at, end);
      expect(head, `${from} .. ${p.at} .. ${end}`).toBeGreaterThanOrEqual(500);
      expect(tail, `${from} .. ${p.at} .. ${end}`).toBeGreaterThanOrEqual(500);
      expect(p.rounds).toBeLessThanOrEqual(5);
    }
    // The open-ended rest of a dense bucket is cut near its middle, not in the empty key space above it.
    const open = await probeSplit(store, dense(150), undefined, { minKeys: 500 });
    expect(within(keys, open.at, undefined)).toBeGreaterThan(2000);
    expect(within(keys, dense(150), open.at)).toBeGreaterThan(2000);
  });

  it('leaves a range alone when its rest holds fewer than two halves of minKeys', async () => {
    const store = new MemoryStore();
    await fill(store, 1500);
    expect((await probeSplit(store, dense(600), undefined, { minKeys: 500 })).at).toBeUndefined();
    expect((await probeSplit(store, undefined, dense(700), { minKeys: 500 })).at).toBeUndefined();
    expect((await probeSplit(store, undefined, undefined, { minKeys: 500 })).at).toBeDefined();
    expect((await probeSplit(new MemoryStore(), undefined, undefined, { minKeys: 1 })).at).toBeUndefined();
  });

  it('handles sparse keys and keys outside ASCII', async () => {
    const store = new MemoryStore();
    const keys = [
      ...await fill(store, 300, (i) => `a/${String(i).padStart(4, '0')}`),
      ...await fill(store, 300, (i) => `日本/${i}`),
      ...await fill(store, 300, (i) => `\u{1F600}/${String(i).padStart(3, '0')}`),
    ].sort(compareKeys);
    const p = await probeSplit(store, undefined, undefined, { minKeys: 100 });
    expect(p.at).toBeDefined();
    expect(within(keys, undefined, p.at)).toBeGreaterThanOrEqual(100);
    expect(within(keys, p.at, undefined)).toBeGreaterThanOrEqual(100);
  });
});

describe('listing a job in parallel', () => {
  it('dense sequential keys, 4 listers: every key listed exactly once, few ranges, the job completes', async () => {
    const state = await schemas.open({ maxConnections: 8 });
    const src = new SlowListing(100, 15);
    const dst = new MemoryStore();
    const n = 4000;
    const keys = await fill(src, n);
    const seen = new Map<string, number>();
    const workers = 4;
    const results = await Promise.all(Array.from({ length: workers }, (_, w) => runJobWorker(src, dst, {
      state, job: 'dense', worker: `l${w}`, names, preflight: false, copy: false, pollMs: 10, listBatch: 50, splitMinKeys: 200,
      onEvent: (e) => {
        if (e.type === 'listed') seen.set(e.key, (seen.get(e.key) ?? 0) + 1);
      },
    })));
    const status = await readJobStatus(state, 'dense');
    expect(status.summary.listed).toBe(n);
    expect([...seen.keys()].sort(compareKeys)).toEqual(keys);
    expect([...seen.values()].every((c) => c === 1)).toBe(true);
    expect(results.reduce((a, r) => a + r.mine.listed, 0)).toBe(n);
    expect(status.ranges.done).toBe(status.ranges.total);
    expect(status.ranges.total).toBeGreaterThan(1);
    // Splits need both halves to hold splitMinKeys: at most n / splitMinKeys ranges, in practice a few per lister.
    expect(status.ranges.total).toBeLessThanOrEqual(3 * workers);
    const rows = await schemas.sql<{ listed: string }>(`SELECT listed FROM ${schemaOf(state)}.migration_ranges WHERE job = 'dense' ORDER BY id`);
    expect(rows.every((r) => Number(r.listed) > 0)).toBe(true);
  });

  it('idle listers do not shred a range too small to split', async () => {
    const state = await schemas.open({ maxConnections: 8 });
    const src = new SlowListing(50, 10);
    await fill(src, 300);
    await Promise.all(Array.from({ length: 4 }, (_, w) => runJobWorker(src, new MemoryStore(), {
      state, job: 'small', worker: `l${w}`, names, preflight: false, copy: false, pollMs: 5, listBatch: 20, splitMinKeys: 200,
    })));
    const status = await readJobStatus(state, 'small');
    expect(status.summary.listed).toBe(300);
    expect(status.ranges.total).toBe(1);
  });
});

function schemaOf(state: { toString(): string }): string {
  return state.toString().match(/schema (\S+)\)/)![1]!;
}
