import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import { listAll } from '../../src/core/index.js';
import type { AdaptiveConcurrency } from '../../src/layers/adaptive-concurrency.js';
import { migrate, rateLimited } from '../../src/replication/migrate.js';
import { BandwidthTimetable } from '../../src/layers/bandwidth-timetable.js';
import { FaultyStore } from '../faults/faulty-store.js';

async function seed(store: MemoryStore, n: number, size = 64): Promise<void> {
  for (let i = 0; i < n; i++) await store.put(`obj-${String(i).padStart(4, '0')}`, new Uint8Array(size).fill(i % 251));
}

describe('migrate --concurrency auto', () => {
  it('copies everything; a throttled put cuts the limit of the side that raised it', async () => {
    const src = new MemoryStore();
    const dstMemory = new MemoryStore();
    await seed(src, 60);
    // Puts 5, 6 and 7 are throttled (a burst of 503 SlowDown at the destination).
    const dst = new FaultyStore(dstMemory, { ops: ['put'], failCalls: { 5: 'Throttled', 6: 'Throttled', 7: 'Throttled' } });
    const limiters: AdaptiveConcurrency[] = [];
    const s = await migrate(src, dst, { concurrency: 'auto', adaptive: { initial: 8, max: 16 }, onLimiter: (l) => limiters.push(l), names: { src: 'src', dst: 'dst' } });
    expect(s.failed).toBe(0);
    expect(s.copied).toBe(60);
    expect((await listAll(dstMemory)).length).toBe(60);
    // Both sides are `memory`: the error cannot say which, so both count it; one cut per round, not three.
    expect(limiters.map((l) => l.name)).toEqual(['src', 'dst']);
    for (const l of limiters) {
      expect(l.status().throttles).toBe(3);
      expect(l.status().decreases).toBe(1);
      expect(l.inFlight).toBe(0);
    }
  });

  it('one limiter when source and destination are the same store', async () => {
    const store = new MemoryStore();
    await seed(store, 3);
    const limiters: AdaptiveConcurrency[] = [];
    const s = await migrate(store, store, { concurrency: 'auto', onLimiter: (l) => limiters.push(l) });
    expect(s.failed).toBe(0);
    expect(limiters).toHaveLength(1);
  });
});

describe('migrate --bwlimit timetable', () => {
  it('paces source reads by the down limit and destination writes by the up limit', async () => {
    const src = new MemoryStore();
    const dst = new MemoryStore();
    const limited = rateLimited(src, dst, { bwlimit: BandwidthTimetable.parse('08:00,10M:1M 19:00,off') });
    expect(String(limited.src)).toContain('bwlimit "08:00,10M:1M 19:00,off" down');
    expect(String(limited.dst)).toContain('bwlimit "08:00,10M:1M 19:00,off" up');
    // `off` all day and a plain rate keep the old shapes.
    expect(rateLimited(src, dst, { bwlimit: BandwidthTimetable.parse('off') }).src).toBe(src);
    expect(String(rateLimited(src, dst, { bytesPerSecond: 1000 }).src)).toContain('1000 B/s down');
  });
});

