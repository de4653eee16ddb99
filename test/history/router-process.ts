/**
 * One router process of a multi-process history run (see processes.ts): opens the shared state
 * and providers, puts its own FaultyStores in front of them, runs its clients and a replication
 * worker, appends every event to its history file as it happens, and writes its stats.
 * Usage: router-process.ts <config.json>
 */
import { openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { ReplicationWorker } from '../../src/replication/worker.js';
import { FaultyStore } from '../faults/faulty-store.js';
import { WORKER, faultPlan, makeRouter, outageSchedule } from './cluster.js';
import { HistoryRecorder } from './history.js';
import { openProviders, openState, type ProcessConfig } from './processes.js';
import { runClients, subSeed } from './workload.js';

const cfg = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as ProcessConfig;
const fd = openSync(cfg.historyFile, 'a');
const recorder = new HistoryRecorder(cfg.proc, undefined, (e) => writeSync(fd, `${JSON.stringify(e)}\n`));
const direct = await openProviders(cfg.providers);
const faulty: Record<string, FaultyStore> = {};
for (const [name, store] of Object.entries(direct)) faulty[name] = new FaultyStore(store, faultPlan(cfg.faults, subSeed(cfg.seed, name)));
const router = makeRouter(faulty, await openState(cfg.state), cfg.policy);
const worker = cfg.workers ? ReplicationWorker.forRouter(router, { ...WORKER, owner: `${cfg.proc}-worker` }) : undefined;
worker?.on('error', () => undefined);
worker?.start();
const stats = await runClients({
  store: router, recorder, keys: cfg.keys, prefix: '', ops: cfg.ops, concurrency: cfg.concurrency, seed: subSeed(cfg.seed, 'clients'),
  // s3rver rewrites objects in place: a read racing a write can get torn bytes behind intact
  // headers (S3RVER_DEVIATIONS.overwriteWhileReading; CLOUDMUX_S3_EMULATOR is the harness's mark).
  verifyReads: process.env.CLOUDMUX_S3_EMULATOR === 's3rver' && Object.values(cfg.providers).some((url) => url.startsWith('s3://')),
  mix: cfg.mix, abortRate: cfg.faults.abortRate, abortAfterMs: cfg.faults.abortAfterMs,
  // Every process takes the same provider down over the same part of its own run.
  beforeOp: outageSchedule(cfg.faults, cfg.ops, cfg.outage ? [faulty[cfg.outage]!] : []),
});
await worker?.stop();
await router.close();
await router.state.close();
await Promise.allSettled(Object.values(direct).map((s) => s.close()));
writeFileSync(cfg.statsFile, JSON.stringify(stats));
process.exit(0);
