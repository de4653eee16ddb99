import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createAzureStore } from '../../providers/azure/index.js';
import { listAll } from '../../src/core/index.js';
import { removeAllUnder } from '../../src/core/remove.js';
import { PriorityClassifier, WeightedClassPicker } from '../../src/core/priority.js';
import type { PriorityOptions } from '../../src/core/priority.js';
import { FLAT, routerFixture } from '../router/fixture.js';

const RULES: PriorityOptions = { rules: [{ class: 'critical', match: 'critical/**' }, { class: 'bulk', match: 'bulk/**' }, { class: 'bulk', minSize: 100 * 1024 * 1024 }] };
const CHEAP = { ...FLAT, storageGbMonth: 0.001 };
const DEAR = { ...FLAT, storageGbMonth: 1 };

describe('priority classes', () => {
  it('a classifier: first matching rule by glob, size or metadata; the default otherwise', () => {
    const c = new PriorityClassifier({ rules: [...RULES.rules!, { class: 'critical', metadata: { tier: 'gold' } }], default: 'normal' });
    expect(c.classify({ key: 'critical/db.dump', size: 1e9 })).toBe('critical');
    expect(c.classify({ key: 'bulk/x', size: 1 })).toBe('bulk');
    expect(c.classify({ key: 'video.mp4', size: 200 * 1024 * 1024 })).toBe('bulk');
    expect(c.classify({ key: 'x', size: 1, metadata: { tier: 'gold' } })).toBe('critical');
    expect(c.classify({ key: 'x', size: 1 })).toBe('normal');
    expect(() => new PriorityClassifier({ weights: { bulk: 0 } })).toThrow(/starves/);
  });

  it('weighted picks: 16/4/1 interleaved, so bulk gets one slot in 21 however much critical is owed', () => {
    const p = new WeightedClassPicker();
    const q = p.quota(210);
    expect(q).toEqual({ critical: 160, normal: 40, bulk: 10 });
    // A claim of one slot at a time still gives bulk its turn.
    const one = new WeightedClassPicker();
    const seq = Array.from({ length: 21 }, () => one.next());
    expect(seq.filter((c) => c === 'bulk')).toHaveLength(1);
  });

  it('the router classifies what a put owes; a flood of critical does not starve bulk (memory stores)', async () => {
    const f = await routerFixture({
      providers: [{ name: 'local', prices: CHEAP }, { name: 'remote', prices: DEAR }],
      policies: [{ replicas: 2, writeQuorum: 1 }],
      router: { priority: RULES },
      worker: { concurrency: 1 },
    });
    try {
      for (let i = 0; i < 10; i++) await f.router.put(`bulk/${i}`, `b${i}`);
      for (let i = 0; i < 200; i++) await f.router.put(`critical/${i}`, `c${i}`);
      const owed = await f.state.entries({ state: 'pending', limit: 10_000 });
      expect(owed.every((e) => e.provider === 'remote')).toBe(true);
      expect(owed.filter((e) => e.priority === 'bulk')).toHaveLength(10);
      expect((await f.state.backlog()).byClass.critical.count).toBe(200);
      // One slot at a time (concurrency 1): within the first 105 entries done, bulk had ≥ 4 (1 in 21).
      const order: string[] = [];
      f.worker.on('done', (d) => order.push(d.entry.priority));
      for (let i = 0; i < 105; i++) await f.worker.runOnce();
      expect(order.filter((c) => c === 'bulk').length).toBeGreaterThanOrEqual(4);
      expect(order.slice(0, 10).filter((c) => c === 'critical').length).toBeGreaterThanOrEqual(9);
    } finally {
      await f.close();
    }
  });

  it('metered: only critical entries are claimed; the rest wait, nothing is dropped', async () => {
    const f = await routerFixture({
      providers: [{ name: 'local', prices: CHEAP }, { name: 'remote', prices: DEAR }],
      policies: [{ replicas: 2, writeQuorum: 1 }],
      router: { priority: RULES },
      worker: { metered: true },
    });
    try {
      await f.router.put('bulk/a', 'a');
      await f.router.put('plain', 'p');
      await f.router.put('critical/a', 'c');
      while (await f.worker.runOnce() > 0);
      const left = await f.state.backlog();
      expect(left.byClass).toMatchObject({ critical: { count: 0 }, normal: { count: 1 }, bulk: { count: 1 } });
      expect(await f.memory.remote!.head('critical/a')).toBeDefined();
    } finally {
      await f.close();
    }
  });
});

