import { describe, expect, it } from 'vitest';
import { DaemonMetrics, type MetricsSource } from '../../src/daemon/metrics.js';
import { ReplicationWorker } from '../../src/replication/worker.js';
import { FLAT, routerFixture } from '../router/fixture.js';

// transfers.bwlimit for the replication worker: the outbox drains through one down and one up
// token bucket whose rate follows the timetable on the worker's clock (injected here).

const CHEAP = { ...FLAT, storageGbMonth: 0.001 };
const DEAR = { ...FLAT, storageGbMonth: 1 };
const TABLE = '08:00,1 19:00,off'; // 1 byte/s from 08:00, no limit from 19:00
const at = (h: number, m = 0): Date => new Date(2026, 0, 5, h, m);

async function fixture(now: () => Date) {
  return routerFixture({
    providers: [{ name: 'local', prices: CHEAP }, { name: 'remote', prices: DEAR }],
    policies: [{ replicas: 2, writeQuorum: 1 }],
    worker: { concurrency: 4, bwlimit: TABLE, now },
  });
}

describe('replication worker bandwidth timetable (transfers.bwlimit)', () => {
  it('paces copies by the window in force: at 1 B/s one burst passes and the next copy waits; from 19:00 (off) the backlog drains', async () => {
    let clock = at(9);
    const f = await fixture(() => clock);
    try {
      expect(f.worker.bandwidthStatus()).toEqual({ bwlimit: TABLE, up: 1, down: 1 });
      // Two 40 KiB objects: the buckets start with one 64 KiB burst, so one copy passes and the
      // other waits for 40 KiB of tokens at 1 byte/s (hours): it cannot finish while this test runs.
      const body = 'x'.repeat(40 * 1024);
      await f.router.put('a', body);
      await f.router.put('b', body);
      expect((await f.state.backlog()).count).toBe(2);
      const first = new Promise<string>((resolve) => f.worker.once('done', (d) => resolve(d.entry.key)));
      f.worker.start();
      const copied = await first;
      await new Promise((r) => setTimeout(r, 300));
      expect((await f.state.backlog()).count).toBe(1);
      expect(await f.memory.remote!.head(copied)).toMatchObject({ size: body.length });
      await f.worker.stop(0);

      // The same worker's clock moves into the evening window: no limit, the rest drains.
      clock = at(19, 30);
      const evening = ReplicationWorker.forRouter(f.router, { concurrency: 4, bwlimit: TABLE, now: () => clock, backoffBaseMs: 5, backoffMaxMs: 50, pollIntervalMs: 20 });
      expect(evening.bandwidthStatus()).toEqual({ bwlimit: TABLE });
      await evening.drain({ timeoutMs: 60_000 });
      for (const k of ['a', 'b']) expect(await f.memory.remote!.head(k)).toMatchObject({ size: body.length });
    } finally {
      await f.close();
    }
  });

  it('the limit in force follows the clock across windows, each way, and is exported as a metric', async () => {
    let clock = at(7, 59);
    const worker = new ReplicationWorker({ state: undefined as never, providers: {}, bwlimit: '08:00,10M:1M 19:00,off', now: () => clock });
    expect(worker.bandwidthStatus()).toEqual({ bwlimit: '08:00,10M:1M 19:00,off' });
    clock = at(8);
    expect(worker.bandwidthStatus()).toEqual({ bwlimit: '08:00,10M:1M 19:00,off', up: 10 * 1024 ** 2, down: 1024 ** 2 });
    const source = {
      providers: () => [], backlog: async () => undefined, readiness: async () => ({ ready: true }), lastScanAt: () => undefined,
      bandwidth: () => worker.bandwidthStatus(),
    } as unknown as MetricsSource;
    const metrics = new DaemonMetrics(source, { processMetrics: false });
    let text = await metrics.metrics();
    expect(text).toContain('cloudmux_replication_bwlimit_bytes_per_second{direction="up"} 10485760');
    expect(text).toContain('cloudmux_replication_bwlimit_bytes_per_second{direction="down"} 1048576');
    clock = at(23);
    text = await metrics.metrics();
    expect(text).not.toContain('cloudmux_replication_bwlimit_bytes_per_second{');
    expect(new ReplicationWorker({ state: undefined as never, providers: {} }).bandwidthStatus()).toBeUndefined();
  });

  it('refuses a timetable that does not parse (InvalidArgument naming the entry)', () => {
    expect(() => new ReplicationWorker({ state: undefined as never, providers: {}, bwlimit: '08:00,1Q' }))
      .toThrow(expect.objectContaining({ code: 'InvalidArgument', message: expect.stringContaining('rate "1Q"') as string }) as Error);
  });
});
