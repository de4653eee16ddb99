/**
 * `npm run bench bwlimit-timetable`: a `--bwlimit` timetable switching at real minute boundaries.
 * Uploads run without pause through a RateLimitStore whose write bucket follows
 * "HH:M1,2M HH:M2,500K HH:M3,off" (M1 = the next minute), and a sink below it counts the bytes that
 * pass, by the minute they pass in. Prints the rate achieved in each window against the limit in
 * force (the issue asks for ±10%), and the load average. Waits for the next minute (≤ 60 s), then
 * 60 s at 2 MiB/s, 60 s at 500 KiB/s and 10 s of the `off` window (no limit: it only shows the
 * limit is lifted, and would otherwise spin a core for a minute). Exit 1 when a limited window is off by more than 10%.
 * Measured (load 12 → 6): 2M window 2043.7 KiB/s (−0.21%), 500K window 493.9 KiB/s (−1.23%).
 */
import { loadavg } from 'node:os';
import { Readable } from 'node:stream';
import { MemoryStore } from '../providers/memory/index.js';
import type { Body, ObjectMeta, PutOptions } from '../src/core/index.js';
import { BandwidthTimetable, ForwardingStore, RateLimitStore, ScheduledTokenBucket } from '../src/layers/index.js';

const CALLERS = 4;
const OBJECT = 1024 * 1024;
const CHUNK = 64 * 1024;
const OFF_MEASURE_MS = 10_000;

/** Counts the bytes that reach it per window (the put's body is consumed and dropped). */
class Sink extends ForwardingStore {
  protected readonly layerName = 'Sink';
  readonly bytes: number[] = [0, 0, 0];
  constructor(private readonly starts: number[]) {
    super(new MemoryStore());
  }

  override async put(key: string, body: Body, opts?: PutOptions): Promise<ObjectMeta> {
    for await (const c of body as AsyncIterable<Uint8Array>) {
      const now = Date.now();
      let w = -1;
      for (let i = 0; i < this.starts.length; i++) if (now >= this.starts[i]!) w = i;
      if (w >= 0 && w < this.bytes.length) this.bytes[w]! += c.byteLength;
    }
    return this.inner.put(key, '', opts);
  }
}

const hhmm = (d: Date): string => `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
const load = (): string => loadavg().map((x) => x.toFixed(2)).join(' ');

const now = new Date();
const first = new Date(now);
first.setSeconds(0, 0);
first.setMinutes(first.getMinutes() + 1);
if (first.getHours() === 23 && first.getMinutes() >= 57) {
  console.error('too close to midnight for a same-day timetable; run again after 00:00');
  process.exit(2);
}
const starts = [0, 1, 2].map((i) => first.getTime() + i * 60_000);
const limits = [2 * 1024 * 1024, 500 * 1024, undefined];
const spec = `${hhmm(new Date(starts[0]!))},2M ${hhmm(new Date(starts[1]!))},500K ${hhmm(new Date(starts[2]!))},off`;
const table = BandwidthTimetable.parse(spec);
const sink = new Sink(starts);
const store = new RateLimitStore(sink, { writeBytesPerSec: new ScheduledTokenBucket(table, 'up') });
const end = starts[2]! + OFF_MEASURE_MS;
console.log(`bwlimit "${spec}"; ${CALLERS} uploads of ${OBJECT / 1024} KiB streams at a time; load ${load()}; starting at ${hhmm(first)} (waiting ${Math.round((first.getTime() - Date.now()) / 1000)} s)`);

// Before the first entry the day's last one (off) holds: start uploading at the first window, not before.
await new Promise((r) => setTimeout(r, first.getTime() - Date.now()));
const payload = Buffer.alloc(CHUNK, 1);
await Promise.all(Array.from({ length: CALLERS }, async (_, c) => {
  let n = 0;
  while (Date.now() < end) {
    await store.put(`c${c}-${n++ % 4}`, Readable.from(Array.from({ length: OBJECT / CHUNK }, () => payload)));
  }
}));

let ok = true;
for (let i = 0; i < 3; i++) {
  const ms = i < 2 ? 60_000 : OFF_MEASURE_MS;
  const rate = sink.bytes[i]! / (ms / 1000);
  const target = limits[i];
  if (target === undefined) {
    console.log(`window ${i + 1} ${hhmm(new Date(starts[i]!))} off    achieved ${(rate / 1024).toFixed(0).padStart(8)} KiB/s (no limit; first ${ms / 1000} s)`);
    continue;
  }
  const err = (rate - target) / target;
  const within = Math.abs(err) <= 0.1;
  ok &&= within;
  console.log(`window ${i + 1} ${hhmm(new Date(starts[i]!))} ${String(target / 1024).padStart(4)}K  achieved ${(rate / 1024).toFixed(1).padStart(8)} KiB/s  error ${(err * 100).toFixed(2).padStart(6)}%  ${within ? 'ok' : 'OUT OF BOUNDS'}`);
}
console.log(`load at the end ${load()}`);
process.exit(ok ? 0 : 1);
