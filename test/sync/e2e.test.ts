import { randomBytes } from 'node:crypto';
import { renameSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createAzureStore } from '../../providers/azure/index.js';
import { S3Store } from '../../providers/s3/index.js';
import type { BlobStore, ListItem, ListOptions } from '../../src/core/index.js';
import { ForwardingStore } from '../../src/layers/forwarding-store.js';
import { EncryptedStore, LocalKeyring, generateKey } from '../../src/layers/encryption/index.js';
import { Router } from '../../src/router/router.js';
import { SqliteStateStore } from '../../src/state/sqlite.js';
import { SyncEngine, type RoundReport, type SyncEngineOptions } from '../../src/sync/sync-engine.js';
import type { ActionOutcome } from '../../src/sync/executor.js';
import { emulatorOptions } from '../harness/s3.js';
import { FLAT, routerFixture, type Fixture } from '../router/fixture.js';
import { cleanupDirs, localTree, readFile, remoteTree, removeFile, tempDir, writeFile } from './helpers.js';

const engines: SyncEngine[] = [];
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const e of engines.splice(0)) e.close();
  for (const c of closers.splice(0)) await c();
  cleanupDirs();
});

function device(remote: BlobStore, name: string, extra: Partial<SyncEngineOptions> = {}): SyncEngine & { dir: string } {
  const dir = tempDir(`sync-e2e-${name}`);
  const e = SyncEngine.open({ local: dir, remote, device: name, pair: 'e2e', fsync: false, ...extra });
  engines.push(e);
  return Object.assign(e, { dir });
}

const azureCs = process.env.AZURE_STORAGE_CONNECTION_STRING;
const s3Endpoint = process.env.S3_ENDPOINT;
const unique = (): string => `sync-e2e-${randomBytes(4).toString('hex')}`;

function azure(prefix = unique()): BlobStore {
  return createAzureStore({ connectionString: azureCs!, container: process.env.AZURE_CONTAINER ?? 'cloudmux-test', prefix });
}

/** A router over s3rver and Azurite (s3rver has no conditional writes; the router's catalog gives them). */
function emulatorRouter(): Router {
  const dir = tempDir('sync-e2e-router');
  const prefix = unique();
  const router = new Router({
    providers: [
      { name: 's3', store: new S3Store(emulatorOptions({ prefix: `${prefix}/` })), prices: FLAT },
      { name: 'az', store: azure(prefix), prices: FLAT },
    ],
    state: new SqliteStateStore({ path: join(dir, 'router.db'), durability: 'normal' }),
    policies: [{ replicas: 2, writeQuorum: 2 }],
    health: { probeIntervalMs: 0 },
  });
  closers.push(() => router.close());
  return router;
}

/** Counts listings of the store it wraps (the router lists from its catalog, not its providers). */
class ListCounting extends ForwardingStore {
  protected readonly layerName = 'ListCounting';
  lists = 0;
  override list(opts?: ListOptions): AsyncIterable<ListItem> {
    this.lists++;
    return super.list(opts);
  }
}

function encrypted(inner: BlobStore): BlobStore {
  const k = generateKey('sync');
  return new EncryptedStore(inner, { keyring: new LocalKeyring({ [k.id]: k.key }), keyId: k.id });
}

/**
 * Rounds until one leaves nothing for the next, as `--watch` does: a deferred or raced path, or a
 * round stopped offline (under full load an emulator answers a provider head with an error, and
 * the router's bare providers here have no retry layer: "photos/p1.jpg is not in the catalog and
 * 1 provider(s) could not be asked", seen twice in 8 loaded runs), is redone next round. Prints
 * why. Returns the summed counts; collects the outcomes into `into`.
 */
