/**
 * Two-way sync of the same tree with an S3 remote (s3rver) by cloudmux and by `rclone bisync`
 * (1.60), in one run: the initial sync of N files (default 10,000 of 1 KiB), an incremental round
 * with 100 changed files, and a round with 0 changes. Prints each time and the ratio
 * (rclone time / cloudmux time: above 1 means cloudmux is faster).
 *
 * What is compared, plainly: cloudmux syncs through the router (one provider, s3rver, catalog in
 * SQLite; s3rver has no conditional writes of its own, the router's catalog gives them), whose
 * change feed replaces the listing in later rounds; its rounds run in this process, as
 * `cloudmux sync --watch` runs them (no process start per round). rclone bisync runs as a process
 * per round (how it is used, from cron) and lists both sides each time. Each tool has its own
 * copy of the tree and its own prefix in the bucket. Local writes are not fsynced by either.
 *
 *   npx tsx bench/sync.ts [files=10000] [changes=100]
 *
 * Needs rclone on PATH (Debian's 1.60); without it only cloudmux is measured.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Store } from '../providers/s3/index.js';
import { Router } from '../src/router/router.js';
import { SqliteStateStore } from '../src/state/sqlite.js';
import { SyncEngine } from '../src/sync/sync-engine.js';
import { emulatorOptions, startS3 } from '../test/harness/s3.js';
import { measure, type Measured } from './migrate.js';

const files = Number(process.argv[2] ?? 10_000);
const changes = Number(process.argv[3] ?? 100);
const work = mkdtempSync(join(tmpdir(), 'cloudmux-bench-sync-'));
const FLAT = { storageGbMonth: 0.02, egressInternetGb: 0.09, egressToGb: {}, classAPer1k: 0.005, classBPer1k: 0.0004 };

function seedTree(dir: string): string[] {
  const paths: string[] = [];
  for (let i = 0; i < files; i++) {
    const sub = join(dir, `d${i % 50}`, `s${(i >> 6) % 8}`);
    mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, `f${i}.txt`), randomBytes(1024));
    paths.push(`d${i % 50}/s${(i >> 6) % 8}/f${i}.txt`);
  }
  return paths;
}

function change(dir: string, paths: string[]): void {
  for (let i = 0; i < changes; i++) writeFileSync(join(dir, paths[(i * 97) % paths.length]!), randomBytes(1100));
}

async function main(): Promise<void> {
  console.log(`sync bench: ${files} files of 1 KiB, ${changes} changes, remote s3rver; load average ${loadavg().map((x) => x.toFixed(1)).join(' ')} (shared 2-core box)`);
  const emu = await startS3();
  if (emu) Object.assign(process.env, emu.env);
  const ours = join(work, 'ours');
  const theirs = join(work, 'theirs');
  mkdirSync(ours);
  const paths = seedTree(ours);
  cpSync(ours, theirs, { recursive: true });

  const router = new Router({
    providers: [{ name: 's3', store: new S3Store(emulatorOptions({ prefix: 'bench-sync-cloudmux/' })), prices: FLAT }],
    state: new SqliteStateStore({ path: join(work, 'router.db'), durability: 'normal' }),
    policies: [{ replicas: 1, writeQuorum: 1 }],
    health: { probeIntervalMs: 0 },
  });
  const engine = SyncEngine.open({ local: ours, remote: router, device: 'bench', pair: 'bench', fsync: false, concurrency: 16 });
  const runOurs = async (): Promise<{ seconds: number; failed: number }> => {
    const t0 = process.hrtime.bigint();
    const r = await engine.round();
    return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, failed: r.counts.failed + (r.online ? 0 : 1) };
  };

  const rclone = spawnSync('rclone', ['version'], { encoding: 'utf8' }).status === 0;
  const env: NodeJS.ProcessEnv = {
    ...process.env, RCLONE_CONFIG: '/dev/null',
    RCLONE_CONFIG_S3_TYPE: 's3', RCLONE_CONFIG_S3_PROVIDER: 'Other', RCLONE_CONFIG_S3_ENDPOINT: process.env.S3_ENDPOINT,
    RCLONE_CONFIG_S3_ACCESS_KEY_ID: process.env.AWS_ACCESS_KEY_ID, RCLONE_CONFIG_S3_SECRET_ACCESS_KEY: process.env.AWS_SECRET_ACCESS_KEY,
    RCLONE_CONFIG_S3_REGION: process.env.AWS_REGION ?? 'us-east-1', RCLONE_CONFIG_S3_FORCE_PATH_STYLE: 'true',
  };
  delete env.AWS_CA_BUNDLE;
  const remote = `s3:${process.env.S3_BUCKET}/bench-sync-rclone`;
  const runTheirs = (first: boolean): Promise<Measured> =>
    measure('rclone', ['bisync', theirs, remote, '--workdir', join(work, 'rclone-workdir'), '--transfers', '16', '-q', ...(first ? ['--resync'] : [])], env);

  const step = async (name: string, first: boolean): Promise<void> => {
    const a = await runOurs();
    if (a.failed) throw new Error('cloudmux round failed');
    const b = rclone ? await runTheirs(first) : undefined;
    if (b && b.code !== 0) throw new Error(`rclone bisync failed (${b.code}): ${b.stderr}`);
    console.log(`${name.padEnd(26)} cloudmux ${a.seconds.toFixed(2)} s` +
      (b ? `   rclone bisync ${b.seconds.toFixed(2)} s (CPU ${b.cpuSeconds.toFixed(2)} s)   ratio rclone/cloudmux ${(b.seconds / a.seconds).toFixed(2)}` : ''));
  };
  try {
    await step(`initial (${files} files)`, true);
    change(ours, paths);
    change(theirs, paths);
    await step(`incremental (${changes} changes)`, false);
    await step('no changes', false);
    console.log('targets: incremental and no-change rounds ≥ 5× faster than bisync (ratio ≥ 5), initial no slower (ratio ≥ 1)');
  } finally {
    engine.close();
    await router.close();
    await emu?.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