const connectionString = process.env.AZURE_STORAGE_CONNECTION_STRING;
const container = process.env.AZURE_CONTAINER ?? 'cloudmux-test';

describe.runIf(connectionString)('priority classes in the outbox against Azurite', () => {
  it('2,000 bulk replicas owed, then 20 critical written: every critical replica lands before half the bulk backlog; bulk finishes', async () => {
    const run = `priority-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
    const azure = createAzureStore({ connectionString, container, prefix: run });
    const f = await routerFixture({
      providers: [{ name: 'local', prices: CHEAP }, { name: 'azure', prices: DEAR, wrap: () => azure }],
      policies: [{ replicas: 2, writeQuorum: 1 }],
      router: { priority: RULES },
      worker: { concurrency: 8, pollIntervalMs: 50 },
    });
    const BULK = 2000;
    const t0 = performance.now();
    try {
      // The bulk backlog, recorded as the router records a put whose second replica is owed
      // (bytes on `local`, one replicate entry for `azure`), classified by the router's rules.
      const body = randomBytes(1024);
      for (let i = 0; i < BULK; i++) {
        const key = `bulk/${String(i).padStart(4, '0')}`;
        const meta = await f.memory.local!.put(key, body);
        const version = await f.state.nextVersion();
        await f.state.commitPut({
          key, version, size: body.byteLength, metadata: {}, lastModified: new Date(), acked: [{ provider: 'local', version, etag: meta.etag }], owed: ['azure'],
          priority: f.router.priority.classify({ key, size: body.byteLength }),
        });
      }
      expect((await f.state.backlog()).byClass.bulk.count).toBe(BULK);
      let bulkDone = 0;
      const criticalAt: number[] = [];
      let started!: () => void;
      const draining = new Promise<void>((r) => (started = r));
      f.worker.on('done', (d) => {
        if (d.entry.priority === 'bulk' && ++bulkDone === 100) started();
        if (d.entry.priority === 'critical') criticalAt.push(bulkDone);
      });
      f.worker.start();
      await draining;
      // 20 critical objects written through the router while bulk drains.
      for (let i = 0; i < 20; i++) await f.router.put(`critical/${i}`, randomBytes(2048));
      const writtenAt = bulkDone;
      const deadline = Date.now() + 240_000;
      while ((await f.state.backlog()).count > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      await f.worker.stop();
      console.log(`priority proof: critical written at bulk ${writtenAt}/${BULK}; critical replicas landed at bulk ${Math.min(...criticalAt)}..${Math.max(...criticalAt)}; all drained in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      expect(criticalAt).toHaveLength(20);
      expect(Math.max(...criticalAt)).toBeLessThan(BULK / 2);
      expect((await f.state.backlog()).count).toBe(0);
      expect(bulkDone).toBe(BULK);
      expect((await listAll(azure)).length).toBe(BULK + 20);
    } finally {
      await f.worker.stop();
      await removeAllUnder(azure, '').catch(() => undefined);
      await f.close();
    }
  }, 300_000);
});

describe('replication worker with adaptive concurrency', () => {
  it('a destination that throttles gets its own limit cut; everything still drains', async () => {
    const f = await routerFixture({
      providers: [{ name: 'local', prices: CHEAP }, { name: 'remote', prices: DEAR }],
      policies: [{ replicas: 2, writeQuorum: 1 }],
      worker: { concurrency: 8, adaptive: { initial: 8, max: 8 }, backoffBaseMs: 1, backoffMaxMs: 5 },
    });
    try {
      for (let i = 0; i < 40; i++) await f.router.put(`k/${i}`, `v${i}`);
      // The next three puts to `remote` are throttled (a 503 SlowDown burst).
      f.faulty.remote!.setPlan({ ops: ['put'], failCalls: { 1: 'Throttled', 2: 'Throttled', 3: 'Throttled' } });
      f.worker.start();
      const deadline = Date.now() + 30_000;
      while ((await f.state.backlog()).count > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await f.worker.stop();
      expect((await f.state.backlog()).count).toBe(0);
      const [remote, local] = ['remote', 'local'].map((n) => f.worker.adaptiveStatus().find((s) => s.name === n)!);
      expect(remote!.throttles).toBe(3);
      expect(remote!.decreases).toBeGreaterThanOrEqual(1);
      expect(remote!.inFlight).toBe(0);
      expect(local!.throttles).toBe(0);
      expect((await listAll(f.memory.remote!)).length).toBe(40);
    } finally {
      await f.close();
    }
  });
});
