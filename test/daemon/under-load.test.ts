import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Store } from '../../providers/s3/store.js';
import { Daemon, createDaemonLogger } from '../../src/daemon/index.js';
import { parseConfig } from '../../src/config/load.js';
import { registerScheme } from '../../src/registry.js';
import { StallAfterSend, startCpuHogs, startHungServer, startLoopBlocker, testSeed } from '../harness/cpu-hog.js';
import { emulatorOptions } from '../harness/s3.js';
import { tempDir } from '../harness/emulator.js';
import { LogCapture } from './helpers.js';

const SEED_VAR = 'CLOUDMUX_DAEMON_LOAD_SEED';
const seed = testSeed(SEED_VAR);
const stalling: StallAfterSend[] = [];

/** `stall-s3://<bucket>?endpoint=…`: the s3 driver, with the process stalling after a share of its requests. */
registerScheme('stall-s3', (url, options) => {
  const s = new StallAfterSend(new S3Store(emulatorOptions({
    bucket: url.host, endpoint: url.searchParams.get('endpoint') ?? undefined, ...(options as object),
  })), { seed, share: 0.3, stallMs: [1_200, 2_000] });
  stalling.push(s);
  return s;
});

/**
 * The daemon e2e once failed on a box at load 10+: the daemon marked a healthy provider down
 * because its probe deadlines counted the process's own stalls. Here the box is loaded on
 * purpose (two busy-loop processes), the daemon's event loop is stalled for longer than the
 * probe deadline right after some of its requests and at random, and a second provider hangs.
 */
describe('daemon under CPU load (2 busy-loop processes + event-loop stalls)', () => {
  let hogs: ReturnType<typeof startCpuHogs>;
  let hung: Awaited<ReturnType<typeof startHungServer>>;
  let dir: Awaited<ReturnType<typeof tempDir>>;

  beforeAll(async () => {
    console.log(`daemon under load: seed ${seed} (replay with ${SEED_VAR}=${seed})`);
    [hung, dir] = await Promise.all([startHungServer(), tempDir('daemon-load')]);
    hogs = startCpuHogs(2);
  });

  afterAll(async () => {
    await hogs?.stop();
    await hung?.close();
    await dir?.remove();
  });

  it('never marks the healthy provider down; the hung one goes down with the reason in the log line', async () => {
    const s3 = emulatorOptions();
    const credentials = { accessKeyId: 'S3RVER', secretAccessKey: '${LOAD_TEST_S3_SECRET}' };
    const config = parseConfig({
      providers: [
        { name: 'healthy', url: `stall-s3://${s3.bucket}?endpoint=${encodeURIComponent(s3.endpoint!)}`, options: { credentials } },
        { name: 'hung', url: `s3://${s3.bucket}?endpoint=${encodeURIComponent(`http://127.0.0.1:${hung.port}`)}&region=us-east-1&forcePathStyle=true`, options: { credentials } },
      ],
      policies: [{ prefix: '', replicas: 1, writeQuorum: 1, pin: ['healthy'] }],
      state: { sqlite: { path: `${dir.path}/state.db` } },
      health: { probeIntervalMs: 500, recoverAfter: 1 },
      daemon: { listen: { port: 0 }, shutdownGraceMs: 100, probeTimeoutMs: 1_000, scan: { intervalMs: 0 } },
    }, { env: { LOAD_TEST_S3_SECRET: 'S3RVER' } });
    const log = new LogCapture();
    const d = await Daemon.start({ config, logger: createDaemonLogger('debug', log), processMetrics: false });
    const blocker = startLoopBlocker({ seed: seed + 1, blockMs: [100, 1_200], gapMs: [1_000, 2_500] });
    const until = Date.now() + 12_000;
    const hungDown = (): boolean => log.events('provider.down').some((e) => e.provider === 'hung');
    try {
      while (Date.now() < until || !hungDown()) {
        if (Date.now() > until + 45_000) break;
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      const blocked = blocker.stop();
      const probes = log.events().filter((e) => e.provider === 'healthy' && String(e.event).startsWith('probe.'));
      const status = await d.status() as { providers: { name: string; lastProbe: { latencyMs: number; stalledMs: number } | null; inconclusiveProbes: number }[] };
      await d.stop({ graceMs: 100 });
      const healthy = status.providers.find((p) => p.name === 'healthy');
      console.log(`daemon under load: ${stalling.reduce((n, s) => n + s.stalls, 0)} stalls after a request, blocker ${blocked.blocks} blocks `
        + `(${blocked.blockedMs} ms, longest ${blocked.longestMs} ms); healthy: ${probes.filter((e) => e.event === 'probe.failed').length} probes failed, ${healthy?.inconclusiveProbes} inconclusive, `
        + `last probe ${JSON.stringify(healthy?.lastProbe)}; hung: ${JSON.stringify(log.events().filter((e) => e.provider === 'hung').map((e) => [e.event, e.reason]))}`);
    }
    expect(log.events('provider.down').filter((e) => e.provider === 'healthy'), `seed ${seed}`).toEqual([]);
    const down = log.events('provider.down').find((e) => e.provider === 'hung');
    expect(down?.reason, `seed ${seed}`).toMatch(/canary probes failed in a row; last: (put|get|delete): no answer within 1000 ms/);
    expect(stalling.reduce((n, s) => n + s.stalls, 0)).toBeGreaterThan(0);
  }, 120_000);
});
