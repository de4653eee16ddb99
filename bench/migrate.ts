/**
 * The same dataset migrated S3 emulator (s3rver) → Azurite by `cloudmux migrate` and by
 * `rclone copy --transfers 16`, in one run: wall time of each, the ratio (ours / rclone's), and
 * each process's peak RSS (VmHWM) and CPU time. Both verify as they go, but not alike: cloudmux
 * hashes every byte it writes (SHA-256, checked against the source's recorded digest; MD5 of each
 * block for Azure to check on receipt, and of the whole blob for its Content-MD5); rclone sends
 * blocks without a digest, gives the blob one MD5 (computed, or the source's), and compares it
 * with the source's MD5 where S3 has one (the ETag of a single-part object), else sizes only.
 * Afterwards both destinations are checked against the source with `verifyTrees` (not timed).
 *
 *   npx tsx bench/migrate.ts [smallCount=2000] [largeCount=4] [largeMiB=64] [--repeat=N]
 *
 * `--cpu-prof=DIR` writes a V8 CPU profile of each cloudmux run into DIR (open it in Chrome
 * DevTools, or summarise it with `npx tsx bench/profile-summary.ts FILE`).
 *
 * `--https` serves Azurite over TLS (a self-signed certificate both tools are told to trust), as
 * every real cloud endpoint is: cloudmux then sends no per-block MD5 (`blockMd5: auto`, TLS
 * protects the bytes in transit), and both tools pay for TLS.
 *
 * `--repeat=N` runs both tools N times, alternating which goes first, and reports the range and
 * the per-round ratio (each round's two runs share the box's load of the moment). Before the
 * first round each tool copies a tenth of the small objects, untimed, to warm the emulators.
 *
 * Needs Debian's rclone (`apt-get install rclone`); without it only cloudmux is measured.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ContainerSASPermissions, StorageSharedKeyCredential, generateBlobSASQueryParameters } from '@azure/storage-blob';
import type { BlobStore } from '../src/core/index.js';
import { removeAllUnder } from '../src/core/remove.js';
import { openStore } from '../src/registry.js';
import { treesMatch, verifyTrees } from '../src/replication/verify.js';
import { selfSignedCertificate, startAzure } from '../test/harness/azure.js';
import { startS3 } from '../test/harness/s3.js';

const MiB = 1024 * 1024;
const ROOT = resolve(fileURLToPath(import.meta.url), '../..');

export interface Measured {
  seconds: number;
  peakRssMiB: number;
  /** User + system CPU seconds of the process (on a shared 2-core box, CPU taken from the emulators). */
  cpuSeconds: number;
  code: number | null;
  stderr: string;
  /** CPU seconds the emulators spent while it ran (set by the benchmark, not by `measure`). */
  emulatorCpuSeconds?: number;
}

/** Runs a process to the end, sampling its peak RSS (VmHWM) from /proc while it runs. */
export function measure(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<Measured> {
  return new Promise((done, fail) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let hwmKiB = 0;
    let ticks = 0;
    const sample = (): void => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (m) hwmKiB = Math.max(hwmKiB, Number(m[1]));
        const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        ticks = Math.max(ticks, Number(fields[11]) + Number(fields[12]));
      } catch {
        // exited between samples
      }
    };
    const timer = setInterval(sample, 50);
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString('utf8')).slice(-4000);
    });
    child.on('error', fail);
    child.on('exit', (code) => {
      clearInterval(timer);
      // Clock ticks are 1/100 s on Linux; the last sample may miss the final few ticks.
      done({ seconds: Number(process.hrtime.bigint() - t0) / 1e9, peakRssMiB: hwmKiB / 1024, cpuSeconds: ticks / 100, code, stderr });
    });
  });
}

