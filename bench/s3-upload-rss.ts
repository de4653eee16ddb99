/**
 * Streams a generated 1 GiB body into S3 (s3rver started here, or S3_ENDPOINT/S3_BUCKET if set)
 * and prints peak RSS (target < 200 MiB) and throughput against the raw SDK (lib-storage Upload
 * with the same part size and concurrency). Each variant runs in its own process so its peak RSS
 * is its own.
 *
 *   npx tsx bench/s3-upload-rss.ts [sizeMiB]        # default 1024
 */
import { Readable } from 'node:stream';
import { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { S3Store } from '../providers/s3/index.js';
import { generatedStream } from '../src/testing/data.js';
import { emulatorOptions, startS3 } from '../test/harness/s3.js';
import { MiB, measureInChild, printUploadTable, runVariants, uploadRssMain } from './lib-upload-rss.js';

const PART = 8 * MiB;
const QUEUE = 4;
const VARIANTS = ['sdk', 'cloudmux', 'cloudmux-expect'] as const;
type Variant = (typeof VARIANTS)[number];

await uploadRssMain<Variant>({
  child: (variant, size) =>
    measureInChild(size, async (timed) => {
      const o = emulatorOptions({ partSize: PART, queueSize: QUEUE });
      const key = `bench/s3-upload-rss/${variant}-${process.pid}`;
      const gen = generatedStream(size, { seed: 'bench' });
      const store = new S3Store(o);
      if (variant === 'sdk') {
        await timed(async () => {
          const client = new S3Client({ region: o.region, endpoint: o.endpoint, forcePathStyle: true, maxAttempts: 1, requestChecksumCalculation: 'WHEN_REQUIRED' });
          await new Upload({ client, params: { Bucket: o.bucket, Key: key, Body: Readable.from(gen.stream) }, partSize: PART, queueSize: QUEUE }).done();
          client.destroy();
        });
      } else if (variant === 'cloudmux') {
        await timed(() => store.put(key, gen.stream));
      } else {
        // The copier's path: the digest is known up front, so no copy in place after the upload.
        const sha = generatedStream(size, { seed: 'bench' });
        for await (const _ of sha.stream) { /* hash only */ }
        await timed(() => store.put(key, gen.stream, { expect: { sha256: sha.sha256() } }));
      }
      await store.delete(key);
      await store.close();
    }),
  async parent(size) {
    const emulator = await startS3();
    if (emulator) Object.assign(process.env, emulator.env);
    try {
      const results = runVariants(import.meta.url, VARIANTS, size);
      printUploadTable(`s3 upload of ${size / MiB} MiB generated stream, part ${PART / MiB} MiB x ${QUEUE}, endpoint ${process.env.S3_ENDPOINT} (${emulator ? 's3rver' : 'external'})`, results, 'sdk');
    } finally {
      await emulator?.stop();
    }
  },
});
