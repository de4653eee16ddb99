import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isCloudmuxError } from '../../src/core/errors.js';
import { collect } from '../../src/core/body.js';
import type { BlobStore } from '../../src/core/types.js';
import { ReplicationWorker, type ReplicationWorkerOptions } from '../../src/replication/worker.js';
import { Router, type RouterProvider } from '../../src/router/router.js';
import type { HealthTrackerOptions } from '../../src/router/health-tracker.js';
import type { StateStore } from '../../src/state/types.js';
import type { FaultPlan, FaultyStore } from '../faults/faulty-store.js';
import { FLAT } from '../router/fixture.js';
import { checkHistory, type CheckResult } from './checker.js';
import { pairOps, sha256Hex, valueOf, type HistoryEvent, type HistoryRecorder, type Op } from './history.js';
import { readKey, subSeed, type ClientStats } from './workload.js';

/** The faults of a run. Probabilities are per provider call (clients' aborts: per put). */
export interface FaultSpec {
  /** The call runs, then its answer is lost (Transient). */
  lostResponse?: number;
  /** The call fails with Transient before it runs (a reset connection). */
  reset?: number;
  /** The call runs, its answer is held back for `slowResponseMs` (an abort meanwhile: Aborted). */
  slowResponse?: number;
  slowResponseMs?: [number, number];
  /** Added latency before every call (a stall the caller may abort). */
  latencyMs?: [number, number];
  /** A get body breaks at a random byte. */
  resetBody?: number;
  /** Probability that a client aborts its put after `abortAfterMs`. */
  abortRate?: number;
  abortAfterMs?: [number, number];
  /** One provider (chosen by the seed) is down for this part of the run (fractions of the ops). */
  outage?: { from: number; to: number };
}

/** The small key set the workloads collide on. */
export const KEYS = ['k0', 'k1', 'k2', 'k3'];

/** Everything at once: lost responses, resets, stalls after the write landed, caller aborts, one provider out for a fifth of the run. */
export const ALL_FAULTS: FaultSpec = {
  lostResponse: 0.05, reset: 0.03, slowResponse: 0.05, slowResponseMs: [5, 40], resetBody: 0.02,
  abortRate: 0.05, abortAfterMs: [0, 20], outage: { from: 0.3, to: 0.5 },
};

/** The FaultyStore plan of one router's view of one provider. */
export function faultPlan(spec: FaultSpec, seed: number): FaultPlan {
  const plan: FaultPlan = { seed };
  if (spec.lostResponse) plan.lostResponse = spec.lostResponse;
  if (spec.reset) plan.errorRates = { Transient: spec.reset };
  if (spec.slowResponse) {
    plan.slowResponse = spec.slowResponse;
    plan.slowResponseMs = spec.slowResponseMs ?? [20, 200];
  }
  if (spec.latencyMs) plan.latencyMs = spec.latencyMs;
  if (spec.resetBody) plan.resetBody = spec.resetBody;
  return plan;
}

/** The provider that the seed takes down, if the spec has an outage. */
export function outageProvider(spec: FaultSpec, seed: number, providers: string[]): string | undefined {
  return spec.outage ? providers[subSeed(seed, 'outage') % providers.length] : undefined;
}

/** A `beforeOp` hook that switches the outage on and off by op number. */
export function outageSchedule(spec: FaultSpec, ops: number, stores: FaultyStore[]): ((i: number) => void) | undefined {
  const window = spec.outage;
  if (!window || stores.length === 0) return undefined;
  const from = Math.floor(ops * window.from);
  const to = Math.floor(ops * window.to);
  return (i) => {
    if (i === from) for (const s of stores) s.outage(true);
    if (i === to) for (const s of stores) s.outage(false);
  };
}

/** Health settings of the routers under test: no probes, short windows so a healed provider comes back. */
export const HEALTH: HealthTrackerOptions = { probeIntervalMs: 0, windowMs: 1000, minRequests: 3, recoverAfter: 2 };

/** Worker settings: fast, and patient enough that a dead letter means something is wrong, not that faults were many. */
export const WORKER: Partial<ReplicationWorkerOptions> = { concurrency: 2, backoffBaseMs: 5, backoffMaxMs: 50, pollIntervalMs: 20, deferMs: 20, maxAttempts: 40, leaseMs: 5_000 };

export interface Policy {
  replicas: number;
  writeQuorum: number;
}

/** Routers at locations with copy on read: provider i and router i sit at LOCATIONS[i % 2]. */
export const LOCATIONS = ['aws:us-east-1', 'gcp:europe-west1'];

