import { MemoryStore } from '../../providers/memory/store.js';
import { FaultyStore } from '../faults/faulty-store.js';
import { tempDir } from '../harness/emulator.js';
import type { Prices } from '../../src/config/schema.js';
import type { BlobStore } from '../../src/core/types.js';
import { Router, type RouterOptions } from '../../src/router/router.js';
import type { HealthTrackerOptions } from '../../src/router/health-tracker.js';
import type { PolicyInput } from '../../src/router/policy.js';
import { ReplicationWorker, type ReplicationWorkerOptions } from '../../src/replication/worker.js';
import { SqliteStateStore } from '../../src/state/sqlite.js';

export const FLAT: Prices = { storageGbMonth: 0.02, egressInternetGb: 0.09, egressToGb: {}, classAPer1k: 0.005, classBPer1k: 0.0004 };

export interface Fixture {
  router: Router;
  worker: ReplicationWorker;
  state: SqliteStateStore;
  memory: Record<string, MemoryStore>;
  faulty: Record<string, FaultyStore>;
  /** Makes every call to the provider fail with Transient (an outage) or stop failing. */
  outage(name: string, on: boolean): void;
  /** Requests that reached the provider, by op. */
  calls(name: string, op?: string): number;
  close(): Promise<void>;
}

export interface FixtureOptions {
  providers: (string | { name: string; prices?: Prices; wrap?: (s: BlobStore) => BlobStore })[];
  policies?: PolicyInput[];
  health?: HealthTrackerOptions;
  worker?: Partial<ReplicationWorkerOptions>;
  router?: Partial<RouterOptions>;
}

/** A router over memory stores behind FaultyStores, with SQLite state in a temp dir. */
export async function routerFixture(opts: FixtureOptions): Promise<Fixture> {
  const dir = await tempDir('router');
  const state = new SqliteStateStore({ path: `${dir.path}/state.db`, durability: 'normal' });
  const memory: Record<string, MemoryStore> = {};
  const faulty: Record<string, FaultyStore> = {};
  const providers = opts.providers.map((p) => {
    const spec = typeof p === 'string' ? { name: p } : p;
    memory[spec.name] = new MemoryStore({ name: spec.name });
    faulty[spec.name] = new FaultyStore(memory[spec.name]!);
    const store = spec.wrap ? spec.wrap(faulty[spec.name]!) : faulty[spec.name]!;
    return { name: spec.name, store, prices: spec.prices ?? FLAT };
  });
  const router = new Router({
    providers, state, policies: opts.policies,
    health: { probeIntervalMs: 0, minRequests: 3, recoverAfter: 2, windowMs: 1000, ...opts.health },
    ...opts.router,
  });
  const worker = ReplicationWorker.forRouter(router, { concurrency: 4, backoffBaseMs: 5, backoffMaxMs: 50, pollIntervalMs: 20, deferMs: 20, ...opts.worker });
  return {
    router, worker, state, memory, faulty,
    outage(name, on) {
      if (on) faulty[name]!.setPlan({ errorRates: { Transient: 1 } });
      else faulty[name]!.heal();
    },
    calls(name, op) {
      return faulty[name]!.log.filter((r) => (op === undefined || r.op === op) && !r.fault).length;
    },
    async close() {
      await worker.stop();
      await router.close();
      await dir.remove();
    },
  };
}
