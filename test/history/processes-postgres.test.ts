import { afterAll, describe, it } from 'vitest';
import { tempDir } from '../harness/emulator.js';
import { PG_URL, PgSchemas, requirePostgres } from '../state/postgres-fixture.js';
import { ALL_FAULTS, KEYS } from './cluster.js';
import { runProcesses } from './processes.js';
import { historySeed } from './seed.js';
import { expectNoViolations } from './assert.js';

/**
 * Two router processes (real OS processes) on one PostgreSQL schema, over a directory, s3rver
 * and Azurite shared by both, each process injecting its own faults between itself and each
 * provider. The history must be linearizable per key; after healing and draining every key reads
 * back and every replica matches the catalog. See checker.ts for the model.
 */
const schemas = new PgSchemas();
afterAll(() => schemas.dropAll());
const emulators = Boolean(process.env.S3_ENDPOINT && process.env.AZURE_STORAGE_CONNECTION_STRING);

describe.skipIf(!emulators)('history: router processes on one PostgreSQL, over fs + s3rver + Azurite (needs CLOUDMUX_EMULATORS with s3 and azure)', () => {
  const name = 'postgres: 2 processes, N=3 W=2 over fs + s3rver + azurite, all faults';
  it(name, async () => {
    await requirePostgres();
    const seed = historySeed(name);
    const dir = await tempDir('history-pg');
    const run = `history-${seed >>> 0}-${Date.now().toString(36)}`;
    try {
      const report = await runProcesses({
        name, seed, processes: 2, policy: { replicas: 3, writeQuorum: 2 }, keys: KEYS, opsPerProcess: 50, concurrency: 3, faults: ALL_FAULTS,
        state: { kind: 'postgres', url: PG_URL, schema: schemas.name() },
        providers: {
          fs: `file://${dir.path}/fs?fsync=false`,
          s3: `s3://${process.env.S3_BUCKET}/${run}?endpoint=${encodeURIComponent(process.env.S3_ENDPOINT!)}&forcePathStyle=true&region=${process.env.AWS_REGION ?? 'us-east-1'}`,
          azure: `az://devstoreaccount1/${process.env.AZURE_CONTAINER}/${run}`,
        },
        dir: `${dir.path}/run`,
      });
      expectNoViolations(report, name);
    } finally {
      await dir.remove();
    }
  }, 280_000);
});
