/**
 * `npm run demo`: the main job of cloudmux on embedded defaults, with no cloud account.
 *
 * Starts three local emulators (s3rver for S3, Azurite for Azure Blob, the project's GCS JSON-API
 * server), puts a router over them with a SQLite catalog and outbox, and narrates:
 *   1. cost-based placement: each object on the two cheapest healthy providers (N=2, W=1);
 *   2. reads served by the cheapest replica;
 *   3. an outage: Azurite stopped mid-workload; every put and read still succeeds, and deletes of
 *      objects Azure holds are owed to it in the outbox;
 *   4. recovery: Azurite back, health recovers, the outbox drains;
 *   5. proof: every replica's SHA-256 read back from each provider directly;
 *   6. a verified migration of the bucket from S3 to a local directory, and `verify` of both trees.
 *
 * It tells the same story on every run (test/demo.test.ts checks its lines): each step waits for
 * the evidence it reports (a health state, an outbox count) instead of racing timers, and prints
 * what it observed only then, never from a background event.
 */
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { FsStore } from '../providers/fs/index.js';
import { defaultPriceTable } from '../src/config/load.js';
import type { Prices } from '../src/config/schema.js';
import { getBuffer, isCloudmuxError, type BlobStore } from '../src/core/index.js';
import { resilient } from '../src/layers/resilient.js';
import { migrate, verifyTrees } from '../src/replication/index.js';
import { ReplicationWorker } from '../src/replication/worker.js';
import { Router } from '../src/router/router.js';
import { SqliteStateStore } from '../src/state/sqlite.js';
import { generatedStream, pseudoRandomBytes, sha256Hex } from '../src/testing/data.js';
import { ownAzurite, ownGcs, ownS3rver } from '../test/harness/restartable.js';

const tty = process.stdout.isTTY;
const c = (code: number) => (s: string): string => (tty ? `\u001b[${code}m${s}\u001b[0m` : s);
const bold = c(1);
const dim = c(2);
const green = c(32);
const red = c(31);
const cyan = c(36);

let stepNo = 0;
const t0 = performance.now();
function step(title: string): void {
  stepNo++;
  console.log(`\n${bold(cyan(`[${stepNo}] ${title}`))}`);
}
function say(line: string): void {
  const secs = ((performance.now() - t0) / 1000).toFixed(1).padStart(5);
  console.log(`${dim(`${secs}s`)}  ${line}`);
}
const mib = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function listPrices(name: string): Prices {
  const p = defaultPriceTable()[name]!;
  return { storageGbMonth: p.storageGbMonth!, egressInternetGb: p.egressInternetGb!, egressToGb: {}, classAPer1k: p.classAPer1k!, classBPer1k: p.classBPer1k! };
}

// The AWS SDK warns on Node 20 that its 2027 releases will need Node 22; cloudmux pins a release
// that supports 20. The warning is for the deployer, not for this demo's narration.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

