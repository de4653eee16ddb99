/**
 * Router overhead: `router.get` (catalog lookup, replica choice, digest check, health
 * bookkeeping) vs the same driver's `get`, and `router.put` (write lease, fenced write, commit
 * with the outbox in one SQLite transaction) vs the driver's `put`, on 1 KiB and 1 MiB objects,
 * bodies drained. Providers: the memory store, and s3rver (own instance) when it can start.
 * Target for reads: < 5% added for 1 MiB.
 */
import { MemoryStore } from '../providers/memory/store.js';
import { collect } from '../src/core/body.js';
import type { BlobStore } from '../src/core/types.js';
import { Router } from '../src/router/router.js';
import { SqliteStateStore } from '../src/state/sqlite.js';
import { pseudoRandomBytes } from '../src/testing/data.js';
import { tempDir } from '../test/harness/emulator.js';
import { ownS3rver } from '../test/harness/restartable.js';

async function time(fn: () => Promise<unknown>, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
  }
  return out;
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function bench(label: string, direct: BlobStore, iterations: Record<string, number>): Promise<void> {
  const dir = await tempDir('bench-router');
  const router = new Router({
    providers: [{ name: 'p', store: direct }], state: new SqliteStateStore({ path: `${dir.path}/s.db`, durability: 'normal' }),
    health: { probeIntervalMs: 0 }, closeResources: false,
  });
  for (const [size, n] of Object.entries(iterations)) {
    const bytes = size === '1KiB' ? 1024 : 1024 * 1024;
    const key = `bench/${size}`;
    await router.put(key, pseudoRandomBytes(bytes, size));
    const viaDirect = async (): Promise<unknown> => collect((await direct.get(key)).body);
    const viaRouter = async (): Promise<unknown> => collect((await router.get(key)).body);
    await time(viaDirect, 20);
    await time(viaRouter, 20);
    // Interleaved rounds so drift (GC, other load on the machine) hits both sides alike.
    const d: number[] = [];
    const r: number[] = [];
    for (let round = 0; round < 5; round++) {
      d.push(...(await time(viaDirect, n / 5)));
      r.push(...(await time(viaRouter, n / 5)));
    }
    const md = median(d);
    const mr = median(r);
    console.log(`${label.padEnd(8)} get ${size.padEnd(5)} direct median ${md.toFixed(3)} ms  router median ${mr.toFixed(3)} ms  ratio ${(mr / md).toFixed(3)}  added ${((mr / md - 1) * 100).toFixed(1)}%  (n=${n})`);
    // Puts: overwrites of one key (the catalog knows it, so the router's write is fenced on its etag).
    const body = pseudoRandomBytes(bytes, `${size}-put`);
    const putDirect = async (): Promise<unknown> => direct.put(`${key}-direct`, body);
    const putRouter = async (): Promise<unknown> => router.put(key, body);
    const pn = Math.max(5, Math.floor(n / 5));
    await time(putDirect, 5);
    await time(putRouter, 5);
    const pd: number[] = [];
    const pr: number[] = [];
    for (let round = 0; round < 5; round++) {
      pd.push(...(await time(putDirect, pn / 5)));
      pr.push(...(await time(putRouter, pn / 5)));
    }
    const mpd = median(pd);
    const mpr = median(pr);
    console.log(`${label.padEnd(8)} put ${size.padEnd(5)} direct median ${mpd.toFixed(3)} ms  router median ${mpr.toFixed(3)} ms  ratio ${(mpr / mpd).toFixed(3)}  added ${(mpr - mpd).toFixed(3)} ms  (n=${pn})`);
  }
  await router.close();
  await dir.remove();
}

await bench('memory', new MemoryStore(), { '1KiB': 5000, '1MiB': 500 });
let s3: Awaited<ReturnType<typeof ownS3rver>> | undefined;
try {
  s3 = await ownS3rver();
} catch (e) {
  console.log(`s3rver: skipped (${(e as Error).message.split('\n')[0]})`);
}
if (s3) {
  const store = s3.store();
  try {
    await bench('s3rver', store, { '1KiB': 300, '1MiB': 100 });
  } finally {
    await store.close();
    await s3.dispose();
  }
}
