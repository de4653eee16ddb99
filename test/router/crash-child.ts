/**
 * Child process for the crash-safety test: puts `count` objects through a router (N=2, W=1) over
 * two fs stores, prints ACKED after each acknowledged put, then starts a replication worker whose
 * copies to `b` hang, prints COPYING once it holds leases, and waits to be killed with SIGKILL.
 * Usage: crash-child.ts <stateDb> <dirA> <dirB> <count>
 */
import { FsStore } from '../../providers/fs/store.js';
import { FaultyStore } from '../faults/faulty-store.js';
import { Router } from '../../src/router/router.js';
import { ReplicationWorker } from '../../src/replication/worker.js';
import { SqliteStateStore } from '../../src/state/sqlite.js';
import { pseudoRandomBytes } from '../../src/testing/data.js';

const [stateDb, dirA, dirB, countArg] = process.argv.slice(2);
const count = Number(countArg);
const a = new FsStore({ root: dirA! });
const b = new FaultyStore(new FsStore({ root: dirB! }));
const router = new Router({
  providers: [{ name: 'a', store: a }, { name: 'b', store: b }],
  state: new SqliteStateStore({ path: stateDb!, durability: 'full' }),
  policies: [{ replicas: 2, writeQuorum: 1 }],
  health: { probeIntervalMs: 0 },
  // The worker's copies hang holding their keys' write leases when the process is killed: short
  // leases let the restarted worker take them over soon, as the short outbox leases below do.
  writeLeaseMs: 1_000,
});
for (let i = 0; i < count; i++) {
  await router.put(`crash/k${i}`, pseudoRandomBytes(10_000 + i, `crash-${i}`));
  process.stdout.write(`ACKED ${i}\n`);
}
// Copies to b now hang mid-flight, holding their leases: the kill lands between ack and replication.
b.setPlan({ ops: ['put'], latencyMs: 600_000 });
const worker = ReplicationWorker.forRouter(router, { concurrency: 2, leaseMs: 1_000 });
worker.on('retry', (r) => process.stdout.write(`RETRY ${r.error}\n`));
worker.start();
setTimeout(() => process.stdout.write('COPYING\n'), 300);
setInterval(() => undefined, 1000);
