/**
 * Streams a generated 1 GiB body into Azure Blob (Azurite started here, or the account
 * AZURE_STORAGE_CONNECTION_STRING / AZURE_CONTAINER name) and prints peak RSS (target < 200 MiB)
 * and throughput against the raw SDK (BlockBlobClient.uploadStream with the same block size and
 * concurrency). Each variant runs in its own process so its peak RSS is its own.
 *
 *   npx tsx bench/azure-upload-rss.ts [sizeMiB]        # default 1024
 */
import { Readable } from 'node:stream';
import { BlobServiceClient } from '@azure/storage-blob';
import { createAzureStore } from '../providers/azure/index.js';
import { generatedStream } from '../src/testing/data.js';
import { startAzure } from '../test/harness/azure.js';
import { MiB, measureInChild, printUploadTable, runVariants, uploadRssMain } from './lib-upload-rss.js';

const BLOCK = 4 * MiB;
const CONCURRENCY = 4;
const VARIANTS = ['sdk', 'cloudmux'] as const;
type Variant = (typeof VARIANTS)[number];

await uploadRssMain<Variant>({
  child: (variant, size) =>
    measureInChild(size, async (timed) => {
      const connectionString = process.env.AZURE_STORAGE_CONNECTION_STRING!;
      const container = process.env.AZURE_CONTAINER ?? 'cloudmux-test';
      const key = `bench/azure-upload-rss/${variant}-${process.pid}`;
      const gen = generatedStream(size, { seed: 'bench' });
      const store = createAzureStore({ connectionString, container, blockSize: BLOCK, uploadConcurrency: CONCURRENCY });
      if (variant === 'sdk') {
        await timed(() => {
          const blob = BlobServiceClient.fromConnectionString(connectionString, { retryOptions: { maxTries: 1 } }).getContainerClient(container).getBlockBlobClient(key);
          return blob.uploadStream(Readable.from(gen.stream), BLOCK, CONCURRENCY);
        });
      } else {
        await timed(() => store.put(key, gen.stream));
      }
      const meta = await store.head(key);
      if (meta.size !== size) throw new Error(`${variant} stored ${meta.size} bytes, expected ${size}`);
      if (variant === 'cloudmux' && meta.checksums.sha256 !== gen.sha256()) throw new Error('cloudmux stored the wrong digest');
      await store.delete(key);
      await store.close();
    }),
  async parent(size) {
    const emulator = await startAzure();
    if (emulator) Object.assign(process.env, emulator.env);
    try {
      const results = runVariants(import.meta.url, VARIANTS, size);
      const within = printUploadTable(`azure upload of ${size / MiB} MiB generated stream, block ${BLOCK / MiB} MiB x ${CONCURRENCY}, ${emulator ? 'azurite' : 'external endpoint'}`, results, 'sdk', { nameWidth: 10 });
      if (!within) process.exitCode = 1;
    } finally {
      await emulator?.stop();
    }
  },
});
