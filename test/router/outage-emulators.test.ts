import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../harness/emulator.js';
import { BreakerStore } from '../../src/layers/breaker.js';
import { TimeoutStore } from '../../src/layers/timeout.js';
import type { BlobStore } from '../../src/core/types.js';
import { defaultPriceTable } from '../../src/config/load.js';
import type { Prices } from '../../src/config/schema.js';
import { Router } from '../../src/router/router.js';
import { ReplicationWorker } from '../../src/replication/worker.js';
import { SqliteStateStore } from '../../src/state/sqlite.js';
import { getBuffer } from '../../src/core/helpers.js';
import { CloudmuxError } from '../../src/core/errors.js';
import { ownAzurite, ownS3rver, type OwnEmulator } from '../harness/restartable.js';
import { runOutageWorkload } from './workload.js';

async function waitUntil(cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

function listPrices(name: string): Prices {
  const p = defaultPriceTable()[name]!;
  return { storageGbMonth: p.storageGbMonth!, egressInternetGb: p.egressInternetGb!, egressToGb: {}, classAPer1k: p.classAPer1k!, classBPer1k: p.classBPer1k! };
}

const resilient = (s: BlobStore): BreakerStore => new BreakerStore(new TimeoutStore(s, { timeoutMs: 5_000 }), { volumeThreshold: 5, errorThresholdPercentage: 25, resetTimeoutMs: 300 });

describe('router over real emulators (own s3rver + azurite, killed with SIGKILL)', () => {
  const emulators: OwnEmulator[] = [];
  let s3: Awaited<ReturnType<typeof ownS3rver>>;
  let az: Awaited<ReturnType<typeof ownAzurite>>;

  beforeAll(async () => {
    [s3, az] = await Promise.all([ownS3rver(), ownAzurite()]);
    emulators.push(s3, az);
  });
  afterAll(async () => {
    await Promise.allSettled(emulators.map((e) => e.dispose()));
  });

  async function makeRouter(): Promise<{ router: Router; worker: ReplicationWorker; direct: Record<string, BlobStore>; close(): Promise<void> }> {
    const dir = await tempDir('router-emu-state');
    const state = new SqliteStateStore({ path: `${dir.path}/state.db`, durability: 'normal' });
    const direct = { s3: s3.store(), azure: az.store() };
    const router = new Router({
      providers: [
        { name: 's3', store: resilient(direct.s3), prices: listPrices('s3-standard') },
        { name: 'azure', store: resilient(direct.azure), prices: listPrices('azure-hot') },
      ],
      state,
      policies: [{ replicas: 2, writeQuorum: 1 }],
      health: { probeIntervalMs: 200, windowMs: 2_000, minRequests: 5, recoverAfter: 2 },
    });
    router.startProbes();
    const worker = ReplicationWorker.forRouter(router, { concurrency: 4, backoffBaseMs: 20, backoffMaxMs: 200, pollIntervalMs: 50, deferMs: 100 });
    return {
      router, worker, direct,
      async close() {
        await worker.stop();
        await router.close();
        await Promise.allSettled(Object.values(direct).map((d) => d.close()));
        await dir.remove();
      },
    };
  }

  it('N=2, W=1: azurite killed during 1,000 puts and reads; all succeed; after restart the outbox drains and SHA-256s match', async () => {
    const r = await makeRouter();
    try {
      const res = await runOutageWorkload({
        router: r.router, worker: r.worker, direct: r.direct, prefix: `outage-${Date.now()}/`,
        down: () => az.kill(),
        up: () => az.restart(),
        // Azurite keeps its index in memory and saves it every few seconds: a SIGKILL loses the
        // last acknowledged writes. The read path finds and repairs them.
        readRepair: true,
      });
      expect(res.puts + res.reads).toBe(1000);
      expect(res.owedAtPeak).toBeGreaterThan(100);
      console.log(`outage workload: ${res.puts} puts, ${res.reads} reads, ${res.owedAtPeak} replicas owed at the peak, drained in ${res.drainedMs.toFixed(0)} ms`);
    } finally {
      await r.close();
    }
  }, 180_000);

  it('no stale reads: v1 on both; azure down; v2 on s3 only; s3 killed and azure back → ProviderUnavailable, never v1', async () => {
    const r = await makeRouter();
    const key = `stale-${Date.now()}`;
    try {
      await r.router.put(key, 'v1');
      await r.worker.drain({ timeoutMs: 30_000 });
      // Azurite is stopped gracefully (SIGTERM) so that it keeps v1; s3rver writes files and survives SIGKILL.
      await az.stop();
      await r.router.put(key, 'v2');
      await s3.kill();
      await az.restart();
      expect((await getBuffer(r.direct.azure!, key)).toString()).toBe('v1');
      const err = await getBuffer(r.router, key).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(CloudmuxError);
      expect((err as CloudmuxError).code).toBe('ProviderUnavailable');
      await s3.restart();
      await waitUntil(() => r.router.health.state('s3') !== 'down');
      expect((await getBuffer(r.router, key)).toString()).toBe('v2');
      await waitUntil(() => r.router.health.state('azure') !== 'down');
      await r.worker.drain({ timeoutMs: 30_000 });
      expect((await getBuffer(r.direct.azure!, key)).toString()).toBe('v2');
    } finally {
      await r.close();
    }
  }, 120_000);
});
