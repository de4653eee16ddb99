import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { BlobStore } from '../../src/core/types.js';
import { openStore } from '../../src/registry.js';
import { PostgresStateStore } from '../../src/state/postgres.js';
import { SqliteStateStore } from '../../src/state/sqlite.js';
import type { StateStore } from '../../src/state/types.js';
import { spawnManaged, type ManagedProcess } from '../harness/emulator.js';
import { checkRun, healAndCheck, holderlessReads, makeRouter, outageProvider, type FaultSpec, type Policy, type RunReport } from './cluster.js';
import { HistoryRecorder, clockBase, type HistoryEvent } from './history.js';
import { subSeed, type ClientStats, type OpMix } from './workload.js';

export type StateSpec = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string; schema: string };

/** What one router process is told to do (written as JSON, its path passed as the only argument). */
export interface ProcessConfig {
  proc: string;
  seed: number;
  state: StateSpec;
  /** Provider name → store URL (file://, s3://, az://), shared by every process. */
  providers: Record<string, string>;
  /** The provider every process takes down during `faults.outage`. */
  outage?: string;
  policy: Policy;
  keys: string[];
  ops: number;
  concurrency: number;
  faults: FaultSpec;
  mix?: OpMix;
  workers: boolean;
  /** Where the process appends its events, one JSON line each. */
  historyFile: string;
  /** Where it writes its ClientStats when done. */
  statsFile: string;
}

export async function openState(spec: StateSpec): Promise<StateStore> {
  return spec.kind === 'sqlite'
    ? new SqliteStateStore({ path: spec.path, durability: 'normal' })
    : PostgresStateStore.open({ url: spec.url, schema: spec.schema, maxConnections: 4 });
}

export async function openProviders(urls: Record<string, string>): Promise<Record<string, BlobStore>> {
  const out: Record<string, BlobStore> = {};
  for (const [name, url] of Object.entries(urls)) out[name] = await openStore(url);
  return out;
}

export interface ProcessesRun {
  name: string;
  seed: number;
  /** Router processes. */
  processes: number;
  state: StateSpec;
  providers: Record<string, string>;
  policy: Policy;
  keys: string[];
  opsPerProcess: number;
  concurrency: number;
  faults: FaultSpec;
  mix?: OpMix;
  workers?: boolean;
  /** A directory for configs and histories. */
  dir: string;
  /** Kill a process that has not finished after this long (default 240 s). */
  timeoutMs?: number;
}

const CHILD = resolve('test/history/router-process.ts');

/**
 * Router processes (real OS processes, `node --import tsx`) sharing one StateStore and the same
 * providers, each running its clients and a replication worker and writing its history; then, in
 * this process, the histories merged, the outbox drained, the keys read and every replica
 * compared with the catalog.
 */
export async function runProcesses(o: ProcessesRun): Promise<RunReport> {
  await mkdir(o.dir, { recursive: true });
  // Create the schema once, before the processes race to.
  await (await openState(o.state)).close();
  const base = clockBase();
  const outage = outageProvider(o.faults, o.seed, Object.keys(o.providers));
  const configs: ProcessConfig[] = Array.from({ length: o.processes }, (_, i) => ({
    proc: `p${i}`, seed: subSeed(o.seed, `p${i}`), state: o.state, providers: o.providers, policy: o.policy, keys: o.keys,
    ops: o.opsPerProcess, concurrency: o.concurrency, faults: o.faults, workers: o.workers ?? true,
    historyFile: `${o.dir}/history-p${i}.jsonl`, statsFile: `${o.dir}/stats-p${i}.json`, ...(o.mix ? { mix: o.mix } : {}), ...(outage ? { outage } : {}),
  }));
  const started = performance.now();
  const children: ManagedProcess[] = [];
  try {
    for (const c of configs) {
      const file = `${o.dir}/config-${c.proc}.json`;
      await writeFile(file, JSON.stringify(c));
      children.push(spawnManaged(process.execPath, ['--import', 'tsx', CHILD, file], { ...process.env, HISTORY_T0: String(base) }));
    }
    await Promise.all(children.map((child, i) => waitForExit(child, configs[i]!.proc, o.timeoutMs ?? 240_000)));
  } finally {
    await Promise.all(children.map((c) => c.kill()));
  }
  const elapsedMs = performance.now() - started;
  const events: HistoryEvent[] = [];
  const stats: ClientStats[] = [];
  for (const c of configs) {
    const text = await readFile(c.historyFile, 'utf8').catch(() => '');
    for (const line of text.split('\n')) if (line) events.push(JSON.parse(line) as HistoryEvent);
    stats.push(JSON.parse(await readFile(c.statsFile, 'utf8')) as ClientStats);
  }
  const t0 = performance.now();
  const direct = await openProviders(o.providers);
  const healer = makeRouter(direct, await openState(o.state), o.policy);
  try {
    const final = await healAndCheck({ router: healer, direct, recorder: new HistoryRecorder('final', base, (e) => events.push(e)), keys: o.keys, policy: o.policy });
    const { ops, check } = checkRun(events);
    final.problems.push(...holderlessReads(ops));
    if (process.env.HISTORY_TIMING) console.log(`${o.name}: processes ${(elapsedMs / 1000).toFixed(1)} s, heal+check ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return { name: o.name, seed: o.seed, ops, check, final, stats, elapsedMs };
  } finally {
    await healer.close();
    await healer.state.close();
    await Promise.allSettled(Object.values(direct).map((s) => s.close()));
  }
}

async function waitForExit(child: ManagedProcess, proc: string, timeoutMs: number): Promise<void> {
  const code = await new Promise<number | null>((done) => {
    if (child.child.exitCode !== null) return done(child.child.exitCode);
    const t = setTimeout(() => done(null), timeoutMs);
    child.child.once('exit', (c) => {
      clearTimeout(t);
      done(c);
    });
  });
  if (code !== 0) throw new Error(`router process ${proc} ${code === null ? `did not finish in ${timeoutMs} ms` : `exited ${code}`}:\n${child.output()}`);
}
