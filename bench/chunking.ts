/**
 * Content-defined chunking: MB/s per CPU second of cloudmux's chunker (src/layers/chunked/chunker.ts)
 * against baselines run in the same process on the same bytes —
 *   - a plain JS byte loop (the ceiling for any per-byte JS scan: one load + one add per byte),
 *   - a naive gear chunker (every byte hashed, one mask, `>>> 0` uint32 arithmetic, Array gear table),
 * and chunk-id hashing: SHA-256 (node:crypto; OpenSSL uses SHA-NI where the CPU has it) against the
 * other digests node:crypto has (no BLAKE3 / xxHash is installed here), printed as ratios.
 * Target: chunker ≥ 1000 MB/s per core.
 *
 *   npm run bench chunking          (or: node --import tsx bench/chunking.ts [MiB])
 */
import { createHash, randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { Chunker, GEAR, cutPoints } from '../src/layers/chunked/chunker.js';

const MiB = 1024 * 1024;
const size = (Number(process.argv[2]) || 64) * MiB;
const data = randomBytes(size);

/** Fastest CPU seconds (user + system) of `rounds` calls: CPU time is what a loaded box disturbs least. */
function cpu(fn: () => unknown, rounds = 5): number {
  fn();
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    const t = process.cpuUsage();
    fn();
    const u = process.cpuUsage(t);
    best = Math.min(best, (u.user + u.system) / 1e6);
  }
  return best;
}
const mbps = (bytes: number, s: number): number => bytes / s / 1e6;

function byteLoop(): number {
  let s = 0;
  for (let i = 0; i < data.length; i++) s = (s + data[i]!) | 0;
  return s;
}

const GEAR_ARRAY = Array.from(GEAR);
function naiveGear(): number {
  // Target 1 MiB: 20 mask bits; every byte hashed; cuts at min 256 KiB / max 4 MiB checked per byte.
  const mask = 0xfffff000;
  let h = 0;
  let n = 0;
  let cuts = 0;
  for (let i = 0; i < data.length; i++) {
    h = ((h << 1) + GEAR_ARRAY[data[i]!]!) >>> 0;
    n++;
    if ((n >= 256 * 1024 && (h & mask) >>> 0 === 0) || n >= 4 * MiB) {
      cuts++;
      n = 0;
      h = 0;
    }
  }
  return cuts;
}

function streamed(pieceSize: number): number {
  const c = new Chunker();
  let count = 0;
  for (let at = 0; at < data.length; at += pieceSize) count += c.push(data.subarray(at, at + pieceSize)).length;
  return count + (c.pendingBytes > 0 ? 1 : 0);
}

console.log(`chunker over ${size / MiB} MiB of random bytes, defaults min 256 KiB / target 1 MiB / max 4 MiB; load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
const cuts = cutPoints(data);
console.log(`chunks: ${cuts.length}, mean ${(size / cuts.length / MiB).toFixed(2)} MiB`);

const rows: [string, number][] = [];
const loopS = cpu(byteLoop);
rows.push(['plain JS byte loop (ceiling)', loopS]);
const naiveS = cpu(naiveGear);
rows.push(['naive gear (all bytes, uint32, Array)', naiveS]);
const oneShotS = cpu(() => cutPoints(data));
rows.push(['cloudmux chunker, one buffer', oneShotS]);
const streamS = cpu(() => streamed(64 * 1024));
rows.push(['cloudmux chunker, 64 KiB pieces', streamS]);
for (const [name, s] of rows) {
  console.log(`${name.padEnd(40)} ${mbps(size, s).toFixed(0).padStart(6)} MB/s   ratio to naive ${(naiveS / s).toFixed(2)}`);
}
const best = mbps(size, Math.min(oneShotS, streamS));
console.log(`chunker ${best.toFixed(0)} MB/s per core; target >= 1000: ${best >= 1000 ? 'met' : `NOT met (${(best / 1000).toFixed(2)} of it)`}`);

console.log('\nchunk-id digests over 1 MiB chunks (node:crypto), MB/s per CPU second; ratio = digest / sha256');
const chunk = data.subarray(0, MiB);
const hashOnce = (alg: string) => (): void => {
  for (let i = 0; i < 32; i++) createHash(alg).update(chunk).digest();
};
const shaS = cpu(hashOnce('sha256'));
for (const alg of ['sha256', 'sha1', 'sha512-256', 'blake2b512', 'blake2s256', 'md5']) {
  const s = alg === 'sha256' ? shaS : cpu(hashOnce(alg));
  console.log(`${alg.padEnd(12)} ${mbps(32 * MiB, s).toFixed(0).padStart(6)} MB/s   ratio ${(shaS / s).toFixed(2)}`);
}