describe('migrate priority classes', () => {
  async function seeded(): Promise<MemoryStore> {
    const src = new MemoryStore();
    // Listing order: a/big, a/small, b/big, c/mid, db/x, db/y — then by class and size.
    await src.put('a/big', new Uint8Array(5000));
    await src.put('a/small', new Uint8Array(10));
    await src.put('b/big', new Uint8Array(4000));
    await src.put('c/mid', new Uint8Array(100));
    await src.put('db/x', new Uint8Array(3000));
    await src.put('db/y', new Uint8Array(30));
    return src;
  }
  const priority = { rules: [{ class: 'critical' as const, match: 'db/**' }, { class: 'bulk' as const, minSize: 4000 }] };

  it('dispatches critical first, then by class, smaller before larger within a class (one at a time)', async () => {
    const started: string[] = [];
    const s = await migrate(await seeded(), new MemoryStore(), { concurrency: 1, priority, onEvent: (e) => e.type === 'start' && started.push(e.key) });
    expect(s.copied).toBe(6);
    expect(started).toEqual(['db/y', 'db/x', 'a/small', 'c/mid', 'b/big', 'a/big']);
  });

  it('without priorities the order is the listing order, as before', async () => {
    const started: string[] = [];
    await migrate(await seeded(), new MemoryStore(), { concurrency: 1, onEvent: (e) => e.type === 'start' && started.push(e.key) });
    expect(started).toEqual(['a/big', 'a/small', 'b/big', 'c/mid', 'db/x', 'db/y']);
  });

  it('a lookahead bounds the reordering: objects listed further on wait their turn', async () => {
    const started: string[] = [];
    await migrate(await seeded(), new MemoryStore(), { concurrency: 1, priority, lookahead: 2, onEvent: (e) => e.type === 'start' && started.push(e.key) });
    // Two listed objects wait at a time: the better of them goes, the other waits for the next.
    expect(started).toEqual(['a/small', 'b/big', 'c/mid', 'db/x', 'db/y', 'a/big']);
  });

  it('metered: only critical objects move; the rest are deferred and the run says so', async () => {
    const dst = new MemoryStore();
    const s = await migrate(await seeded(), dst, { priority, metered: true });
    expect(s.copied).toBe(2);
    expect(s.deferred).toBe(4);
    expect(s.incomplete).toBe('metered: 4 non-critical objects deferred');
    expect((await listAll(dst)).map((i) => (i.type === 'object' ? i.key : '')).sort()).toEqual(['db/x', 'db/y']);
    // An unmetered run afterwards copies the rest.
    const again = await migrate(await seeded(), dst, { priority });
    expect(again).toMatchObject({ copied: 4, identical: 2 });
    expect(again.incomplete).toBeUndefined();
  });
});

describe('migrate CLI flags', () => {
  it('--priority and --concurrency parse, with usage errors on bad input', async () => {
    const { parsePriorityFlags, parseConcurrency } = await import('../../src/cli/commands/migrate.js');
    expect(parsePriorityFlags(['critical=db/**', 'bulk=size>100M', 'normal=size<1K'])).toEqual([
      { class: 'critical', match: 'db/**' }, { class: 'bulk', minSize: 100 * 1024 * 1024 + 1 }, { class: 'normal', maxSize: 1023 },
    ]);
    expect(() => parsePriorityFlags(['urgent=x'])).toThrow(/CLASS one of critical\|normal\|bulk/);
    expect(parseConcurrency('auto')).toEqual({ concurrency: 'auto' });
    expect(parseConcurrency('auto:2-32')).toEqual({ concurrency: 'auto', adaptive: { min: 2, max: 32 } });
    expect(parseConcurrency('8')).toEqual({ concurrency: 8 });
    expect(() => parseConcurrency('auto:9-3')).toThrow(/1 ≤ MIN ≤ MAX/);
  });
});

describe('config: transfers and replication.adaptive', () => {
  it('validates priority rules, sizes, bwlimit and adaptive bounds', async () => {
    const { configSchema } = await import('../../src/config/schema.js');
    const base = { providers: [{ name: 'a', url: 'memory://a' }] };
    const ok = configSchema.parse({
      ...base,
      replication: { adaptive: { min: 2, max: 16 } },
      transfers: { priority: { rules: [{ class: 'critical', match: 'db/**' }, { class: 'bulk', minSize: '1G' }] }, metered: true, bwlimit: '08:00,1M 19:00,off' },
    });
    expect(ok.transfers.priority?.rules[1]).toEqual({ class: 'bulk', minSize: 1024 ** 3 });
    expect(configSchema.parse(base).transfers).toEqual({ metered: false });
    const bad = (extra: object): string => {
      const r = configSchema.safeParse({ ...base, ...extra });
      return r.success ? '' : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    };
    expect(bad({ transfers: { bwlimit: '08:00,fast' } })).toMatch(/transfers\.bwlimit: bandwidth limit "08:00,fast": rate "fast" is not a size/);
    expect(bad({ transfers: { priority: { rules: [{ class: 'urgent' }] } } })).toMatch(/transfers\.priority\.rules\.0\.class/);
    expect(bad({ transfers: { priority: { weights: { bulk: 0 } } } })).toMatch(/weights\.bulk/);
    expect(bad({ replication: { adaptive: { min: 9, max: 3 } } })).toMatch(/adaptive.min must not exceed adaptive.max/);
  });
});