async function main(): Promise<void> {
  const workdir = resolve('.cloudmux-demo');
  await rm(workdir, { recursive: true, force: true });
  await mkdir(workdir, { recursive: true });

  step('Starting local emulators (no cloud account needed)');
  const [s3, azure, gcs] = await Promise.all([ownS3rver(), ownAzurite(), ownGcs()]);
  say(`S3    → s3rver           ${dim('(AWS S3 Standard list prices)')}`);
  say(`Azure → Azurite          ${dim('(Azure Blob Hot list prices)')}`);
  say(`GCS   → cloudmux GCS JSON-API test server at ${gcs.url} ${dim('(GCS Standard list prices)')}`);

  const direct: Record<string, BlobStore> = { s3: s3.store(), gcs: gcs.store(), azure: azure.store() };
  const priceName: Record<string, string> = { s3: 's3-standard', gcs: 'gcs-standard', azure: 'azure-hot' };
  const state = new SqliteStateStore({ path: join(workdir, 'state.db'), durability: 'normal' });
  const router = new Router({
    providers: Object.entries(direct).map(([name, store]) => ({
      name,
      prices: listPrices(priceName[name]!),
      store: resilient(store, {
        // Generous: a slow answer on a loaded machine must not read as an outage of a healthy emulator.
        attemptTimeout: { timeoutMs: 15_000 },
        retry: { retries: 1, baseDelayMs: 50, maxDelayMs: 200 },
        breaker: { volumeThreshold: 4, errorThresholdPercentage: 25, resetTimeoutMs: 1_500 },
      }).store,
    })),
    state,
    policies: [{ replicas: 2, writeQuorum: 1, read: 'cheapest' }],
    health: { probeIntervalMs: 300, windowMs: 3_000, minRequests: 4, recoverAfter: 2 },
  });
  router.startProbes();
  /** Waits until `provider`'s health is `to` (the probes get it there), then says so. */
  const healthBecomes = async (provider: string, to: 'healthy' | 'down', why: string): Promise<void> => {
    const deadline = Date.now() + 60_000;
    while (router.health.state(provider) !== to) {
      if (Date.now() > deadline) throw new Error(`${provider} did not become ${to} within 60 s (it is ${router.health.state(provider)})`);
      await sleep(50);
    }
    say(`health: ${bold(provider)} is ${(to === 'healthy' ? green : red)(to)} ${dim(`(${why})`)}`);
  };
  const worker = ReplicationWorker.forRouter(router, { concurrency: 8, backoffBaseMs: 50, backoffMaxMs: 500, pollIntervalMs: 100, deferMs: 300 });
  let deletedOnAzure = 0;
  worker.on('done', (d) => {
    if (d.outcome === 'deleted' && d.entry.provider === 'azure') deletedOnAzure++;
  });
  worker.start();
  say(`router: 3 providers, policy ${bold('replicas=2 writeQuorum=1 read=cheapest')}, catalog + outbox in SQLite (${dim(join('.cloudmux-demo', 'state.db'))})`);

  const readsBy: Record<string, number> = {};
  router.events.on('read', (r) => {
    readsBy[r.provider] = (readsBy[r.provider] ?? 0) + 1;
  });

  const written = new Map<string, string>();
  async function putBatch(prefix: string, n: number): Promise<number> {
    let failed = 0;
    let i = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (i < n) {
        const k = `${prefix}/obj-${String(i++).padStart(4, '0')}.bin`;
        const data = pseudoRandomBytes(1024 + ((i * 7919) % 64) * 1024, k);
        try {
          await router.put(k, data, { contentType: 'application/octet-stream', metadata: { batch: prefix } });
          written.set(k, sha256Hex(data));
        } catch (e) {
          failed++;
          say(red(`put ${k} failed: ${(e as Error).message}`));
        }
      }
    }));
    return failed;
  }
  async function readSome(keys: string[]): Promise<number> {
    let bad = 0;
    for (const k of keys) {
      try {
        const buf = await getBuffer(router, k, { verify: true });
        if (sha256Hex(buf) !== written.get(k)) bad++;
      } catch (e) {
        bad++;
        say(red(`read ${k} failed: ${(e as Error).message}`));
      }
    }
    return bad;
  }
  const placementOf = async (key: string): Promise<string[]> => {
    const l = await state.lookup(key);
    return l.state === 'live' ? l.holders.map((h) => h.provider).sort() : [];
  };

  step('Cost-based placement: 120 objects and one 24 MiB stream, each on the 2 cheapest providers');
  const plan = router.placement(router.policies.for('x'), 2 ** 20);
  say(`cheapest to store, in order: ${plan.targets.map(bold).join(', ')} ${dim(`(then ${['s3', 'gcs', 'azure'].filter((p) => !plan.targets.includes(p)).join(', ')})`)}`);
  const failedPuts = await putBatch('photos', 120);
  const big = generatedStream(24 * 2 ** 20, { seed: 'big' });
  const bigMeta = await router.put('videos/launch.mp4', big.stream, { contentType: 'video/mp4' });
  written.set('videos/launch.mp4', big.sha256());
  say(`wrote 121 objects (${failedPuts} failed); the stream's SHA-256 ${bigMeta.checksums.sha256?.slice(0, 16)}… recorded in the catalog`);
  await worker.drain({ timeoutMs: 120_000 });
  const placements = await Promise.all([...written.keys()].map(placementOf));
  say(`replication worker finished the second replicas: ${placements.filter((h) => h.length === 2).length} of ${written.size} objects on 2 providers, outbox ${(await worker.backlog()).count}`);
  say(`photos/obj-0000.bin lives on: ${(await placementOf('photos/obj-0000.bin')).map(bold).join(' + ')}`);

  step('Reads go to the replica that is cheapest to read from (egress + request price)');
  await readSome([...written.keys()].slice(0, 20));
  say(`20 verified reads served by: ${Object.entries(readsBy).map(([p, n]) => `${bold(p)} ×${n}`).join(', ')}`);

  step('Outage: Azurite stopped while the application keeps working');
  await azure.stop();
  say(red('azurite process stopped'));
  await healthBecomes('azure', 'down', 'canary probes fail; the router sends it nothing');
  for (const k of Object.keys(readsBy)) delete readsBy[k];
  const outageFailures = await putBatch('during-outage', 60);
  const readFailures = await readSome([...written.keys()].slice(0, 40));
  say(`60 puts during the outage: ${outageFailures === 0 ? green('all succeeded') : red(`${outageFailures} failed`)}; 40 verified reads: ${readFailures === 0 ? green('all correct') : red(`${readFailures} failed`)}`);
  say(`reads served by: ${Object.entries(readsBy).map(([p, n]) => `${bold(p)} ×${n}`).join(', ')}`);
  // Deletes of objects Azure holds: their other replica goes now, Azure's is owed until it is back.
  const doomed = [...written.keys()].filter((k) => k.startsWith('photos/')).slice(0, 20);
  const doomedOnAzure = (await Promise.all(doomed.map(placementOf))).filter((h) => h.includes('azure')).length;
  for (const k of doomed) {
    await router.delete(k);
    written.delete(k);
  }
  // The worker copies the new objects' second replicas meanwhile; wait until only Azure's share is left.
  let owed = await worker.backlog();
  for (const deadline = Date.now() + 120_000; owed.count !== (owed.byProvider.azure?.count ?? 0); owed = await worker.backlog()) {
    if (Date.now() > deadline) throw new Error(`the outbox still owes ${owed.count} entries, not only Azure's`);
    await sleep(100);
  }
  say(`deleted ${doomed.length} photos, ${doomedOnAzure} of them held by azure`);
  say(`outbox: ${owed.count} deletes owed to azure — durable in SQLite, nothing lost if this process dies`);

  step('Recovery: Azurite back; health recovers and the outbox drains');
  await azure.restart();
  say(green('azurite process restarted'));
  await healthBecomes('azure', 'healthy', 'canary probes pass again');
  const drainStart = performance.now();
  const after = await worker.drain({ timeoutMs: 120_000 });
  say(`outbox drained to ${after.count} in ${((performance.now() - drainStart) / 1000).toFixed(1)} s (dead-lettered: ${after.dead})`);
  let goneFromAzure = 0;
  for (const k of doomed) {
    const h = await direct.azure!.head(k).catch((e: unknown) => e);
    if (isCloudmuxError(h, 'NotFound')) goneFromAzure++;
  }
  say(`the owed deletes reached azure: ${goneFromAzure === doomed.length ? green(`all ${doomed.length} deleted photos are gone from it`) : red(`${doomed.length - goneFromAzure} still there`)} (${deletedOnAzure} done by the worker)`);

  step('Proof: every replica read back from each provider directly, SHA-256 compared with what was written');
  let checked = 0;
  let mismatched = 0;
  for (const [key, sha] of written) {
    for (const p of await placementOf(key)) {
      const buf = await getBuffer(direct[p]!, key);
      checked++;
      if (sha256Hex(buf) !== sha) {
        mismatched++;
        say(red(`${p} holds wrong bytes for ${key}`));
      }
    }
  }
  say(`${checked} replicas of ${written.size} objects checked: ${mismatched === 0 ? green('all identical') : red(`${mismatched} differ`)}`);

  step('Migration: the S3 bucket copied to a local directory, every object verified, then `verify`');
  say(`S3 is the dearest to store on, so it holds only what was written while Azure was down`);
  // Plain layout: every object becomes the file at its key's path, readable without cloudmux.
  const dest = new FsStore({ root: join(workdir, 'exported'), layout: 'plain' });
  // The router's canary objects come and go under cloudmux-probe/: not application data.
  router.health.stopProbes();
  const appData = { exclude: ['cloudmux-probe/**'] };
  const summary = await migrate(direct.s3!, dest, { concurrency: 8, journal: join(workdir, 'migrate-journal.db'), ...appData });
  say(`listed ${summary.listed}, copied ${summary.copied}, identical ${summary.identical}, failed ${summary.failed}, ${mib(summary.bytes)} in ${(summary.durationMs / 1000).toFixed(1)} s`);
  const report = await verifyTrees(direct.s3!, dest, appData);
  say(`verify s3 ⇄ ${join('.cloudmux-demo', 'exported')}: ${report.matching} matching, ${report.differing} differing, ${report.onlyInA + report.onlyInB} missing`);
  const exported = join(workdir, 'exported');
  const plainFiles = (await readdir(exported, { withFileTypes: true, recursive: true }))
    .filter((e) => e.isFile())
    .map((e) => relative(exported, join(e.parentPath, e.name)))
    .filter((p) => !p.startsWith('.cloudmux'));
  say(`the export is ${plainFiles.length} ordinary files (e.g. ${join('.cloudmux-demo', 'exported', plainFiles.sort()[0] ?? '')}); cloudmux's metadata sits in exported/.cloudmux/`);
  const again = await migrate(direct.s3!, dest, { concurrency: 8, journal: join(workdir, 'migrate-journal.db'), ...appData });
  say(`running the migration again copies nothing: copied ${again.copied}, identical ${again.identical}`);

  await worker.stop();
  await router.close();
  await dest.close();
  await Promise.allSettled([s3.dispose(), azure.dispose(), gcs.close()]);
  const ok = failedPuts + outageFailures + readFailures + mismatched + summary.failed + report.differing + (doomed.length - goneFromAzure) + after.count === 0;
  console.log(`\n${ok ? green(bold('demo finished: nothing lost, nothing stale, every byte verified')) : red(bold('demo finished with failures'))} ${dim(`(${((performance.now() - t0) / 1000).toFixed(1)} s; state in .cloudmux-demo/)`)}`);
  process.exitCode = ok ? 0 : 1;
}

main().catch((e: unknown) => {
  console.error(red(`demo failed: ${(e as Error).stack ?? String(e)}`), (e as Error).cause);
  process.exitCode = 1;
});
