import { describe, it } from 'vitest';
import { tempDir } from '../harness/emulator.js';
import { ALL_FAULTS, KEYS } from './cluster.js';
import { runProcesses } from './processes.js';
import { historySeed } from './seed.js';
import { expectNoViolations } from './assert.js';

/**
 * Three router processes (real OS processes) on one SQLite file over two directories shared by
 * all three, each process injecting its own faults between itself and each provider. The
 * history must be linearizable per key; after healing and draining every key reads back and
 * every replica matches the catalog. See checker.ts for the model.
 */
describe('history: router processes on one SQLite file, over two fs stores', () => {
  const name = 'sqlite: 3 processes, N=2 W=2 over two fs stores, all faults';
  it(name, async () => {
    const seed = historySeed(name);
    const dir = await tempDir('history-sqlite');
    try {
      const report = await runProcesses({
        name, seed, processes: 3, policy: { replicas: 2, writeQuorum: 2 }, keys: KEYS, opsPerProcess: 80, concurrency: 3, faults: ALL_FAULTS,
        state: { kind: 'sqlite', path: `${dir.path}/state.db` },
        providers: { a: `file://${dir.path}/a?fsync=false`, b: `file://${dir.path}/b?fsync=false` },
        dir: `${dir.path}/run`,
      });
      expectNoViolations(report, name);
    } finally {
      await dir.remove();
    }
  }, 280_000);
});
