/**
 * Streams a generated 1 GiB body into GCS (the project's GCS test server, started here in its own
 * process, or GCS_EMULATOR_HOST/GCS_BUCKET if set) and prints peak RSS (target < 200 MiB) and
 * throughput against the raw SDK (File#createWriteStream, resumable, in one streamed request and in
 * 8 MiB chunks). Each variant runs in its own process so its peak RSS is its own.
 *
 *   npx tsx bench/gcs-upload-rss.ts [sizeMiB]        # default 1024
 */
import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { Storage } from '@google-cloud/storage';
import { GcsStore } from '../providers/gcs/index.js';
import { generatedStream } from '../src/testing/data.js';
import { MiB, RSS_TARGET_MIB, measureInChild, runVariants, uploadRssMain } from './lib-upload-rss.js';

const CHUNK = 8 * MiB;
const VARIANTS = ['sdk-stream', 'sdk-chunked', 'cloudmux'] as const;
type Variant = (typeof VARIANTS)[number];

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

await uploadRssMain<Variant>({
  child: (variant, size) =>
    measureInChild(size, async (timed) => {
      const apiEndpoint = process.env.GCS_EMULATOR_HOST!;
      const bucket = process.env.GCS_BUCKET!;
      const key = `bench/gcs-upload-rss/${variant}-${process.pid}`;
      const gen = generatedStream(size, { seed: 'bench' });
      const store = new GcsStore({ bucket, apiEndpoint, projectId: 'bench', chunkSize: CHUNK });
      if (variant === 'cloudmux') {
        await timed(() => store.put(key, gen.stream));
      } else {
        await timed(async () => {
          const storage = new Storage({ apiEndpoint, projectId: 'bench', retryOptions: { autoRetry: false } });
          const file = storage.bucket(bucket).file(key);
          await pipeline(Readable.from(gen.stream), file.createWriteStream({ resumable: true, validation: 'crc32c', ...(variant === 'sdk-chunked' ? { chunkSize: CHUNK } : {}) }));
        });
      }
      await store.delete(key);
      await store.close();
    }),
  async parent(size) {
    let server: { url: string; stop(): void } | undefined;
    if (!process.env.GCS_EMULATOR_HOST) {
      process.env.GCS_BUCKET ??= 'cloudmux-bench';
      server = await startServer(process.env.GCS_BUCKET);
      process.env.GCS_EMULATOR_HOST = server.url;
    }
    try {
      // One line per variant as it finishes, so a long run shows progress.
      const results = runVariants(import.meta.url, VARIANTS, size, (res) => {
        console.log(`${res.variant.padEnd(12)} ${(res.bytes / MiB).toFixed(0)} MiB in ${res.seconds.toFixed(1)} s = ${(res.bytes / MiB / res.seconds).toFixed(1)} MiB/s, peak RSS ${res.peakRssMiB.toFixed(0)} MiB (base ${res.baseRssMiB.toFixed(0)})`);
      });
      const ours = results.find((r) => r.variant === 'cloudmux')!;
      for (const sdk of results.filter((r) => r.variant !== 'cloudmux')) {
        console.log(`throughput cloudmux / ${sdk.variant}: ${(sdk.seconds / ours.seconds).toFixed(2)}`);
      }
      console.log(`cloudmux peak RSS ${ours.peakRssMiB.toFixed(0)} MiB (limit ${RSS_TARGET_MIB})`);
      if (ours.peakRssMiB >= RSS_TARGET_MIB) process.exitCode = 1;
    } finally {
      server?.stop();
    }
  },
});
