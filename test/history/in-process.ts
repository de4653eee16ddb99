import { MemoryStore } from '../../providers/memory/store.js';
import type { BlobStore } from '../../src/core/types.js';
import { ReplicationWorker } from '../../src/replication/worker.js';
import type { Router } from '../../src/router/router.js';
import type { StateStore } from '../../src/state/types.js';
import { FaultyStore } from '../faults/faulty-store.js';
import { LOCATIONS, WORKER, checkRun, type CopyOnReadRun, faultPlan, holderlessReads, healAndCheck, makeRouter, outageProvider, outageSchedule, type FaultSpec, type Policy, type RunReport } from './cluster.js';
import { HistoryRecorder, type HistoryEvent } from './history.js';
import { runClients, subSeed, type OpMix } from './workload.js';

export interface InProcessRun {
  name: string;
  seed: number;
  /** Router instances (each its own state connection, key locks, health and worker). */
  routers: number;
  /** Provider names (memory stores shared by every router). */
  providers: string[];
  policy: Policy;
  /** Opens one connection to the shared state (called once per router, and once for the healer). */
  openState(): Promise<StateStore>;
  keys: string[];
  opsPerRouter: number;
  concurrency: number;
  faults: FaultSpec;
  mix?: OpMix;
  /** Run a replication worker beside each router during the workload (default true). */
  workers?: boolean;
  /**
   * Routers at two locations (see LOCATIONS) with copy on read: reads at a location without a base
   * copy leave copies there that expire after `ttlMs` and are evicted by the workers as the run goes.
   */
  copyOnRead?: CopyOnReadRun;
}

/**
 * Several Router instances in one process over shared memory stores, each seeing the providers
 * through its own FaultyStores, each with its own connection to one shared StateStore: as many
 * independent writers as routers, at in-memory speed.
 */
export async function runInProcess(o: InProcessRun): Promise<RunReport> {
  const memory: Record<string, MemoryStore> = Object.fromEntries(o.providers.map((p) => [p, new MemoryStore({ name: p })]));
  const events: HistoryEvent[] = [];
  const down = outageProvider(o.faults, o.seed, o.providers);
  const outageStores: FaultyStore[] = [];
  const routers: { router: Router; worker?: ReplicationWorker; recorder: HistoryRecorder; faulty: Record<string, FaultyStore> }[] = [];
  for (let r = 0; r < o.routers; r++) {
    const proc = `r${r}`;
    const faulty: Record<string, FaultyStore> = {};
    for (const p of o.providers) faulty[p] = new FaultyStore(memory[p]!, faultPlan(o.faults, subSeed(o.seed, `${proc}/${p}`)));
    if (down) outageStores.push(faulty[down]!);
    const at = o.copyOnRead && { location: LOCATIONS[r % LOCATIONS.length]!, copyOnRead: o.copyOnRead };
    const router = makeRouter(faulty, await o.openState(), o.policy, at);
    const evictions = o.copyOnRead ? { evictIntervalMs: Math.max(5, Math.floor(o.copyOnRead.ttlMs / 2)) } : {};
    const worker = o.workers === false ? undefined : ReplicationWorker.forRouter(router, { ...WORKER, ...evictions, owner: `${proc}-worker` });
    worker?.on('error', () => undefined);
    routers.push({ router, worker, recorder: new HistoryRecorder(proc, undefined, (e) => events.push(e)), faulty });
  }
  // One outage for all routers, driven by the ops of the whole process.
  const total = o.routers * o.opsPerRouter;
  const schedule = outageSchedule(o.faults, total, outageStores);
  let opCount = 0;
  const started = performance.now();
  for (const r of routers) r.worker?.start();
  const stats = await Promise.all(routers.map((r) => runClients({
    store: r.router, recorder: r.recorder, keys: o.keys, prefix: '', ops: o.opsPerRouter, concurrency: o.concurrency,
    seed: subSeed(o.seed, r.recorder.proc), mix: o.mix, abortRate: o.faults.abortRate, abortAfterMs: o.faults.abortAfterMs,
    beforeOp: schedule && (() => schedule(opCount++)),
  })));
  const elapsedMs = performance.now() - started;
  const copies = o.copyOnRead ? { created: 0, hits: 0, evicted: 0, failed: 0 } : undefined;
  if (copies) for (const r of routers) for (const k of Object.keys(copies) as (keyof typeof copies)[]) copies[k] += r.router.copyOnRead!.counters[k];
  for (const s of outageStores) s.outage(false);
  for (const r of routers) {
    await r.worker?.stop();
    for (const f of Object.values(r.faulty)) f.heal();
  }
  await Promise.all(routers.map(async (r) => {
    await r.router.close();
    await r.router.state.close();
  }));
  // Heal: a fresh router straight on the providers.
  const healer = makeRouter(memory as Record<string, BlobStore>, await o.openState(), o.policy);
  const finalRecorder = new HistoryRecorder('final', undefined, (e) => events.push(e));
  try {
    const final = await healAndCheck({ router: healer, direct: memory, recorder: finalRecorder, keys: o.keys, policy: o.policy });
    const { ops, check } = checkRun(events);
    final.problems.push(...holderlessReads(ops));
    return { name: o.name, seed: o.seed, ops, check, final, stats, elapsedMs, ...(copies ? { copies } : {}) };
  } finally {
    await healer.close();
    await healer.state.close();
  }
}