async function settle(e: SyncEngine, into: ActionOutcome[] = []): Promise<RoundReport['counts']> {
  const sum = { done: 0, deferred: 0, raced: 0, failed: 0 };
  for (let i = 0; i < 3; i++) {
    const r = await e.round();
    into.push(...r.outcomes);
    for (const k of Object.keys(sum) as (keyof typeof sum)[]) sum[k] += r.counts[k];
    const again = r.outcomes.filter((o) => o.result === 'raced' || o.result === 'deferred');
    if (!r.online) console.log(`${e.device}: offline round, again: ${r.offlineReason}`);
    else if (again.length === 0) break;
    console.log(`${e.device}: again next round: ${JSON.stringify(again.map((o) => [o.action.path, o.result, o.detail]))}`);
  }
  return { ...sum, raced: 0, deferred: 0 };
}

/**
 * The everyday story on a real remote: two devices; creates (nested, binary, empty), edits,
 * deletes, a rename and a concurrent edit; after each exchange both devices and the remote agree.
 */
async function story(remote: BlobStore): Promise<void> {
  const a = device(remote, 'a');
  const b = device(remote, 'b');
  writeFile(a.dir, 'docs/readme.md', '# hello');
  writeFile(a.dir, 'docs/deep/x.bin', randomBytes(300_000));
  writeFile(a.dir, 'empty', '');
  writeFile(a.dir, 'photos/p1.jpg', randomBytes(5000));
  expect(await settle(a)).toMatchObject({ done: 4, failed: 0 });
  expect(await settle(b)).toMatchObject({ done: 4, failed: 0 });
  expect(localTree(b.dir)).toEqual(localTree(a.dir));

  writeFile(b.dir, 'docs/readme.md', '# hello from b');
  removeFile(b.dir, 'empty');
  renameSync(join(b.dir, 'photos', 'p1.jpg'), join(b.dir, 'photos', 'renamed.jpg'));
  writeFile(a.dir, 'docs/deep/x.bin', randomBytes(1000));
  const rb = await b.round();
  expect(rb.planned.map((x) => x.kind).sort()).toEqual(['delete-remote', 'rename-remote', 'upload']);
  expect(rb.counts.failed).toBe(0);
  await settle(b);
  await settle(a);
  await settle(b);
  expect(localTree(a.dir)).toEqual(localTree(b.dir));
  expect(readFile(a.dir, 'docs/readme.md')).toBe('# hello from b');

  writeFile(a.dir, 'docs/readme.md', 'a wins the race');
  writeFile(b.dir, 'docs/readme.md', 'b comes second');
  await settle(a);
  const outcomes: ActionOutcome[] = [];
  await settle(b, outcomes);
  expect(outcomes).toContainEqual(expect.objectContaining({ result: 'done', action: expect.objectContaining({ kind: 'keep-both' }) }));
  await settle(a);
  expect(localTree(a.dir)).toEqual(localTree(b.dir));
  expect(await remoteTree(remote)).toEqual(localTree(a.dir));
  expect([...localTree(a.dir).keys()].filter((p) => p.includes('.conflict-b-'))).toHaveLength(1);
  // Quiet: nothing planned, nothing read.
  const quiet = await a.round();
  expect(quiet.planned).toEqual([]);
  expect(quiet.hashed).toBe(0);
}

