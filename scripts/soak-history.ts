/**
 * Long history runs of the router (opt-in; CI runs the short ones in test/history): thousands of
 * operations per configuration, several routers on one state, faults on every provider call, then
 * the linearizability check and the heal-and-compare check of test/history. Exits 1 on any
 * violation, printing the seed that replays it.
 *
 *   npm run soak:history -- [--seed 123] [--ops 3000] [--rounds 1] [--only in-process|processes] [--case <substring>]
 *
 * `--ops` is per router (process); `--rounds` repeats the matrix with seeds seed, seed+1, ….
 * PostgreSQL: CLOUDMUX_TEST_PG_URL or postgres://postgres@127.0.0.1:5432/test (a fresh schema per
 * case, dropped after). The emulator case starts its own s3rver and Azurite unless S3_ENDPOINT and
 * AZURE_STORAGE_CONNECTION_STRING point at running ones.
 */
import { parseArgs } from 'node:util';
import { randomInt } from 'node:crypto';
import { startAzure } from '../test/harness/azure.js';
import { tempDir, type Emulator } from '../test/harness/emulator.js';
import { startS3 } from '../test/harness/s3.js';
import { ALL_FAULTS, KEYS, formatReport, violationKinds, type FaultSpec, type Policy, type RunReport } from '../test/history/cluster.js';
import { runInProcess } from '../test/history/in-process.js';
import { runProcesses, type StateSpec } from '../test/history/processes.js';
import { PostgresStateStore } from '../src/state/postgres.js';
import { SqliteStateStore } from '../src/state/sqlite.js';
import { PG_URL, PgSchemas, requirePostgres } from '../test/state/postgres-fixture.js';
import { subSeed } from '../test/history/workload.js';

const { values: args } = parseArgs({
  options: {
    seed: { type: 'string' },
    ops: { type: 'string', default: '3000' },
    rounds: { type: 'string', default: '1' },
    only: { type: 'string' },
    case: { type: 'string' },
  },
});
const runSeed = args.seed ? Number(args.seed) : process.env.HISTORY_SEED ? Number(process.env.HISTORY_SEED) : randomInt(1, 2 ** 31 - 1);
const ops = Number(args.ops);
const rounds = Number(args.rounds);

interface SoakCase {
  name: string;
  kind: 'in-process' | 'processes';
  state: 'sqlite' | 'postgres';
  writers: number;
  providers: 'memory' | 'fs' | 'emulators';
  policy: Policy;
  faults: FaultSpec;
}

const LONG_FAULTS: FaultSpec = { ...ALL_FAULTS, outage: { from: 0.3, to: 0.4 } };
const CASES: SoakCase[] = [
  { name: 'in-process sqlite: 3 routers, N=2 W=1 over 3 memory stores', kind: 'in-process', state: 'sqlite', writers: 3, providers: 'memory', policy: { replicas: 2, writeQuorum: 1 }, faults: LONG_FAULTS },
  { name: 'in-process sqlite: 2 routers, N=2 W=2 over 2 memory stores', kind: 'in-process', state: 'sqlite', writers: 2, providers: 'memory', policy: { replicas: 2, writeQuorum: 2 }, faults: LONG_FAULTS },
  { name: 'in-process postgres: 3 routers, N=3 W=2 over 3 memory stores', kind: 'in-process', state: 'postgres', writers: 3, providers: 'memory', policy: { replicas: 3, writeQuorum: 2 }, faults: LONG_FAULTS },
  { name: 'in-process postgres: 3 routers, N=1 W=1 over 2 memory stores', kind: 'in-process', state: 'postgres', writers: 3, providers: 'memory', policy: { replicas: 1, writeQuorum: 1 }, faults: LONG_FAULTS },
  { name: 'processes sqlite: 3 processes, N=2 W=2 over 2 fs stores', kind: 'processes', state: 'sqlite', writers: 3, providers: 'fs', policy: { replicas: 2, writeQuorum: 2 }, faults: LONG_FAULTS },
  { name: 'processes postgres: 3 processes, N=3 W=2 over fs + s3rver + azurite', kind: 'processes', state: 'postgres', writers: 3, providers: 'emulators', policy: { replicas: 3, writeQuorum: 2 }, faults: LONG_FAULTS },
];

