/**
 * Streams a generated 1 GiB body into S3 (s3rver started here, or S3_ENDPOINT/S3_BUCKET if set)
 * and prints peak RSS (target < 200 MiB) and throughput against the raw SDK (lib-storage Upload
 * with the same part size and concurrency). Each variant runs in its own process so its peak RSS
 * is its own.
 *
 *   npx tsx bench/s3-upload-rss.ts [sizeMiB]        # default 1024
 */
import { spawnSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { S3Store } from '../providers/s3/index.js';
import { generatedStream } from '../src/testing/data.js';
import { emulatorOptions, startS3 } from '../test/harness/s3.js';

const MiB = 1024 * 1024;
const PART = 8 * MiB;
const QUEUE = 4;
type Variant = 'sdk' | 'cloudmux' | 'cloudmux-expect';

interface Result {
  variant: Variant;
  bytes: number;
  seconds: number;
  peakRssMiB: number;
  baseRssMiB: number;
}

async function child(variant: Variant, size: number): Promise<Result> {
  const o = emulatorOptions({ partSize: PART, queueSize: QUEUE });
  const key = `bench/s3-upload-rss/${variant}-${process.pid}`;
  let peak = 0;
  const base = process.memoryUsage().rss;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 20);
  const gen = generatedStream(size, { seed: 'bench' });
  const store = new S3Store(o);
  const t0 = process.hrtime.bigint();
  if (variant === 'sdk') {
    const client = new S3Client({ region: o.region, endpoint: o.endpoint, forcePathStyle: true, maxAttempts: 1, requestChecksumCalculation: 'WHEN_REQUIRED' });
    await new Upload({ client, params: { Bucket: o.bucket, Key: key, Body: Readable.from(gen.stream) }, partSize: PART, queueSize: QUEUE }).done();
    client.destroy();
  } else if (variant === 'cloudmux') {
    await store.put(key, gen.stream);
  } else {
    // The copier's path: the digest is known up front, so no copy in place after the upload.
    const sha = generatedStream(size, { seed: 'bench' });
    for await (const _ of sha.stream) { /* hash only */ }
    const t = process.hrtime.bigint();
    await store.put(key, gen.stream, { expect: { sha256: sha.sha256() } });
    clearInterval(timer);
    const seconds = Number(process.hrtime.bigint() - t) / 1e9;
    await store.delete(key);
    await store.close();
    return { variant, bytes: size, seconds, peakRssMiB: peak / MiB, baseRssMiB: base / MiB };
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  clearInterval(timer);
  peak = Math.max(peak, process.memoryUsage().rss);
  await store.delete(key);
  await store.close();
  return { variant, bytes: size, seconds, peakRssMiB: peak / MiB, baseRssMiB: base / MiB };
}

async function main(): Promise<void> {
  const [mode, arg] = process.argv.slice(2);
  if (mode === '--child') {
    const [variant, size] = (arg ?? '').split(':');
    console.log(JSON.stringify(await child(variant as Variant, Number(size))));
    return;
  }
  const size = Number(mode ?? 1024) * MiB;
  const emulator = await startS3();
  if (emulator) Object.assign(process.env, emulator.env);
  try {
    const results: Result[] = [];
    for (const variant of ['sdk', 'cloudmux', 'cloudmux-expect'] as Variant[]) {
      const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', `${variant}:${size}`], { env: process.env, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`${variant} failed: ${r.stderr}`);
      const line = r.stdout.trim().split('\n').pop()!;
      results.push(JSON.parse(line) as Result);
    }
    const sdk = results[0]!;
    console.log(`s3 upload of ${size / MiB} MiB generated stream, part ${PART / MiB} MiB x ${QUEUE}, endpoint ${process.env.S3_ENDPOINT} (${emulator ? 's3rver' : 'external'})`);
    for (const r of results) {
      const mibs = r.bytes / MiB / r.seconds;
      console.log(`${r.variant.padEnd(16)} ${r.seconds.toFixed(1).padStart(6)} s ${mibs.toFixed(1).padStart(7)} MiB/s  peak RSS ${r.peakRssMiB.toFixed(0)} MiB (start ${r.baseRssMiB.toFixed(0)})  throughput ratio vs sdk ${(sdk.seconds / r.seconds).toFixed(2)}`);
    }
    const worst = Math.max(...results.filter((r) => r.variant !== 'sdk').map((r) => r.peakRssMiB));
    console.log(`cloudmux peak RSS ${worst.toFixed(0)} MiB: ${worst < 200 ? 'within' : 'OVER'} the 200 MiB target`);
  } finally {
    await emulator?.stop();
  }
}

await main();
