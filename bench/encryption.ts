/**
 * Encryption throughput: encrypt + decrypt of the same buffers through cloudmux's segmented format
 * (AES-256-GCM, 64 KiB segments, STREAM nonces) against one raw node:crypto AES-256-GCM pass over
 * the whole buffer, fed in the same 64 KiB chunks. Prints MB/s of both and the ratio (target ≥ 0.8).
 * A last line per size runs the whole EncryptedStore over a MemoryStore (put + verified get), which
 * adds SHA-256 of plaintext and ciphertext: informational, not part of the ratio.
 *
 *   npm run bench encryption        (or: node --import tsx bench/encryption.ts [sizes in KiB…])
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { MemoryStore } from '../providers/memory/index.js';
import { collect } from '../src/core/body.js';
import { EncryptedStore, LocalKeyring, SegmentDecryptor, SegmentEncryptor, generateKey } from '../src/layers/encryption/index.js';

const CHUNK = 64 * 1024;
const SEGMENT = 64 * 1024;
const sizesKiB = process.argv.slice(2).map(Number).filter((n) => n > 0);
const sizes = (sizesKiB.length ? sizesKiB : [1, 64, 1024, 16 * 1024, 64 * 1024]).map((k) => k * 1024);

function chunks(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.byteLength; i += CHUNK) out.push(buf.subarray(i, i + CHUNK));
  return out.length ? out : [buf];
}

function rawRoundTrip(input: Buffer[], key: Buffer): number {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  const sealed = input.map((p) => c.update(p));
  sealed.push(c.final());
  const tag = c.getAuthTag();
  const d = createDecipheriv('aes-256-gcm', key, iv);
  d.setAuthTag(tag);
  let n = 0;
  for (const p of sealed) n += d.update(p).byteLength;
  n += d.final().byteLength;
  return n;
}

function segmentedRoundTrip(input: Buffer[], key: Buffer, size: number): number {
  const prefix = randomBytes(7);
  const enc = new SegmentEncryptor(key, prefix, SEGMENT);
  const sealed: Buffer[] = [];
  for (const p of input) for (const c of enc.update(p)) sealed.push(c);
  for (const c of enc.final()) sealed.push(c);
  const dec = new SegmentDecryptor({ dek: key, prefix, segmentSize: SEGMENT, plainSize: size });
  let n = 0;
  for (const p of sealed) for (const c of dec.update(p)) n += c.byteLength;
  dec.final();
  return n;
}

/**
 * CPU seconds per call (user + system of this process): the fastest of several batches of ~16 MiB
 * each. The work is synchronous on this thread, so CPU time measures it even when other processes
 * compete for the cores; the minimum is the figure least disturbed by them.
 */
async function time(fn: () => unknown | Promise<unknown>, bytes: number, batches = 3): Promise<number> {
  const perBatch = Math.max(1, Math.ceil((16 * 1024 * 1024) / Math.max(bytes, 1)));
  let best = Infinity;
  await fn();
  for (let r = 0; r < batches; r++) {
    const t = process.cpuUsage();
    for (let i = 0; i < perBatch; i++) await fn();
    const used = process.cpuUsage(t);
    best = Math.min(best, (used.user + used.system) / 1e6 / perBatch);
  }
  return best;
}

const mbps = (bytes: number, s: number): string => ((bytes / s) / 1e6).toFixed(0).padStart(6);

const k = generateKey('bench');
const store = new EncryptedStore(new MemoryStore(), { keyring: new LocalKeyring({ bench: k.key }), keyId: 'bench' });
const key = randomBytes(32);
console.log(`encrypt+decrypt, ${SEGMENT / 1024} KiB segments, input in ${CHUNK / 1024} KiB chunks; MB/s of plaintext per CPU second; ratio = segmented / raw`);
console.log('      size |  raw GCM | cloudmux |  ratio | EncryptedStore(memory) put+get');
let worst = Infinity;
for (const size of sizes) {
  const buf = randomBytes(size);
  const input = chunks(buf);
  // Alternate the two so drift on a shared machine hits both alike; keep each one's best.
  let rawS = Infinity;
  let segS = Infinity;
  for (let round = 0; round < 4; round++) {
    rawS = Math.min(rawS, await time(() => rawRoundTrip(input, key), size));
    segS = Math.min(segS, await time(() => segmentedRoundTrip(input, key, size), size));
  }
  const ratio = rawS / segS;
  worst = Math.min(worst, ratio);
  const stackS = await time(async () => {
    await store.put('x', buf);
    return collect((await store.get('x', { verify: true })).body);
  }, size);
  const label = size >= 1024 * 1024 ? `${size / 1024 / 1024} MiB` : `${size / 1024} KiB`;
  console.log(`${label.padStart(10)} | ${mbps(size, rawS)}   | ${mbps(size, segS)}   | ${ratio.toFixed(2).padStart(6)} | ${mbps(size, stackS)}`);
}
console.log(`worst ratio ${worst.toFixed(2)} (target >= 0.80): ${worst >= 0.8 ? 'met' : 'NOT met'}`);