const selected = CASES.filter((c) => (!args.only || c.kind === args.only) && (!args.case || c.name.includes(args.case)));
if (selected.some((c) => c.state === 'postgres')) await requirePostgres();
const emulators: Emulator[] = [];
if (selected.some((c) => c.providers === 'emulators')) {
  for (const start of [startS3, startAzure]) {
    const emu = await start();
    if (emu) {
      emulators.push(emu);
      Object.assign(process.env, emu.env);
    }
  }
}
const schemas = new PgSchemas();
console.log(`soak-history: seed ${runSeed} (replay: npm run soak:history -- --seed ${runSeed} --ops ${ops}${args.only ? ` --only ${args.only}` : ''}), ${selected.length} cases × ${rounds} rounds, ${ops} ops per router`);

let failed = 0;
try {
  for (let round = 0; round < rounds; round++) {
    for (const c of selected) {
      const seed = subSeed(runSeed + round, c.name);
      const report = await runCase(c, seed);
      const kinds = violationKinds(report);
      console.log(formatReport(report, `[soak seed ${runSeed + round}, case "${c.name}"; replay: npm run soak:history -- --seed ${runSeed + round} --ops ${ops} --case "${c.name}"]`));
      if (kinds.length > 0) failed++;
    }
  }
} finally {
  await schemas.dropAll();
  await Promise.allSettled(emulators.map((e) => e.stop()));
}
console.log(failed === 0 ? 'soak-history: no violations' : `soak-history: ${failed} runs with violations`);
process.exit(failed === 0 ? 0 : 1);

async function runCase(c: SoakCase, seed: number): Promise<RunReport> {
  const dir = await tempDir('soak-history');
  try {
    const schema = schemas.name();
    if (c.kind === 'in-process') {
      return await runInProcess({
        name: c.name, seed, routers: c.writers, providers: ['a', 'b', 'c'].slice(0, Math.max(2, c.policy.replicas)), policy: c.policy, keys: KEYS,
        opsPerRouter: ops, concurrency: 3, faults: c.faults,
        openState: async () => (c.state === 'sqlite'
          ? new SqliteStateStore({ path: `${dir.path}/state.db`, durability: 'normal' })
          : PostgresStateStore.open({ url: PG_URL, schema, maxConnections: 4 })),
      });
    }
    const state: StateSpec = c.state === 'sqlite' ? { kind: 'sqlite', path: `${dir.path}/state.db` } : { kind: 'postgres', url: PG_URL, schema };
    const run = `soak-${seed >>> 0}-${Date.now().toString(36)}`;
    const providers: Record<string, string> = c.providers === 'emulators'
      ? {
        fs: `file://${dir.path}/fs?fsync=false`,
        s3: `s3://${process.env.S3_BUCKET}/${run}?endpoint=${encodeURIComponent(process.env.S3_ENDPOINT!)}&forcePathStyle=true&region=${process.env.AWS_REGION ?? 'us-east-1'}`,
        azure: `az://devstoreaccount1/${process.env.AZURE_CONTAINER}/${run}`,
      }
      : { a: `file://${dir.path}/a?fsync=false`, b: `file://${dir.path}/b?fsync=false` };
    return await runProcesses({
      name: c.name, seed, processes: c.writers, state, providers, policy: c.policy, keys: KEYS, opsPerProcess: ops, concurrency: 3, faults: c.faults,
      dir: `${dir.path}/run`, timeoutMs: 3_600_000,
    });
  } finally {
    await dir.remove();
  }
}
