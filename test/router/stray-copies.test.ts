import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/store.js';
import { getBuffer } from '../../src/core/helpers.js';
import { isCloudmuxError } from '../../src/core/errors.js';
import type { BlobStore } from '../../src/core/types.js';
import { ReplicationWorker } from '../../src/replication/worker.js';
import { Router } from '../../src/router/router.js';
import { PostgresStateStore } from '../../src/state/postgres.js';
import { SqliteStateStore } from '../../src/state/sqlite.js';
import type { StateStore } from '../../src/state/types.js';
import { FaultyStore } from '../faults/faulty-store.js';
import { tempDir } from '../harness/emulator.js';
import { PG_URL, PgSchemas, requirePostgres } from '../state/postgres-fixture.js';
import { FLAT } from './fixture.js';

/**
 * Copies that a write left on a provider without the catalog knowing (its answer was lost) must be
 * owed a delete, or they outlive the key's later versions: the `stray-replica` that the history
 * case "postgres: 2 routers, N=1 W=1 over 2 providers, all faults" met now and then. Each case
 * forces one interleaving step by step, on both state stores; the worker never deletes a holder's copy.
 */

const schemas = new PgSchemas();
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(() => schemas.dropAll());

async function has(store: BlobStore, key: string): Promise<string | undefined> {
  try {
    return (await getBuffer(store, key)).toString();
  } catch (e) {
    if (isCloudmuxError(e, 'NotFound')) return undefined;
    throw e;
  }
}

interface Rig {
  router: Router;
  worker: ReplicationWorker;
  memory: { a: MemoryStore; b: MemoryStore };
  faulty: { a: FaultyStore; b: FaultyStore };
}

/** N=1 W=1 over memory providers a and b (a first: equal prices), each behind a FaultyStore. */
async function rig(state: StateStore): Promise<Rig> {
  const memory = { a: new MemoryStore({ name: 'a' }), b: new MemoryStore({ name: 'b' }) };
  const faulty = { a: new FaultyStore(memory.a), b: new FaultyStore(memory.b) };
  const router = new Router({
    providers: Object.entries(faulty).map(([name, store]) => ({ name, store, prices: FLAT })),
    state, policies: [{ replicas: 1, writeQuorum: 1 }],
    health: { probeIntervalMs: 0, minRequests: 3, recoverAfter: 2, windowMs: 1000 },
  });
  const worker = ReplicationWorker.forRouter(router, { concurrency: 2, backoffBaseMs: 1, backoffMaxMs: 5, pollIntervalMs: 5, deferMs: 5 });
  cleanups.push(async () => {
    await worker.stop();
    await router.close();
  });
  return { router, worker, memory, faulty };
}

const STATES: [string, () => Promise<StateStore>][] = [
  ['sqlite', async () => {
    const dir = await tempDir('superseded');
    cleanups.push(() => dir.remove());
    return new SqliteStateStore({ path: `${dir.path}/state.db`, durability: 'normal' });
  }],
  ['postgres', async () => {
    await requirePostgres();
    return PostgresStateStore.open({ url: PG_URL, schema: schemas.name(), maxConnections: 2 });
  }],
];

/** The store's next put fails with Transient before it runs (FaultyStore counts calls across plans). */
function failNextPut(store: FaultyStore): void {
  store.setPlan({ ops: ['put'], failCalls: { [store.log.length + 1]: 'Transient' } });
}

/** Where a key's bytes are: provider name to value (absent where nothing is). */
async function where(r: Rig, key: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [name, store] of Object.entries(r.memory)) {
    const v = await has(store, key);
    if (v !== undefined) out[name] = v;
  }
  return out;
}

async function holders(router: Router, key: string): Promise<string[] | undefined> {
  const found = await router.state.lookup(key);
  return found.state === 'live' ? found.holders.map((h) => h.provider) : undefined;
}

/**
 * v1 on b with a replica owed to a, whose copy landed on a but whose answer was lost: the target a
 * refused the put's write before it ran, so the spare b took v1; then the worker's copy to a landed unseen.
 */