/** User + system CPU seconds a running process has used so far (0 when it is gone or unknown). */
export function cpuSecondsOf(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/**
 * How to start the CLI as a user runs it: compiled JavaScript (built here into a temp dir, as
 * `npm run build` would), so tsx's on-the-fly transpiling of two SDKs is not what gets timed.
 * Falls back to tsx when the tree does not compile.
 */
export function cliEntry(work: string): string[] {
  const out = join(work, 'build');
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', out], { encoding: 'utf8' });
  if (r.status !== 0) {
    console.log(`(the tree does not compile, timing the CLI under tsx: ${r.stdout.split('\n')[0]})`);
    return ['--import', 'tsx', join(ROOT, 'src/cli/bin.ts')];
  }
  symlinkSync(join(ROOT, 'node_modules'), join(out, 'node_modules'));
  copyFileSync(join(ROOT, 'package.json'), join(out, 'package.json'));
  return [join(out, 'src/cli/bin.js')];
}

export async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (i < items.length) await fn(items[i++]!);
  }));
}

/**
 * rclone's remotes `src:` (S3 at `s3Endpoint`) and `dst:` (Azure, a container SAS at
 * `blobEndpoint`), configured through the environment only.
 */
export function rcloneEnv(env: NodeJS.ProcessEnv, container: string, s3Endpoint = env.S3_ENDPOINT!, blobEndpoint?: string): NodeJS.ProcessEnv {
  const cs = Object.fromEntries(env.AZURE_STORAGE_CONNECTION_STRING!.split(';').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])) as Record<string, string>;
  const sas = generateBlobSASQueryParameters({ containerName: container, permissions: ContainerSASPermissions.parse('racwdl'), expiresOn: new Date(Date.now() + 3 * 3600_000) },
    new StorageSharedKeyCredential(cs.AccountName!, cs.AccountKey!)).toString();
  const out: NodeJS.ProcessEnv = {
    ...env,
    RCLONE_CONFIG: '/dev/null',
    RCLONE_CONFIG_SRC_TYPE: 's3', RCLONE_CONFIG_SRC_PROVIDER: 'Other', RCLONE_CONFIG_SRC_ENDPOINT: s3Endpoint,
    RCLONE_CONFIG_SRC_ACCESS_KEY_ID: env.AWS_ACCESS_KEY_ID, RCLONE_CONFIG_SRC_SECRET_ACCESS_KEY: env.AWS_SECRET_ACCESS_KEY,
    RCLONE_CONFIG_SRC_REGION: env.AWS_REGION ?? 'us-east-1', RCLONE_CONFIG_SRC_FORCE_PATH_STYLE: 'true',
    RCLONE_CONFIG_DST_TYPE: 'azureblob', RCLONE_CONFIG_DST_SAS_URL: `${blobEndpoint ?? cs.BlobEndpoint}/${container}?${sas}`,
  };
  delete out.AWS_CA_BUNDLE;
  return out;
}

