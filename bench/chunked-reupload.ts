/**
 * Delta transfer: re-upload of a file with 0.1% of its bytes changed (in 8 places), through a
 * ChunkedStore (default chunk sizes) against a plain re-upload of the same bytes to the same
 * backend, in one run: wall time of each, the ratio (plain / chunked; issue 20's target is ≥ 20×
 * on the emulators), and bytes sent to the backend by each. The chunked re-upload uses a fresh
 * ChunkedStore, so it includes listing the chunk prefix (what a new process pays).
 * Backends: fs (a temp dir) and the S3 emulator (s3rver, started here unless S3_ENDPOINT is set);
 * `link` is a modelled WAN link: the fs store behind a RateLimitStore pacing uploads at `--link=`
 * Mbit/s (default 100), each put timed until the link has carried its bytes. It models bandwidth
 * only (no latency, no provider), so it shows what the byte ratio buys; it is not an emulator figure.
 * The chunked side still reads every byte, cuts chunks (≈ 1 GB/s, on the calling thread) and
 * SHA-256es each chunk (its id) and the whole (both on a worker): on loopback emulators the time
 * ratio is bounded by that CPU work on two cores, not by the bytes sent; the `floor` line measures
 * it here (128 MiB: cutting 0.14 s CPU, whole 0.07 s, ids 0.08 s → ≥ 0.14 s on 2 cores).
 *
 *   npm run bench chunked-reupload      (or: node --import tsx bench/chunked-reupload.ts [MiB=128] [fs|s3|link…]
 *                                        [--link=Mbit/s] [--cpu-prof=FILE: profile of the chunked re-upload only])
 */
import { createCipheriv, createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsStore } from '../providers/fs/index.js';
import { S3Store } from '../providers/s3/index.js';
import { bodyChunks } from '../src/core/body.js';
import type { BlobStore, Body, ObjectMeta, PutOptions } from '../src/core/types.js';
import { ChunkedStore, cutPoints } from '../src/layers/chunked/index.js';
import { ForwardingStore } from '../src/layers/forwarding-store.js';
import { RateLimitStore } from '../src/layers/rate-limit.js';
import { TokenBucket } from '../src/layers/token-bucket.js';
import { startS3, emulatorOptions } from '../test/harness/s3.js';

const MiB = 1024 * 1024;
const args = process.argv.slice(2);
const size = (Number(args.find((a) => /^\d+$/.test(a))) || 128) * MiB;
const flag = (name: string): string | undefined => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const linkMbit = Number(flag('link') ?? 100);
const cpuProf = flag('cpu-prof');
const wanted = args.filter((a) => !/^\d+$/.test(a) && !a.startsWith('--'));
const backends = wanted.length ? wanted : ['fs', 's3', 'link'];

/** Counts bytes handed to the store below. */
class Counting extends ForwardingStore {
  protected readonly layerName = 'Counting';
  bytes = 0;
  override async put(key: string, body: Body, opts?: PutOptions): Promise<ObjectMeta> {
    if (typeof body === 'string' || body instanceof Uint8Array) {
      this.bytes += typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
      return this.inner.put(key, body, opts);
    }
    const count = (n: number): void => {
      this.bytes += n;
    };
    async function* counted(): AsyncGenerator<Buffer> {
      for await (const c of bodyChunks(body)) {
        count(c.byteLength);
        yield c;
      }
    }
    return this.inner.put(key, counted(), opts);
  }
}

function bytes(n: number, seed: string): Buffer {
  const c = createCipheriv('aes-256-ctr', createHash('sha256').update(seed).digest(), Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(n)), c.final()]);
}

/** Wall seconds of `fn`, and CPU seconds of this process meanwhile (every thread: the worker and thread pool too). */
async function timed(fn: () => Promise<unknown>): Promise<{ s: number; cpu: number }> {
  const t = performance.now();
  const c = process.cpuUsage();
  await fn();
  const u = process.cpuUsage(c);
  return { s: (performance.now() - t) / 1000, cpu: (u.user + u.system) / 1e6 };
}

/** Profiles `fn` (this thread only) into `cpuProf` when asked. */
async function profiled<T>(fn: () => Promise<T>): Promise<T> {
  if (!cpuProf) return fn();
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  try {
    return await fn();
  } finally {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(cpuProf, JSON.stringify(profile));
    session.disconnect();
  }
}