async function v1OnBWithUnseenCopyOnA(r: Rig): Promise<void> {
  failNextPut(r.faulty.a);
  await r.router.put('k', Buffer.from('v1'));
  r.faulty.a.heal();
  expect(await holders(r.router, 'k')).toEqual(['b']);
  expect((await r.router.state.entries({ key: 'k' })).map((e) => `${e.kind}:${e.provider}`)).toEqual(['replicate:a']);
  r.faulty.a.setPlan({ ops: ['put'], lostResponse: 1 });
  await r.worker.runOnce();
  r.faulty.a.heal();
  expect(await where(r, 'k')).toEqual({ a: 'v1', b: 'v1' });
  expect(await holders(r.router, 'k')).toEqual(['b']);
}

/** A put while a is down: it goes to b alone. */
async function putWhileADown(r: Rig, value: string): Promise<void> {
  r.router.health.setBreaker('a', 'open');
  await r.router.put('k', Buffer.from(value));
  r.router.health.setBreaker('a', 'closed');
}

async function healAndDrain(r: Rig): Promise<void> {
  await r.router.state.requeueDead();
  await r.worker.drain({ timeoutMs: 5_000 });
}

describe('copies a write left unseen are owed a delete', () => {
  for (const [name, state] of STATES) {
    it(`${name}: a replica owed of an older version, superseded after its copy landed unseen (the later put owes a delete)`, async () => {
      const r = await rig(await state());
      await v1OnBWithUnseenCopyOnA(r);
      // Before: this commit dropped the replica owed of v1, and a, never named by the catalog, was owed nothing.
      await putWhileADown(r, 'v2');
      await healAndDrain(r);
      expect(await holders(r.router, 'k')).toEqual(['b']);
      expect(await where(r, 'k'), 'a is no holder and keeps no copy').toEqual({ b: 'v2' });
      expect((await getBuffer(r.router, 'k')).toString()).toBe('v2');
    });

    it(`${name}: the same replica dead-lettered, so the later put does not see it (the worker owes the delete when it finds it obsolete)`, async () => {
      const r = await rig(await state());
      await v1OnBWithUnseenCopyOnA(r);
      const [entry] = await r.router.state.entries({ key: 'k' });
      await r.router.state.deadLetter(entry!.id, 'attempts exhausted (test)');
      await putWhileADown(r, 'v2');
      await healAndDrain(r);
      expect(await where(r, 'k')).toEqual({ b: 'v2' });
    });

    it(`${name}: a key deleted before the worker deleted such a copy (the delete keeps owing it)`, async () => {
      const r = await rig(await state());
      await v1OnBWithUnseenCopyOnA(r);
      await putWhileADown(r, 'v2');
      expect((await r.router.state.entries({ key: 'k' })).map((e) => `${e.kind}:${e.provider}`)).toEqual(['delete:a']);
      // Before: the delete's commit dropped every pending entry and owed deletes only where the catalog recorded a copy (b).
      await r.router.delete('k');
      await healAndDrain(r);
      expect(await where(r, 'k')).toEqual({});
    });

    it(`${name}: a failed put whose write landed unseen on a provider that holds no version (reconciled after the failure)`, async () => {
      const r = await rig(await state());
      await r.router.put('k', Buffer.from('v1'));
      expect(await holders(r.router, 'k')).toEqual(['a']);
      // v2: a refuses before running; b takes the bytes but both its answer and the look that follows are lost.
      failNextPut(r.faulty.a);
      r.faulty.b.setPlan({ ops: ['put', 'head'], lostResponse: 1 });
      await expect(r.router.put('k', Buffer.from('v2'))).rejects.toThrow();
      r.faulty.a.heal();
      r.faulty.b.heal();
      expect(await where(r, 'k')).toEqual({ a: 'v1', b: 'v2' });
      await healAndDrain(r);
      // The put failed: the key is v1, on a; b keeps nothing of the put.
      expect(await holders(r.router, 'k')).toEqual(['a']);
      expect(await where(r, 'k')).toEqual({ a: 'v1' });
      expect((await getBuffer(r.router, 'k')).toString()).toBe('v1');
    });
  }
});