type Tool = 'cloudmux' | 'rclone';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const cpuProf = args.find((a) => a.startsWith('--cpu-prof='))?.slice('--cpu-prof='.length);
  const repeat = Math.max(1, Number(args.find((a) => a.startsWith('--repeat='))?.slice('--repeat='.length) ?? 1));
  const [smallCount = 2000, largeCount = 4, largeMiB = 64] = args.filter((a) => !a.startsWith('--')).map(Number);
  const https = args.includes('--https');
  let tls: { cert: string; key: string } | undefined;
  if (https) {
    // Node reads NODE_EXTRA_CA_CERTS only at start-up: make the certificate, then run again with it.
    if (!process.env.CLOUDMUX_BENCH_TLS_DIR) {
      const dir = mkdtempSync(join(tmpdir(), 'cloudmux-bench-tls-'));
      const made = selfSignedCertificate(dir);
      const again = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
        stdio: 'inherit', env: { ...process.env, CLOUDMUX_BENCH_TLS_DIR: dir, NODE_EXTRA_CA_CERTS: made.cert },
      });
      rmSync(dir, { recursive: true, force: true });
      process.exit(again.status ?? 1);
    }
    const dir = process.env.CLOUDMUX_BENCH_TLS_DIR;
    tls = { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
  }
  const emulators = (await Promise.all([startS3(), startAzure(tls ? { tls } : {})])).filter((e) => e !== undefined);
  for (const e of emulators) Object.assign(process.env, e.env);
  const env = process.env;
  const run = `bench-migrate-${randomUUID().slice(0, 8)}`;
  const srcUrl = `s3://${env.S3_BUCKET}/${run}/src?endpoint=${encodeURIComponent(env.S3_ENDPOINT!)}&forcePathStyle=true`;
  const container = env.AZURE_CONTAINER ?? 'cloudmux-test';
  const azUrl = (p: string): string => `az://devstoreaccount1/${container}/${run}${p ? `/${p}` : ''}`;
  const work = mkdtempSync(join(tmpdir(), 'cloudmux-bench-migrate-'));
  const stores: BlobStore[] = [];
  try {
    const src = await openStore(srcUrl);
    stores.push(src);
    const specs = [
      ...Array.from({ length: smallCount }, (_, i) => ({ key: `small/${String(i % 50).padStart(2, '0')}/obj-${i}.bin`, size: 1024 + Math.floor(Math.random() * 255 * 1024) })),
      ...Array.from({ length: largeCount }, (_, i) => ({ key: `large/big-${i}.bin`, size: largeMiB * MiB })),
    ];
    const totalBytes = specs.reduce((a, s) => a + s.size, 0);
    const seedStart = Date.now();
    await pool(specs, 16, async (s) => {
      await src.put(s.key, randomBytes(s.size));
    });
    console.log(`dataset: ${smallCount} objects of 1-256 KiB + ${largeCount} of ${largeMiB} MiB = ${(totalBytes / MiB).toFixed(0)} MiB on s3rver${https ? ', Azurite over https' : ''} (seeded in ${((Date.now() - seedStart) / 1000).toFixed(1)} s)`);

    const childEnv = { ...env, NODE_OPTIONS: '', NODE_NO_WARNINGS: '1' };
    const entry = cliEntry(work);
    const haveRclone = spawnSync('rclone', ['version']).status === 0;
    if (!haveRclone) console.log('rclone is not installed: only cloudmux measured');
    // The emulators share the two cores with the tool: CPU either of them spends is CPU the other lacks.
    const emulatorCpu = (): number => emulators.reduce((a, e) => a + cpuSecondsOf(e.pid), 0);
    const rate = (m: Measured): string => `${m.seconds.toFixed(2)} s, ${(totalBytes / MiB / m.seconds).toFixed(1)} MiB/s, peak RSS ${m.peakRssMiB.toFixed(0)} MiB, CPU ${m.cpuSeconds.toFixed(1)} s (+ emulators ${m.emulatorCpuSeconds!.toFixed(1)} s)`;
    const tools: Record<Tool, (dst: string, round: number | string, filter?: string) => Promise<Measured>> = {
      cloudmux: (dst, round, filter) => measure(process.execPath, [...(cpuProf ? ['--cpu-prof', '--cpu-prof-dir', resolve(cpuProf)] : []), ...entry, 'migrate', srcUrl, azUrl(dst),
        '--concurrency', '16', '--journal', join(work, `journal-${round}.sqlite`), '--json', ...(filter ? ['--include', filter] : [])], childEnv),
      // --fast-list: rclone's delimited walk misses nested keys on s3rver.
      rclone: (dst, _round, filter) => measure('rclone', ['copy', '--transfers', '16', '--fast-list', ...(filter ? ['--include', filter] : []),
        ...(tls ? ['--ca-cert', tls.cert] : []), `src:${env.S3_BUCKET}/${run}/src`, `dst:${container}/${run}/${dst}`], rcloneEnv(env, container)),
    };
    // Untimed warm-up of both emulators (their JIT, Azurite's container state) and both tools'
    // paths, on a tenth of the small objects: otherwise whoever runs first in round 1 pays for it.
    for (const tool of haveRclone ? (['cloudmux', 'rclone'] as Tool[]) : (['cloudmux'] as Tool[])) {
      const m = await tools[tool](`warmup-${tool}`, 'warmup', 'small/0[0-4]/**');
      if (m.code !== 0) throw new Error(`${tool} warm-up exited ${m.code}: ${m.stderr}`);
      const d = await openStore(azUrl(`warmup-${tool}`));
      await removeAllUnder(d, '');
      await d.close();
    }
    const results: Record<Tool, Measured[]> = { cloudmux: [], rclone: [] };
    for (let round = 0; round < repeat; round++) {
      // Alternate who goes first: on a shared box, load drifts between the two runs of a round.
      const order: Tool[] = !haveRclone ? ['cloudmux'] : round % 2 === 0 ? ['cloudmux', 'rclone'] : ['rclone', 'cloudmux'];
      for (const tool of order) {
        const dstName = `${tool}-${round}`;
        const cpu0 = emulatorCpu();
        const m = await tools[tool](dstName, round);
        m.emulatorCpuSeconds = emulatorCpu() - cpu0;
        if (m.code !== 0) throw new Error(`${tool} exited ${m.code}: ${m.stderr}`);
        results[tool].push(m);
        console.log(`${repeat > 1 ? `[${round + 1}/${repeat}] ` : ''}${tool === 'cloudmux' ? 'cloudmux migrate --concurrency 16:' : 'rclone copy --transfers 16:       '} ${rate(m)}`);
        // Verified (untimed) and removed, so every round starts from the same emulator state.
        const dst = await openStore(azUrl(dstName));
        const r = await verifyTrees(src, dst, { concurrency: 16 });
        console.log(`  verify ${tool} copy: ${treesMatch(r) ? 'no differences' : 'DIFFERENCES'} (${r.matching} matching, ${JSON.stringify(r.matchedBy)})`);
        if (!treesMatch(r)) process.exitCode = 1;
        await removeAllUnder(dst, '');
        await dst.close();
      }
    }
    const ours = results.cloudmux;
    const theirs = results.rclone;
    if (theirs.length === ours.length && ours.length > 0) {
      const ratios = ours.map((m, i) => m.seconds / theirs[i]!.seconds);
      if (repeat > 1) {
        const span = (ms: Measured[], f: (m: Measured) => number): string => `${Math.min(...ms.map(f)).toFixed(1)}–${Math.max(...ms.map(f)).toFixed(1)}`;
        console.log(`cloudmux: ${span(ours, (m) => m.seconds)} s (CPU ${span(ours, (m) => m.cpuSeconds)} s, emulators ${span(ours, (m) => m.emulatorCpuSeconds!)} s); rclone: ${span(theirs, (m) => m.seconds)} s (CPU ${span(theirs, (m) => m.cpuSeconds)} s, emulators ${span(theirs, (m) => m.emulatorCpuSeconds!)} s)`);
        console.log(`ratio per round (cloudmux time / rclone time): ${ratios.map((r) => r.toFixed(2)).join(' ')}; median ${median(ratios).toFixed(2)}  (target ≤ 1.00)`);
      } else {
        console.log(`ratio (cloudmux time / rclone time): ${ratios[0]!.toFixed(2)}  (target ≤ 1.00)`);
      }
    }
  } finally {
    await Promise.allSettled(stores.map(async (s) => {
      await removeAllUnder(s, '');
      await s.close();
    }));
    // Whatever a failed round left behind.
    const leftovers = await openStore(azUrl('')).catch(() => undefined);
    if (leftovers) await removeAllUnder(leftovers, '').catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
    await Promise.allSettled(emulators.map((e) => e.stop()));
  }
}

// Run only as a script: bench/migrate-requests.ts imports the helpers above.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
