/**
 * Streams a generated 1 GiB body into GCS (the project's GCS test server, started here in its own
 * process, or GCS_EMULATOR_HOST/GCS_BUCKET if set) and prints peak RSS (target < 200 MiB) and
 * throughput against the raw SDK (File#createWriteStream, resumable, in one streamed request and in
 * 8 MiB chunks). Each variant runs in its own process so its peak RSS is its own.
 *
 *   npx tsx bench/gcs-upload-rss.ts [sizeMiB]        # default 1024
 */
import { spawn, spawnSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { Storage } from '@google-cloud/storage';
import { GcsStore } from '../providers/gcs/index.js';
import { generatedStream } from '../src/testing/data.js';

const MiB = 1024 * 1024;
const CHUNK = 8 * MiB;
const RSS_LIMIT_MIB = 200;
type Variant = 'sdk-stream' | 'sdk-chunked' | 'cloudmux';

interface Result {
  variant: Variant;
  bytes: number;
  seconds: number;
  peakRssMiB: number;
  baseRssMiB: number;
}

async function child(variant: Variant, size: number): Promise<Result> {
  const apiEndpoint = process.env.GCS_EMULATOR_HOST!;
  const bucket = process.env.GCS_BUCKET!;
  const key = `bench/gcs-upload-rss/${variant}-${process.pid}`;
  let peak = 0;
  const base = process.memoryUsage().rss;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 20);
  const gen = generatedStream(size, { seed: 'bench' });
  const store = new GcsStore({ bucket, apiEndpoint, projectId: 'bench', chunkSize: CHUNK });
  const t0 = process.hrtime.bigint();
  if (variant === 'cloudmux') {
    await store.put(key, gen.stream);
  } else {
    const storage = new Storage({ apiEndpoint, projectId: 'bench', retryOptions: { autoRetry: false } });
    const file = storage.bucket(bucket).file(key);
    await pipeline(Readable.from(gen.stream), file.createWriteStream({ resumable: true, validation: 'crc32c', ...(variant === 'sdk-chunked' ? { chunkSize: CHUNK } : {}) }));
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  clearInterval(timer);
  peak = Math.max(peak, process.memoryUsage().rss);
  await store.delete(key);
  await store.close();
  return { variant, bytes: size, seconds, peakRssMiB: peak / MiB, baseRssMiB: base / MiB };
}

/** The test server in its own process, so its memory is not counted in ours. */
async function startServer(bucket: string): Promise<{ url: string; stop(): void }> {
  const main = fileURLToPath(new URL('../test/emulators/gcs/main.ts', import.meta.url));
  const proc = spawn(process.execPath, ['--import', 'tsx', main, '--bucket', bucket], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve, reject) => {
    proc.once('error', reject);
    proc.once('exit', (code) => reject(new Error(`GCS test server exited with ${code}`)));
    proc.stdout.once('data', (d: Buffer) => resolve((JSON.parse(d.toString('utf8')) as { url: string }).url));
  });
  return { url, stop: () => proc.kill('SIGTERM') };
}

async function main(): Promise<void> {
  const [mode, arg] = process.argv.slice(2);
  if (mode === '--child') {
    const [variant, size] = (arg ?? '').split(':');
    console.log(JSON.stringify(await child(variant as Variant, Number(size))));
    return;
  }
  const size = Number(mode ?? 1024) * MiB;
  let server: { url: string; stop(): void } | undefined;
  if (!process.env.GCS_EMULATOR_HOST) {
    process.env.GCS_BUCKET ??= 'cloudmux-bench';
    server = await startServer(process.env.GCS_BUCKET);
    process.env.GCS_EMULATOR_HOST = server.url;
  }
  try {
    const results: Result[] = [];
    for (const variant of ['sdk-stream', 'sdk-chunked', 'cloudmux'] as Variant[]) {
      const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', `${variant}:${size}`], { encoding: 'utf8', env: process.env, maxBuffer: 1024 * 1024 });
      if (r.status !== 0) throw new Error(`${variant} failed: ${r.stderr}`);
      const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as Result;
      results.push(res);
      console.log(`${variant.padEnd(12)} ${(res.bytes / MiB).toFixed(0)} MiB in ${res.seconds.toFixed(1)} s = ${(res.bytes / MiB / res.seconds).toFixed(1)} MiB/s, peak RSS ${res.peakRssMiB.toFixed(0)} MiB (base ${res.baseRssMiB.toFixed(0)})`);
    }
    const ours = results.find((r) => r.variant === 'cloudmux')!;
    for (const sdk of results.filter((r) => r.variant !== 'cloudmux')) {
      console.log(`throughput cloudmux / ${sdk.variant}: ${(sdk.seconds / ours.seconds).toFixed(2)}`);
    }
    console.log(`cloudmux peak RSS ${ours.peakRssMiB.toFixed(0)} MiB (limit ${RSS_LIMIT_MIB})`);
    if (ours.peakRssMiB >= RSS_LIMIT_MIB) process.exitCode = 1;
  } finally {
    server?.stop();
  }
}

await main();