describe('sync end to end', () => {
  it.skipIf(!azureCs)('over Azurite', async () => {
    await story(azure());
  }, 120_000);

  it.skipIf(!azureCs)('over an EncryptedStore on Azurite: the remote holds ciphertext; conflicts and renames work on plaintext digests', async () => {
    const inner = azure();
    await story(encrypted(inner));
    for await (const item of inner.list()) if (item.type === 'object') expect((await inner.head(item.key)).metadata).toHaveProperty('cloudmux_enc');
  }, 120_000);

  it.skipIf(!azureCs || !s3Endpoint)('over the router on s3rver + Azurite, by its change feed', async () => {
    await story(emulatorRouter());
  }, 180_000);

  it('over the router, incremental rounds read the change feed instead of listing', async () => {
    const f: Fixture = await routerFixture({ providers: ['p', 'q'], policies: [{ replicas: 2, writeQuorum: 2 }] });
    closers.push(() => f.close());
    const remote = new ListCounting(f.router);
    const a = device(f.router, 'a');
    const b = device(remote, 'b');
    for (let i = 0; i < 20; i++) writeFile(a.dir, `f${i}.txt`, `v${i}`);
    await a.round();
    await b.round();
    const lists = (): number => remote.lists;
    const before = lists();
    writeFile(a.dir, 'f3.txt', 'changed');
    removeFile(a.dir, 'f4.txt');
    await a.round();
    const r = await b.round();
    expect(r.planned.map((x) => [x.path, x.case])).toEqual([['f3.txt', 'remote-changed'], ['f4.txt', 'remote-deleted']]);
    expect(r.examined).toBe(1); // only the changed object is examined (head); the delete comes from the feed
    expect(lists() - before).toBe(0);
    expect(localTree(b.dir)).toEqual(localTree(a.dir));
    expect((await b.round()).examined).toBe(0);
  }, 60_000);

  it('a create that lost to its own orphan (a put whose every answer was lost left bytes on a provider, no catalog row) converges next round', async () => {
    // The "lost race under load" (89593a3): an offline round can leave such a copy; the next
    // create of the key loses to it (AlreadyExists: raced). The router now adopts the copy when it
    // refuses the create, so the next round sees it through the feed; before, only the raced
    // path's recheck (a head, which adopts) brought it in.
    const f: Fixture = await routerFixture({ providers: ['p', 'q'], policies: [{ replicas: 2, writeQuorum: 2 }] });
    closers.push(() => f.close());
    const a = device(f.router, 'a');
    writeFile(a.dir, 'same.txt', 'bytes that landed');
    writeFile(a.dir, 'other.txt', 'mine');
    await f.memory.q!.put('same.txt', 'bytes that landed');
    await f.memory.q!.put('other.txt', 'an older orphan');
    const r1 = await a.round();
    expect(r1.outcomes.filter((o) => o.result === 'raced').map((o) => o.action.path).sort()).toEqual(['other.txt', 'same.txt']);
    const r2 = await a.round();
    expect(r2.counts).toMatchObject({ raced: 0, failed: 0, deferred: 0 });
    expect(r2.planned.map((x) => [x.path, x.case])).toEqual([['other.txt', 'both-created-differ'], ['same.txt', 'both-created-same']]);
    expect((await a.round()).planned).toEqual([]);
    expect(await remoteTree(f.router)).toEqual(localTree(a.dir));
    expect([...localTree(a.dir).keys()].filter((k) => k.startsWith('other.conflict-a-'))).toHaveLength(1);
  }, 60_000);

  it('a cursor the store does not understand (another catalog, a damaged state) costs one listing, not the sync', async () => {
    const f: Fixture = await routerFixture({ providers: ['p', 'q'], policies: [{ replicas: 2, writeQuorum: 2 }] });
    closers.push(() => f.close());
    const remote = new ListCounting(f.router);
    const a = device(f.router, 'a');
    const b = device(remote, 'b');
    writeFile(a.dir, 'x.txt', '1');
    await a.round();
    await b.round();
    b.state.setMeta('cursor', 'not-a-cursor');
    writeFile(a.dir, 'x.txt', '2');
    await a.round();
    const lists = (): number => remote.lists;
    const before = lists();
    const r = await b.round();
    expect(r.planned).toEqual([expect.objectContaining({ path: 'x.txt', case: 'remote-changed' })]);
    expect(lists()).toBeGreaterThan(before);
    expect(readFile(b.dir, 'x.txt')).toBe('2');
    writeFile(a.dir, 'x.txt', '3');
    await a.round();
    const listed = lists();
    expect((await b.round()).planned).toEqual([expect.objectContaining({ path: 'x.txt', case: 'remote-changed' })]);
    expect(readFile(b.dir, 'x.txt')).toBe('3');
    expect(lists()).toBe(listed); // back on the feed
  }, 60_000);

  it('over an EncryptedStore on the router: the feed passes through the encryption layer', async () => {
    const f: Fixture = await routerFixture({ providers: ['p', 'q'], policies: [{ replicas: 2, writeQuorum: 2 }] });
    closers.push(() => f.close());
    await story(encrypted(f.router));
  }, 60_000);
});
