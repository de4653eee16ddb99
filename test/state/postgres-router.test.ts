import { afterAll, beforeAll } from 'vitest';
import { MemoryStore } from '../../providers/memory/store.js';
import type { BlobStore } from '../../src/core/types.js';
import { ReplicationWorker } from '../../src/replication/worker.js';
import { Router } from '../../src/router/router.js';
import { testStore } from '../../src/testing/index.js';
import { FLAT } from '../router/fixture.js';
import { PgSchemas, requirePostgres } from './postgres-fixture.js';

// The router's own conformance run (test/router/conformance.test.ts: two memory providers, N=2,
// W=1, worker running) with its catalog and outbox in PostgreSQL instead of SQLite.
const schemas = new PgSchemas();
const rigs = new Map<BlobStore, { worker: ReplicationWorker; router: Router; memory: MemoryStore[] }>();

beforeAll(requirePostgres);
// Also when create() failed half-way and destroy() never ran.
afterAll(() => schemas.dropAll());

testStore('router over postgres state (memory x2, N=2 W=1)', {
  async create() {
    const state = await schemas.open({ maxConnections: 10 });
    const names = ['a', 'b'];
    const memory = names.map((name) => new MemoryStore({ name }));
    const router = new Router({
      providers: memory.map((store, i) => ({ name: names[i]!, store, prices: FLAT })),
      state,
      policies: [{ replicas: 2, writeQuorum: 1 }],
      health: { probeIntervalMs: 0, minRequests: 3, recoverAfter: 2, windowMs: 1000 },
    });
    const worker = ReplicationWorker.forRouter(router, { concurrency: 4, backoffBaseMs: 5, backoffMaxMs: 50, pollIntervalMs: 20, deferMs: 20 });
    worker.start();
    rigs.set(router, { worker, router, memory });
    return router;
  },
  async destroy(store) {
    const rig = rigs.get(store)!;
    await rig.worker.stop();
    await rig.router.close();
    await schemas.dropAll();
  },
  async corrupt(store, key) {
    // Flip a byte on every holder behind the router's back (each keeps its recorded sha256).
    for (const mem of rigs.get(store)!.memory) {
      const entry = (mem as unknown as { objects: Map<string, { data: Buffer }> }).objects.get(key);
      if (entry) {
        const copy = Buffer.from(entry.data);
        copy[0] = copy[0]! ^ 0xff;
        entry.data = copy;
      }
    }
  },
});
