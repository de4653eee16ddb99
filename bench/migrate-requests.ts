/**
 * Where a migration's time goes: the same dataset (s3rver → Azurite) migrated by `cloudmux migrate`
 * and by `rclone copy --transfers 16`, each through a logging proxy in front of both emulators
 * (test/faults/proxy.ts, no faults), counting the HTTP requests each tool sends per object, by
 * operation and side. With `--cpu-prof`, cloudmux also runs under `node --cpu-prof` and its CPU
 * time is broken down by package and by function. Not a timing benchmark (the proxies add a hop):
 * bench/migrate.ts times the tools.
 *
 *   npx tsx bench/migrate-requests.ts [smallCount=200] [largeCount=1] [largeMiB=64] [--cpu-prof[=keepDir]]
 */
import { spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import type { BlobStore } from '../src/core/index.js';
import { removeAllUnder } from '../src/core/remove.js';
import { openStore } from '../src/registry.js';
import { startAzure } from '../test/harness/azure.js';
import { startS3 } from '../test/harness/s3.js';
import { FaultProxy, type ProxyLogEntry } from '../test/faults/proxy.js';
import { cliEntry, measure, pool, rcloneEnv } from './migrate.js';

const MiB = 1024 * 1024;
/** Query parameters that name no operation: SAS tokens, timeouts. */
const NOISE = new Set(['sv', 'ss', 'srt', 'sp', 'se', 'st', 'spr', 'sig', 'sr', 'si', 'skoid', 'sktid', 'skt', 'ske', 'sks', 'skv', 'timeout', 'prefix', 'marker', 'maxresults', 'include', 'max-keys', 'continuation-token', 'start-after', 'delimiter', 'blockid', 'partNumber', 'uploadId']);

/** `GET x-id=GetObject`, `PUT comp=block`, … : the operation a logged request was, as far as its line says. */
function operation(e: ProxyLogEntry): string {
  const q = new URL(e.path, 'http://x').searchParams;
  const id = q.get('x-id');
  if (id) return `${e.method} ${id}`;
  const parts = [...q.keys()].filter((k) => !NOISE.has(k)).map((k) => (k === 'comp' || k === 'restype' || k === 'list-type' ? `${k}=${q.get(k)}` : k));
  if (q.has('partNumber')) parts.push('partNumber');
  if (q.has('uploadId')) parts.push('uploadId');
  return `${e.method}${parts.length ? ` ${parts.sort().join('&')}` : ''}${e.range ? ' (range)' : ''}`;
}

/** Which part of the dataset a request touched: `small`, `large`, or `-` (listings, container). */
function kind(e: ProxyLogEntry): string {
  const path = decodeURIComponent(new URL(e.path, 'http://x').pathname);
  return path.includes('/small/') ? 'small' : path.includes('/large/') ? 'large' : '-';
}

/** Counts the TCP connections a proxy accepts (keep-alive at work or not); `reset` starts over. */
function connectionCounter(proxy: FaultProxy): { count(): number; reset(): void } {
  let n = 0;
  // The proxy keeps its server to itself; counting connections is all this does with it.
  (proxy as unknown as { server: Server }).server.on('connection', () => n++);
  return { count: () => n, reset: () => { n = 0; } };
}

function report(tool: string, side: string, log: ProxyLogEntry[], counts: Record<string, number>, connections: number): void {
  const rows = new Map<string, number>();
  for (const e of log) {
    const k = `${kind(e)}\t${operation(e)}${e.status !== undefined && e.status >= 300 ? ` → ${e.status}` : ''}`;
    rows.set(k, (rows.get(k) ?? 0) + 1);
  }
  console.log(`  ${tool} → ${side}: ${log.length} requests on ${connections} connections`);
  for (const [k, n] of [...rows].sort()) {
    const [which, op] = k.split('\t') as [string, string];
    const per = counts[which] ? ` (${(n / counts[which]!).toFixed(2)} per ${which} object)` : '';
    console.log(`    ${which.padEnd(5)} ${op.padEnd(44)} ${String(n).padStart(6)}${per}`);
  }
}

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }

/** Self time of a V8 CPU profile by package and by function (the top `top`). */
function summarizeProfile(file: string, buildDir: string, top = 25): void {
  const p = JSON.parse(readFileSync(file, 'utf8')) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  p.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  const group = (url: string, fn: string): string => {
    if (!url) return fn; // (garbage collector), (program), (idle)
    const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
    if (nm) return nm[1]!;
    if (url.startsWith('node:')) return `node:${url.slice(5).split('/').slice(0, 2).join('/')}`;
    return `cloudmux ${relative(buildDir, url.replace(/^file:\/\//, ''))}`;
  };
  const pkgs = new Map<string, number>();
  const fns = new Map<string, number>();
  let total = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    total += us;
    const g = group(n.callFrame.url, n.callFrame.functionName);
    pkgs.set(g, (pkgs.get(g) ?? 0) + us);
    const f = `${n.callFrame.functionName || '(anonymous)'} ${g}:${n.callFrame.lineNumber + 1}`;
    fns.set(f, (fns.get(f) ?? 0) + us);
  }
  const busy = total - (pkgs.get('(idle)') ?? 0);
  console.log(`  CPU profile: ${(busy / 1e6).toFixed(2)} s busy of ${(total / 1e6).toFixed(2)} s sampled; self time by package:`);
  for (const [g, us] of [...pkgs].sort((a, b) => b[1] - a[1]).slice(0, 20)) {
    if (g === '(idle)') continue;
    console.log(`    ${((us / busy) * 100).toFixed(1).padStart(5)}%  ${(us / 1e6).toFixed(2).padStart(6)} s  ${g}`);
  }
  console.log(`  top ${top} functions by self time:`);
  for (const [f, us] of [...fns].sort((a, b) => b[1] - a[1]).slice(0, top + 1)) {
    if (f.startsWith('(idle)')) continue;
    console.log(`    ${((us / busy) * 100).toFixed(1).padStart(5)}%  ${f}`);
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const profArg = args.find((a) => a === '--cpu-prof' || a.startsWith('--cpu-prof='));
  const profile = profArg !== undefined;
  const [smallCount = 200, largeCount = 1, largeMiB = 64] = args.filter((a) => !a.startsWith('--')).map(Number);
  const emulators = (await Promise.all([startS3(), startAzure()])).filter((e) => e !== undefined);
  for (const e of emulators) Object.assign(process.env, e.env);
  const env = process.env;
  const proxyOpts = { maxRequests: Number.MAX_SAFE_INTEGER, lifetimeMs: 3 * 3600_000 };
  const s3Proxy = await FaultProxy.start({ upstream: env.S3_ENDPOINT!, ...proxyOpts });
  const azUpstream = new URL(env.AZURITE_BLOB_ENDPOINT ?? /BlobEndpoint=([^;]+)/.exec(env.AZURE_STORAGE_CONNECTION_STRING!)![1]!);
  const azProxy = await FaultProxy.start({ upstream: azUpstream.origin, ...proxyOpts });
  const azProxied = `${azProxy.url}${azUpstream.pathname}`;
  const s3Conns = connectionCounter(s3Proxy);
  const azConns = connectionCounter(azProxy);
  const run = `bench-requests-${randomUUID().slice(0, 8)}`;
  const container = env.AZURE_CONTAINER ?? 'cloudmux-test';
  const srcUrl = (endpoint: string): string => `s3://${env.S3_BUCKET}/${run}/src?endpoint=${encodeURIComponent(endpoint)}&forcePathStyle=true`;
  const azUrl = (p: string, endpoint?: string): string => `az://devstoreaccount1/${container}/${run}/${p}${endpoint ? `?endpoint=${encodeURIComponent(endpoint)}` : ''}`;
  const work = mkdtempSync(join(tmpdir(), 'cloudmux-bench-requests-'));
  const stores: BlobStore[] = [];
  try {
    const src = await openStore(srcUrl(env.S3_ENDPOINT!));
    stores.push(src);
    const specs = [
      ...Array.from({ length: smallCount }, (_, i) => ({ key: `small/${String(i % 50).padStart(2, '0')}/obj-${i}.bin`, size: 1024 + Math.floor(Math.random() * 255 * 1024) })),
      ...Array.from({ length: largeCount }, (_, i) => ({ key: `large/big-${i}.bin`, size: largeMiB * MiB })),
    ];
    await pool(specs, 16, async (s) => {
      await src.put(s.key, randomBytes(s.size));
    });
    const counts = { small: smallCount, large: largeCount };
    console.log(`dataset: ${smallCount} objects of 1-256 KiB + ${largeCount} of ${largeMiB} MiB on s3rver, each tool through logging proxies`);

    const entry = cliEntry(work);
    const profDir = profArg?.includes('=') ? resolve(profArg.slice(profArg.indexOf('=') + 1)) : join(work, 'prof');
    const childEnv = { ...env, NODE_OPTIONS: '', NODE_NO_WARNINGS: '1' };
    s3Proxy.log.length = 0;
    azProxy.log.length = 0;
    s3Conns.reset();
    azConns.reset();
    const ours = await measure(process.execPath, [...(profile ? ['--cpu-prof', '--cpu-prof-dir', profDir] : []), ...entry, 'migrate',
      srcUrl(s3Proxy.url), azUrl('cloudmux', azProxied), '--concurrency', '16', '--journal', join(work, 'journal.sqlite'), '--json'], childEnv);
    if (ours.code !== 0) throw new Error(`cloudmux migrate exited ${ours.code}: ${ours.stderr}`);
    console.log(`cloudmux migrate: ${ours.seconds.toFixed(2)} s, CPU ${ours.cpuSeconds.toFixed(1)} s`);
    report('cloudmux', 's3rver', s3Proxy.log, counts, s3Conns.count());
    report('cloudmux', 'Azurite', azProxy.log, counts, azConns.count());
    if (profile) {
      const file = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile')).sort().pop();
      if (file) summarizeProfile(join(profDir, file), join(work, 'build'));
    }

    if (spawnSync('rclone', ['version']).status === 0) {
      s3Proxy.log.length = 0;
      azProxy.log.length = 0;
      s3Conns.reset();
      azConns.reset();
      const theirs = await measure('rclone', ['copy', '--transfers', '16', '--fast-list', `src:${env.S3_BUCKET}/${run}/src`, `dst:${container}/${run}/rclone`],
        rcloneEnv(env, container, s3Proxy.url, azProxied));
      if (theirs.code !== 0) throw new Error(`rclone copy exited ${theirs.code}: ${theirs.stderr}`);
      console.log(`rclone copy --transfers 16: ${theirs.seconds.toFixed(2)} s, CPU ${theirs.cpuSeconds.toFixed(1)} s`);
      report('rclone', 's3rver', s3Proxy.log, counts, s3Conns.count());
      report('rclone', 'Azurite', azProxy.log, counts, azConns.count());
    }
  } finally {
    await Promise.allSettled([s3Proxy.close(), azProxy.close()]);
    await Promise.allSettled(stores.map(async (s) => {
      await removeAllUnder(s, '');
      await s.close();
    }));
    for (const p of ['cloudmux', 'rclone']) {
      const s = await openStore(azUrl(p)).catch(() => undefined);
      if (s) await removeAllUnder(s, '').catch(() => undefined);
    }
    rmSync(work, { recursive: true, force: true });
    await Promise.allSettled(emulators.map((e) => e.stop()));
  }
}

await main();
