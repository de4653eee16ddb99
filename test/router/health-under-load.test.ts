import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Store } from '../../providers/s3/store.js';
import type { BlobStore } from '../../src/core/index.js';
import { HealthTracker, type HealthChange, type ProbeOutcome } from '../../src/router/health-tracker.js';
import { ProbeScheduler } from '../../src/router/probe-scheduler.js';
import { StallAfterSend, startCpuHogs, startHungServer, startLoopBlocker, testSeed } from '../harness/cpu-hog.js';
import { emulatorOptions } from '../harness/s3.js';
import { freePort } from '../harness/emulator.js';

const SEED_VAR = 'CLOUDMUX_HEALTH_LOAD_SEED';

/**
 * Health is about the provider, not about us. Two busy-loop processes load the box (on 2 cores,
 * this process gets a fraction of a CPU) and a seeded blocker stalls this process's event loop
 * for longer than the probe deadline, again and again. A healthy provider (s3rver) must never be
 * marked down; one that hangs and one that refuses connections must still be.
 */
describe.runIf(process.env.S3_ENDPOINT)('health under CPU load (2 busy-loop processes + an event-loop blocker; needs S3_ENDPOINT: CLOUDMUX_EMULATORS must include s3)', () => {
  const seed = testSeed(SEED_VAR);
  let hogs: ReturnType<typeof startCpuHogs>;
  let hung: Awaited<ReturnType<typeof startHungServer>>;
  const stores: Record<string, BlobStore> = {};

  beforeAll(async () => {
    console.log(`health under load: seed ${seed} (replay with ${SEED_VAR}=${seed})`);
    hung = await startHungServer();
    const s3 = (endpoint?: string): S3Store => new S3Store(emulatorOptions({ credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, ...(endpoint ? { endpoint } : {}) }));
    // One in seven of the healthy provider's requests are followed by a stall of 1.2–2 s, longer than the probe deadline.
    stores.healthy = new StallAfterSend(s3(), { seed, share: 0.15, stallMs: [1_200, 2_000] });
    stores.hung = s3(`http://127.0.0.1:${hung.port}`);
    stores.refused = s3(`http://127.0.0.1:${await freePort()}`);
    hogs = startCpuHogs(2);
  });

  afterAll(async () => {
    await hogs?.stop();
    await Promise.allSettled(Object.values(stores).map((s) => s.close()));
    await hung?.close();
  });

  it('a healthy provider is never marked down; a hung one and a refusing one are', async () => {
    const health = new HealthTracker(Object.keys(stores), { recoverAfter: 1, probeIntervalMs: 500 });
    const changes: HealthChange[] = [];
    health.on('change', (c) => changes.push(c));
    const outcomes: ProbeOutcome[] = [];
    const scheduler = new ProbeScheduler(health, stores, { intervalMs: 500, timeoutMs: 1_000 });
    scheduler.on('probe', (p) => outcomes.push(p));
    // And, unrelated to any request, blocks of up to 1.2 s: well over the 1 s probe deadline.
    const blocker = startLoopBlocker({ seed: seed + 1, blockMs: [100, 1_200], gapMs: [1_000, 2_500], everyNth: 3 });
    scheduler.start();
    const until = Date.now() + 12_000;
    const downAt = (p: string): boolean => changes.some((c) => c.provider === p && c.to === 'down');
    // Watch for the whole window (the healthy provider must stay up throughout), at least until both failures showed.
    while (Date.now() < until || !(downAt('hung') && downAt('refused'))) {
      if (Date.now() > until + 45_000) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    scheduler.stop();
    const blocked = blocker.stop();
    health.stop();

    const of = (p: string): ProbeOutcome[] => outcomes.filter((o) => o.provider === p);
    const healthy = of('healthy');
    const count = (os: ProbeOutcome[], r: ProbeOutcome['result']): number => os.filter((o) => o.result === r).length;
    console.log(`health under load: ${(stores.healthy as StallAfterSend).stalls} stalls after a request, blocker ${blocked.blocks} blocks, ${blocked.blockedMs} ms blocked (longest ${blocked.longestMs} ms); `
      + `healthy: ${healthy.length} probes, ${count(healthy, 'failed')} failed, ${count(healthy, 'inconclusive')} inconclusive, `
      + `max stall seen by one probe ${Math.max(0, ...healthy.map((o) => o.stalledMs))} ms, max running latency ${Math.max(0, ...healthy.map((o) => o.latencyMs))} ms; `
      + `hung: ${count(of('hung'), 'failed')} failed, ${count(of('hung'), 'inconclusive')} inconclusive; refused: ${count(of('refused'), 'failed')} failed`);
    if (count(healthy, 'failed') > 0) console.log(healthy.filter((o) => o.result === 'failed'));

    expect(blocked.longestMs, 'the blocker stalled the loop beyond the probe deadline').toBeGreaterThan(1_000);
    expect(healthy.length).toBeGreaterThan(3);
    expect(changes.filter((c) => c.provider === 'healthy' && c.to === 'down'), `seed ${seed}`).toEqual([]);
    expect(healthy.some((o) => o.stalledMs > 1_000), 'some probe of the healthy provider sat through a stall longer than its deadline').toBe(true);
    expect(changes.find((c) => c.provider === 'hung' && c.to === 'down')?.reason, `seed ${seed}`).toMatch(/canary probes failed in a row; last: (put|get|delete): no answer within 1000 ms/);
    expect(changes.find((c) => c.provider === 'refused' && c.to === 'down')?.reason, `seed ${seed}`).toMatch(/canary probes failed in a row; last: put: /);
  }, 120_000);
});