export interface CopyOnReadRun {
  /** How long a copy lives after each read of it (ms): short, so that copies expire and are evicted during the run. */
  ttlMs: number;
}

export function makeRouter(providers: Record<string, BlobStore>, state: StateStore, policy: Policy, at?: { location: string; copyOnRead: CopyOnReadRun }): Router {
  const list: RouterProvider[] = Object.entries(providers).map(([name, store], i) => ({
    name, store, prices: FLAT, ...(at ? { location: LOCATIONS[i % LOCATIONS.length] } : {}),
  }));
  return new Router({
    providers: list, state, policies: [policy], health: HEALTH, closeResources: false,
    ...(at ? { location: at.location, copyOnRead: { ttl: at.copyOnRead.ttlMs / 1000 } } : {}),
  });
}

/** What the final state check found wrong (besides the history's anomalies). */
export interface StateProblem {
  kind: 'holderless-version' | 'outbox-not-drained' | 'dead-letter' | 'under-replicated' | 'replica-differs' | 'stray-replica' | 'deleted-but-present';
  key?: string;
  message: string;
}

export interface FinalCheck {
  problems: StateProblem[];
  drainMs: number;
  /** The whole heal-and-compare step: drain, final reads, replica comparison. */
  healMs: number;
}

/**
 * After the run: drains the outbox with a fresh worker (no faults), reads every key once through
 * `router` (recorded as final reads: they must succeed), then compares every provider's bytes,
 * read directly, with what the catalog names: each holder has the catalog's SHA-256, the number
 * of holders is the policy's, no other provider keeps a copy, a deleted key is gone everywhere.
 */
export async function healAndCheck(o: {
  router: Router;
  direct: Record<string, BlobStore>;
  recorder: HistoryRecorder;
  keys: string[];
  policy: Policy;
  drainTimeoutMs?: number;
}): Promise<FinalCheck> {
  const started = performance.now();
  const problems: StateProblem[] = [];
  const state = o.router.state;
  // Work that died during the run: a replica owed of a version no provider held any more breaks the
  // contract (the current version always has a holder); the rest (attempts spent on injected
  // faults) is put back and must now drain.
  for (const d of await state.entries({ state: 'dead' })) {
    if (/no provider holds version/.test(d.lastError ?? '')) {
      problems.push({ kind: 'holderless-version', key: d.key, message: `during the run, ${d.key} v${d.version} had no holder left (${d.kind} to ${d.provider} dead-lettered: ${d.lastError})` });
    }
  }
  await state.requeueDead();
  const worker = ReplicationWorker.forRouter(o.router, { ...WORKER, owner: 'healer', concurrency: 4 });
  const t0 = performance.now();
  try {
    await worker.drain({ timeoutMs: o.drainTimeoutMs ?? 20_000 });
  } catch (e) {
    problems.push({ kind: 'outbox-not-drained', message: (e as Error).message });
  }
  const drainMs = performance.now() - t0;
  for (const d of await state.entries({ state: 'dead' })) {
    problems.push({ kind: 'dead-letter', key: d.key, message: `after healing, ${d.kind} of ${d.key} v${d.version} to ${d.provider} dead-lettered after ${d.attempts} attempts: ${d.lastError ?? ''}` });
  }
  for (const key of o.keys) await readKey(o.router, o.recorder, key, true);
  for (const key of o.keys) {
    const found = await state.lookup(key);
    const holders = found.state === 'live' ? new Set(found.holders.map((h) => h.provider)) : new Set<string>();
    if (found.state === 'live' && holders.size < o.policy.replicas) {
      problems.push({ kind: 'under-replicated', key, message: `${key} v${found.object.version}: ${holders.size} of ${o.policy.replicas} replicas (${[...holders].join(', ') || 'none'})` });
    }
    for (const [name, store] of Object.entries(o.direct)) {
      let sha: string | undefined;
      let what = 'nothing';
      try {
        const bytes = await collect((await store.get(key)).body);
        sha = sha256Hex(bytes);
        what = `bytes ${sha.slice(0, 12)} (of put ${valueOf(key, bytes)})`;
      } catch (e) {
        if (!isCloudmuxError(e, 'NotFound')) throw e;
      }
      if (found.state !== 'live') {
        if (sha !== undefined) problems.push({ kind: 'deleted-but-present', key, message: `${key} is ${found.state} in the catalog but ${name} holds ${what}` });
      } else if (holders.has(name)) {
        if (sha !== found.object.sha256) {
          problems.push({ kind: 'replica-differs', key, message: `${key} v${found.object.version}: holder ${name} has ${what}, the catalog says ${found.object.sha256?.slice(0, 12)}` });
        }
      } else if (sha !== undefined) {
        problems.push({ kind: 'stray-replica', key, message: `${key} v${found.object.version}: ${name} is no holder but keeps ${what}${sha === found.object.sha256 ? ', the current version' : ''}` });
      }
    }
  }
  return { problems, drainMs, healMs: performance.now() - started };
}

