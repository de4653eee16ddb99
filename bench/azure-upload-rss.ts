/**
 * Streams a generated 1 GiB body into Azure Blob (Azurite started here, or the account
 * AZURE_STORAGE_CONNECTION_STRING / AZURE_CONTAINER name) and prints peak RSS (target < 200 MiB)
 * and throughput against the raw SDK (BlockBlobClient.uploadStream with the same block size and
 * concurrency). Each variant runs in its own process so its peak RSS is its own.
 *
 *   npx tsx bench/azure-upload-rss.ts [sizeMiB]        # default 1024
 */
import { spawnSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { BlobServiceClient } from '@azure/storage-blob';
import { createAzureStore } from '../providers/azure/index.js';
import { generatedStream } from '../src/testing/data.js';
import { startAzure } from '../test/harness/azure.js';

const MiB = 1024 * 1024;
const BLOCK = 4 * MiB;
const CONCURRENCY = 4;
type Variant = 'sdk' | 'cloudmux';

interface Result {
  variant: Variant;
  bytes: number;
  seconds: number;
  peakRssMiB: number;
  baseRssMiB: number;
}

async function child(variant: Variant, size: number): Promise<Result> {
  const connectionString = process.env.AZURE_STORAGE_CONNECTION_STRING!;
  const container = process.env.AZURE_CONTAINER ?? 'cloudmux-test';
  const key = `bench/azure-upload-rss/${variant}-${process.pid}`;
  let peak = 0;
  const base = process.memoryUsage().rss;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 20);
  const gen = generatedStream(size, { seed: 'bench' });
  const store = createAzureStore({ connectionString, container, blockSize: BLOCK, uploadConcurrency: CONCURRENCY });
  const t0 = process.hrtime.bigint();
  if (variant === 'sdk') {
    const blob = BlobServiceClient.fromConnectionString(connectionString, { retryOptions: { maxTries: 1 } }).getContainerClient(container).getBlockBlobClient(key);
    await blob.uploadStream(Readable.from(gen.stream), BLOCK, CONCURRENCY);
  } else {
    await store.put(key, gen.stream);
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  clearInterval(timer);
  peak = Math.max(peak, process.memoryUsage().rss);
  const meta = await store.head(key);
  if (meta.size !== size) throw new Error(`${variant} stored ${meta.size} bytes, expected ${size}`);
  if (variant === 'cloudmux' && meta.checksums.sha256 !== gen.sha256()) throw new Error('cloudmux stored the wrong digest');
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
  const emulator = await startAzure();
  if (emulator) Object.assign(process.env, emulator.env);
  try {
    const results: Result[] = [];
    for (const variant of ['sdk', 'cloudmux'] as Variant[]) {
      const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', `${variant}:${size}`], { env: process.env, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`${variant} failed: ${r.stderr}`);
      const line = r.stdout.trim().split('\n').pop()!;
      results.push(JSON.parse(line) as Result);
    }
    const sdk = results[0]!;
    console.log(`azure upload of ${size / MiB} MiB generated stream, block ${BLOCK / MiB} MiB x ${CONCURRENCY}, ${emulator ? 'azurite' : 'external endpoint'}`);
    for (const r of results) {
      const mibs = r.bytes / MiB / r.seconds;
      console.log(`${r.variant.padEnd(10)} ${r.seconds.toFixed(1).padStart(6)} s ${mibs.toFixed(1).padStart(7)} MiB/s  peak RSS ${r.peakRssMiB.toFixed(0)} MiB (start ${r.baseRssMiB.toFixed(0)})  throughput ratio vs sdk ${(sdk.seconds / r.seconds).toFixed(2)}`);
    }
    const cloudmux = results.find((r) => r.variant === 'cloudmux')!;
    console.log(`cloudmux peak RSS ${cloudmux.peakRssMiB.toFixed(0)} MiB: ${cloudmux.peakRssMiB < 200 ? 'within' : 'OVER'} the 200 MiB target`);
    if (cloudmux.peakRssMiB >= 200) process.exitCode = 1;
  } finally {
    await emulator?.stop();
  }
}

await main();
