/**
 * Rate limits over a 5 s window: ops/s, download bytes/s and upload bytes/s, each with several
 * concurrent callers sharing one RateLimitStore over the memory store. Prints measured vs target
 * and fails (exit 1) when a rate is off by more than 10%.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { MemoryStore } from '../providers/memory/index.js';
import { RateLimitStore } from '../src/layers/index.js';

const WINDOW_MS = 5000;
const CALLERS = 8;

async function forWindow(work: () => Promise<number>): Promise<{ units: number; ms: number }> {
  const start = performance.now();
  let units = 0;
  await Promise.all(Array.from({ length: CALLERS }, async () => {
    while (performance.now() - start < WINDOW_MS) {
      const n = await work(); // not `units += await work()`: that reads units before the await
      units += n;
    }
  }));
  return { units, ms: performance.now() - start };
}

function report(name: string, target: number, measured: { units: number; ms: number }, unit: string): boolean {
  const rate = measured.units / (measured.ms / 1000);
  const off = (rate - target) / target;
  const ok = Math.abs(off) <= 0.1;
  console.log(`${name.padEnd(14)} target ${target.toLocaleString()} ${unit}/s  measured ${Math.round(rate).toLocaleString()} ${unit}/s  (${(off * 100).toFixed(1)}%, ${(measured.ms / 1000).toFixed(2)} s)  ${ok ? 'ok' : 'OUT OF BOUNDS'}`);
  return ok;
}

const memory = new MemoryStore();
const blob = randomBytes(256 * 1024);
await memory.put('blob', blob);
let ok = true;

{
  const target = 200;
  const store = new RateLimitStore(memory, { opsPerSec: target });
  ok = report('ops', target, await forWindow(async () => (await store.head('blob'), 1)), 'op') && ok;
}
{
  const target = 8 * 1024 * 1024;
  const store = new RateLimitStore(memory, { readBytesPerSec: target });
  ok = report('download', target, await forWindow(async () => {
    let n = 0;
    for await (const c of (await store.get('blob')).body) n += (c as Buffer).byteLength;
    return n;
  }), 'B') && ok;
}
{
  const target = 8 * 1024 * 1024;
  const store = new RateLimitStore(memory, { writeBytesPerSec: target });
  ok = report('upload stream', target, await forWindow(async () => {
    await store.put(`up-${Math.random()}`, Readable.from([blob.subarray(0, 128 * 1024), blob.subarray(128 * 1024)]));
    return blob.byteLength;
  }), 'B') && ok;
}
{
  const target = 8 * 1024 * 1024;
  const store = new RateLimitStore(memory, { bytesPerSec: target });
  ok = report('both ways', target, await forWindow(async () => {
    await store.put('both', blob);
    let n = blob.byteLength;
    for await (const c of (await store.get('both')).body) n += (c as Buffer).byteLength;
    return n;
  }), 'B') && ok;
}
process.exit(ok ? 0 : 1);
