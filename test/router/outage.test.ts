import { afterEach, describe, expect, it } from 'vitest';
import { routerFixture, type Fixture } from './fixture.js';
import { runOutageWorkload } from './workload.js';

const fixtures: Fixture[] = [];
afterEach(async () => {
  for (const f of fixtures.splice(0)) await f.close();
});

describe('provider outage (memory providers, injected failures)', () => {
  it('N=2, W=1: 1,000 puts and reads all succeed while b is out; the outbox drains and both hold identical bytes', async () => {
    const f = await routerFixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 1 }], health: { probeIntervalMs: 50 } });
    fixtures.push(f);
    f.router.startProbes();
    const res = await runOutageWorkload({
      router: f.router, worker: f.worker, direct: f.memory, prefix: 'w/',
      down: async () => f.outage('b', true),
      up: async () => f.outage('b', false),
    });
    expect(res.puts + res.reads).toBe(1000);
    expect(res.owedAtPeak).toBeGreaterThan(100);
  });
});