export interface RunReport {
  name: string;
  seed: number;
  ops: Op[];
  check: CheckResult;
  final: FinalCheck;
  stats: ClientStats[];
  elapsedMs: number;
  /** With copy on read: its counters summed over the routers. */
  copies?: { created: number; hits: number; evicted: number; failed: number };
}

/** Pairs and checks the merged events of every process plus the final reads. */
export function checkRun(events: HistoryEvent[]): { ops: Op[]; check: CheckResult } {
  const ops = pairOps(events);
  return { ops, check: checkHistory(ops) };
}

/**
 * Reads during the run that failed because the catalog's current version had no holder at all
 * (`holders: none`): the key was unreadable although nothing was down. The checker ignores failed
 * reads; this contract (the current version always has a holder) does not.
 */
export function holderlessReads(ops: Op[]): StateProblem[] {
  return ops
    .filter((o) => o.f === 'get' && o.outcome === 'fail' && !o.final && /holders: none/.test(o.error ?? ''))
    .map((o) => ({ kind: 'holderless-version' as const, key: o.key, message: `during the run, ${o.id} get ${o.key} failed: ${o.error?.slice(0, 160)}` }));
}

/**
 * With `HISTORY_DUMP=<dir>`, writes a run's operations (one JSON line each, in invocation order)
 * to `<dir>/<case>-<seed>.jsonl` when it found violations, for a closer look at a key's history.
 */
export function dumpIfViolated(r: RunReport): string | undefined {
  const dir = process.env.HISTORY_DUMP;
  if (!dir || violationKinds(r).length === 0) return undefined;
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${r.name.replace(/[^a-z0-9=]+/gi, '-')}-${r.seed >>> 0}.jsonl`);
  writeFileSync(file, r.ops.map((op) => JSON.stringify({ ...op, completeT: Number.isFinite(op.completeT) ? op.completeT : null })).join('\n') + '\n');
  return file;
}

/** A readable summary: counts, throughput, and the first violations. */
export function formatReport(r: RunReport, replay: string): string {
  const outcomes: Record<string, number> = {};
  for (const s of r.stats) for (const [k, v] of Object.entries(s.byOutcome)) outcomes[k] = (outcomes[k] ?? 0) + v;
  const total = r.stats.reduce((n, s) => n + s.ops, 0);
  const busy = Math.max(1, ...r.stats.map((s) => s.elapsedMs));
  const lines = [
    `${r.name}: ${total} ops in ${(busy / 1000).toFixed(1)} s (${(total / (busy / 1000)).toFixed(0)} ops/s; ${(r.elapsedMs / 1000).toFixed(1)} s with start-up); `
      + Object.entries(outcomes).sort().map(([k, v]) => `${k}=${v}`).join(' ')
      + `; heal ${(r.final.healMs / 1000).toFixed(1)} s (drain ${(r.final.drainMs / 1000).toFixed(1)} s); search ${Object.values(r.check.keys).reduce((n, k) => n + k.configs, 0)} configs`
      + (r.copies ? `; copy on read: ${Object.entries(r.copies).map(([k, v]) => `${k}=${v}`).join(' ')}, reads from copies=${r.ops.filter((o) => o.cachedOn).length}` : ''),
  ];
  const violations = [...r.check.anomalies.map((a) => `${a.kind}: ${a.message}`), ...r.final.problems.map((p) => `${p.kind}: ${p.message}`)];
  if (violations.length > 0) {
    const dumped = dumpIfViolated(r);
    lines.push(`${violations.length} violations ${replay}${dumped ? `; history in ${dumped}` : ''}`);
    const shown = Number(process.env.HISTORY_SHOW ?? 12);
    lines.push(...violations.slice(0, shown).map((v) => `  - ${v}`));
    if (violations.length > shown) lines.push(`  … ${violations.length - shown} more (HISTORY_SHOW=n shows more)`);
  }
  return lines.join('\n');
}

/** Every violation kind found, for assertions. */
export function violationKinds(r: RunReport): string[] {
  return [...new Set([...r.check.anomalies.map((a) => a.kind), ...r.final.problems.map((p) => p.kind)])].sort();
}
