/**
 * Vault recipients (format v2) against keyring KEKs (format v1): the added cost per object of
 * wrapping each object's DEK to the vault epoch's X25519 key (ephemeral key pair + ECDH + HKDF +
 * AES-KW on put; ECDH + HKDF + AES-KW on get, the epoch key cached) instead of HKDF + AES-KW under a
 * local KEK. Baseline (v1) and vault (v2) run in the same process, on the same bodies, over a
 * MemoryStore; CPU seconds per operation (user + system, fastest of several batches, so other load
 * on the box disturbs it least). Prints µs per op, the ratio v2/v1 and the added µs.
 *
 *   npm run bench vault        (or: node --import tsx bench/vault.ts [sizes in KiB…])
 */
import { randomBytes } from 'node:crypto';
import { MemoryStore } from '../providers/memory/index.js';
import { collect } from '../src/core/body.js';
import { DeviceIdentity, EncryptedStore, LocalKeyring, Vault, generateKey, vaultStore } from '../src/layers/encryption/index.js';
import type { BlobStore } from '../src/core/types.js';

const sizesKiB = process.argv.slice(2).map(Number).filter((n) => n > 0);
const sizes = (sizesKiB.length ? sizesKiB : [1, 64, 1024]).map((k) => k * 1024);

async function time(fn: (i: number) => Promise<unknown>, perBatch: number, batches = 5): Promise<number> {
  for (let i = 0; i < Math.min(perBatch, 50); i++) await fn(i);
  let best = Infinity;
  for (let r = 0; r < batches; r++) {
    const t = process.cpuUsage();
    for (let i = 0; i < perBatch; i++) await fn(i);
    const used = process.cpuUsage(t);
    best = Math.min(best, (used.user + used.system) / perBatch);
  }
  return best;
}

const k = generateKey('bench');
const v1: BlobStore = new EncryptedStore(new MemoryStore(), { keyring: new LocalKeyring({ bench: k.key }), keyId: 'bench' });
const innerV2 = new MemoryStore();
const device = DeviceIdentity.generate('bench');
await Vault.init(innerV2, device);
const vault = await Vault.open(innerV2, { identity: device, refreshMs: 3_600_000 });
const v2: BlobStore = vaultStore(innerV2, vault);

console.log('per object, µs of CPU (fastest of 5 batches); v1 = keyring KEK (HKDF + AES-KW), v2 = vault recipient (X25519 ECIES)');
console.log('      size |   op |     v1 µs |     v2 µs |  ratio | added µs');
for (const size of sizes) {
  const body = randomBytes(size);
  const perBatch = Math.max(20, Math.min(400, Math.ceil((8 * 1024 * 1024) / size)));
  const keys = Array.from({ length: perBatch }, (_, i) => `o/${i}`);
  const put1 = await time((i) => v1.put(keys[i % perBatch]!, body), perBatch);
  const put2 = await time((i) => v2.put(keys[i % perBatch]!, body), perBatch);
  const get1 = await time(async (i) => collect((await v1.get(keys[i % perBatch]!)).body), perBatch);
  const get2 = await time(async (i) => collect((await v2.get(keys[i % perBatch]!)).body), perBatch);
  for (const [op, a, b] of [['put', put1, put2], ['get', get1, get2]] as const) {
    console.log(`${`${size / 1024} KiB`.padStart(10)} | ${op.padStart(4)} | ${a.toFixed(1).padStart(9)} | ${b.toFixed(1).padStart(9)} | ${(b / a).toFixed(2).padStart(6)} | ${(b - a).toFixed(1).padStart(8)}`);
  }
}

// The wrap step alone (what the format adds, without the body's AES-GCM and hashing noise).
const localRing = new LocalKeyring({ bench: k.key });
const dek = randomBytes(32);
const ctx1 = { formatVersion: 1, keyId: 'bench', noncePrefix: randomBytes(7).toString('base64') };
const kid = vault.writeKeyIdNow;
const ctx2 = { formatVersion: 2, keyId: kid, noncePrefix: ctx1.noncePrefix };
const w1 = await localRing.wrap('bench', dek, ctx1);
const w2 = await vault.wrap(kid, dek, ctx2);
const wrap1 = await time(() => localRing.wrap('bench', dek, ctx1), 2000);
const wrap2 = await time(() => vault.wrap(kid, dek, ctx2), 2000);
const unwrap1 = await time(() => localRing.unwrap('bench', w1, ctx1), 2000);
const unwrap2 = await time(() => vault.unwrap(kid, w2, ctx2), 2000);
console.log('  DEK only |   op |     v1 µs |     v2 µs |  ratio | added µs');
for (const [op, a, b] of [['wrap', wrap1, wrap2], ['open', unwrap1, unwrap2]] as const) {
  console.log(`${'32 B'.padStart(10)} | ${op.padStart(4)} | ${a.toFixed(1).padStart(9)} | ${b.toFixed(1).padStart(9)} | ${(b / a).toFixed(2).padStart(6)} | ${(b - a).toFixed(1).padStart(8)}`);
}