/** `link`: the bucket pacing the backend's uploads; a put is timed until the bucket has paid off what it took. */
async function run(name: string, open: () => BlobStore, link?: TokenBucket): Promise<void> {
  const v1 = bytes(size, 'v1');
  const v2 = Buffer.from(v1);
  const patch = Math.floor(size / 1000 / 8);
  for (let i = 0; i < 8; i++) bytes(patch, `edit${i}`).copy(v2, Math.floor((size / 8) * i + size / 16));
  const carried = async (): Promise<void> => {
    await link?.take(0);
  };

  const plain = new Counting(open());
  await plain.put('plain.img', v1, { size });
  await carried();
  plain.bytes = 0;
  const plainT = await timed(async () => {
    await plain.put('plain.img', v2, { size });
    await carried();
  });
  const plainSent = plain.bytes;

  const counting = new Counting(open());
  // Not closed: that would close `counting` too (its idle hashing worker never holds the process).
  await new ChunkedStore(counting).put('chunked.img', v1);
  await carried();
  counting.bytes = 0;
  const chunked = new ChunkedStore(counting);
  const chunkedT = await profiled(() => timed(async () => {
    await chunked.put('chunked.img', v2);
    await carried();
  }));
  const label = link ? `link (modelled: fs behind ${linkMbit} Mbit/s up)` : name;
  const plainS = plainT.s;
  const chunkedS = chunkedT.s;
  console.log(`${label.padEnd(4)} plain ${plainS.toFixed(2)} s, ${plainT.cpu.toFixed(2)} s CPU (${(plainSent / MiB).toFixed(1)} MiB sent) | chunked ${chunkedS.toFixed(2)} s, ${chunkedT.cpu.toFixed(2)} s CPU (${(counting.bytes / MiB).toFixed(2)} MiB sent, ${chunked.totals.chunksSent} of ${chunked.totals.chunks} chunks) | ratio ${(plainS / chunkedS).toFixed(1)}× less time, ${(plainSent / counting.bytes).toFixed(0)}× fewer bytes`);
  await plain.close();
  await chunked.close();
}

async function inTempDir(fn: (root: string) => Promise<void>): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'cloudmux-bench-chunked-'));
  try {
    await fn(root);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/**
 * The CPU work no chunked re-upload can skip, measured on this machine (best of 3, CPU seconds):
 * cutting chunks (one thread), the SHA-256 of every chunk (its id) and of the whole. With two
 * cores the wall time is at least max(cutting, all of it / 2).
 */
function floor(): { s: number; text: string } {
  const data = bytes(size, 'floor');
  const cpuOf = (fn: () => unknown): number => {
    let best = Infinity;
    for (let r = 0; r < 3; r++) {
      const c = process.cpuUsage();
      fn();
      const u = process.cpuUsage(c);
      best = Math.min(best, (u.user + u.system) / 1e6);
    }
    return best;
  };
  const cuts = cutPoints(data);
  const cut = cpuOf(() => cutPoints(data));
  const whole = cpuOf(() => createHash('sha256').update(data).digest());
  const ids = cpuOf(() => {
    let from = 0;
    for (const end of cuts) {
      createHash('sha256').update(data.subarray(from, end)).digest();
      from = end;
    }
  });
  const s = Math.max(cut, (cut + whole + ids) / 2);
  return { s, text: `floor on 2 cores ${s.toFixed(2)} s (CPU: cutting ${cut.toFixed(2)} s, whole SHA-256 ${whole.toFixed(2)} s, chunk ids ${ids.toFixed(2)} s)` };
}

console.log(`re-upload of a ${size / MiB} MiB file with 0.1% changed (8 places); load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
const bound = floor();
console.log(`${bound.text}; best possible ratio = plain time / ${bound.s.toFixed(2)} s`);
for (const b of backends) {
  if (b === 'fs') {
    await inTempDir((root) => run('fs', () => new FsStore({ root, fsync: false })));
  } else if (b === 'link') {
    if (!(linkMbit > 0)) throw new Error(`--link must be a rate in Mbit/s, got ${flag('link')}`);
    const bytesPerSec = (linkMbit * 1e6) / 8;
    // One bucket for every store of the run: one link. Capacity: 10 ms of it.
    const up = new TokenBucket({ ratePerSec: bytesPerSec, capacity: bytesPerSec / 100 });
    await inTempDir((root) => run('link', () => new RateLimitStore(new FsStore({ root, fsync: false }), { writeBytesPerSec: up }), up));
  } else if (b === 's3') {
    const emu = await startS3();
    if (emu) Object.assign(process.env, emu.env);
    try {
      const prefix = `bench-chunked-${Date.now().toString(36)}`;
      await run('s3', () => new S3Store(emulatorOptions({ prefix })));
    } finally {
      await emu?.stop();
    }
  } else {
    throw new Error(`unknown backend ${b}: fs, s3 or link`);
  }
}
