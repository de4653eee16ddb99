/**
 * CPU this process spends per small GET (and per small PUT) through a driver, against the local
 * emulators: where a migration of many small objects spends its own CPU (not the emulators').
 *
 *   npx tsx bench/get-cpu.ts [s3|azure|gcs] [count=2000] [sizeKiB=64] [--passes=N] [--sdk-gets]
 *
 * The first pass of gets runs on code V8 has not optimised yet (the puts used other paths), so it
 * costs more per GET than later passes; `--passes=N` (default 2) repeats the gets to show the
 * steady cost a long migration pays. `--sdk-gets` (s3) reads through the AWS SDK instead of the
 * driver's own signed requests (fastReads=false), for comparison.
 */
import { randomBytes } from 'node:crypto';
import { startAzure } from '../test/harness/azure.js';
import { startGcs } from '../test/harness/gcs.js';
import { startS3 } from '../test/harness/s3.js';
import { openStore } from '../src/registry.js';
import { pool } from './migrate.js';

const flags = process.argv.slice(2).filter((a) => a.startsWith('--'));
const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const which = args[0] ?? 's3';
const count = Number(args[1] ?? 2000);
const size = Number(args[2] ?? 64) * 1024;
const passes = Number(/^--passes=(\d+)$/.exec(flags.find((f) => f.startsWith('--passes=')) ?? '')?.[1] ?? 2);
const sdkGets = flags.includes('--sdk-gets');
const emu = which === 's3' ? await startS3() : which === 'azure' ? await startAzure() : await startGcs();
if (!emu) throw new Error(`no ${which} emulator`);
Object.assign(process.env, emu.env);
const env = process.env;
const url = which === 's3'
  ? `s3://${env.S3_BUCKET}/get-cpu?endpoint=${encodeURIComponent(env.S3_ENDPOINT!)}&forcePathStyle=true${sdkGets ? '&fastReads=false' : ''}`
  : which === 'azure' ? `az://devstoreaccount1/${env.AZURE_CONTAINER ?? 'cloudmux-test'}/get-cpu` : `gs://${env.GCS_BUCKET}/get-cpu`;
const store = await openStore(url);
const body = randomBytes(size);
const keys = Array.from({ length: 50 }, (_, i) => `k${i}`);
const cpu = (): number => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const label = `${which}${sdkGets && which === 's3' ? ' (sdk gets)' : ''}`;
try {
  await store.put('warm', body);
  let c0 = cpu();
  let t0 = Date.now();
  await pool(Array.from({ length: count }, (_, i) => i), 16, async (i) => {
    await store.put(keys[i % keys.length]!, body);
  });
  console.log(`${label}: ${count} puts of ${size / 1024} KiB: ${((cpu() - c0) / count).toFixed(3)} ms CPU each (${Date.now() - t0} ms wall)`);
  for (let pass = 1; pass <= passes; pass++) {
    c0 = cpu();
    t0 = Date.now();
    await pool(Array.from({ length: count }, (_, i) => i), 16, async (i) => {
      const got = await store.get(keys[i % keys.length]!);
      for await (const _ of got.body) { /* drain */ }
    });
    const note = passes > 1 ? ` [pass ${pass}${pass === 1 ? ', cold' : ''}]` : '';
    console.log(`${label}: ${count} gets of ${size / 1024} KiB: ${((cpu() - c0) / count).toFixed(3)} ms CPU each (${Date.now() - t0} ms wall)${note}`);
  }
} finally {
  for (const k of [...keys, 'warm']) await store.delete(k).catch(() => undefined);
  await store.close();
  await emu.stop();
}
