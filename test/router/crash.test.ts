import { afterEach, describe, expect, it } from 'vitest';
import { resolve } from 'node:path';
import { spawnManaged, tempDir, type ManagedProcess } from '../harness/emulator.js';
import { FsStore } from '../../providers/fs/store.js';
import { Router } from '../../src/router/router.js';
import { ReplicationWorker } from '../../src/replication/worker.js';
import { SqliteStateStore } from '../../src/state/sqlite.js';
import { getBuffer } from '../../src/core/helpers.js';
import { pseudoRandomBytes } from '../../src/testing/data.js';
import { sha256 } from './workload.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function waitForLine(proc: ManagedProcess, pattern: RegExp, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(proc.output())) {
    if (proc.child.exitCode !== null) throw new Error(`child exited ${proc.child.exitCode}:\n${proc.output()}`);
    if (Date.now() > deadline) throw new Error(`child never printed ${pattern}:\n${proc.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('crash safety', () => {
  it('kill -9 between the put acknowledgement and replication: on restart the worker finishes every replica', async () => {
    const dir = await tempDir('router-crash');
    cleanups.push(() => dir.remove());
    const [db, dirA, dirB] = [`${dir.path}/state.db`, `${dir.path}/a`, `${dir.path}/b`];
    const count = 20;
    const child = spawnManaged(process.execPath, ['--import', 'tsx', resolve('test/router/crash-child.ts'), db, dirA, dirB, String(count)]);
    cleanups.push(() => child.kill());
    await waitForLine(child, new RegExp(`ACKED ${count - 1}\\n`));
    await waitForLine(child, /COPYING/);
    await child.kill();
    expect(child.child.signalCode).toBe('SIGKILL');

    // Restart: a new process's router and worker over the same state and directories.
    const a = new FsStore({ root: dirA });
    const b = new FsStore({ root: dirB });
    const state = new SqliteStateStore({ path: db, durability: 'full' });
    const router = new Router({ providers: [{ name: 'a', store: a }, { name: 'b', store: b }], state, policies: [{ replicas: 2, writeQuorum: 1 }], health: { probeIntervalMs: 0 } });
    cleanups.push(() => router.close());
    const before = await state.backlog();
    expect(before.count).toBe(count); // every replica was still owed, some of them leased by the dead worker
    const leased = (await state.entries({ state: 'pending' })).filter((e) => e.leaseOwner !== undefined).length;
    expect(leased).toBeGreaterThan(0);
    const worker = ReplicationWorker.forRouter(router, { concurrency: 4, pollIntervalMs: 50 });
    const after = await worker.drain({ timeoutMs: 30_000 });
    expect(after).toMatchObject({ count: 0, dead: 0 });
    for (let i = 0; i < count; i++) {
      const expected = sha256(pseudoRandomBytes(10_000 + i, `crash-${i}`));
      expect(sha256(await getBuffer(a, `crash/k${i}`))).toBe(expected);
      expect(sha256(await getBuffer(b, `crash/k${i}`))).toBe(expected);
    }
  }, 120_000);
});
