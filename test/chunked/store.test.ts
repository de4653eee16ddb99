import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { collect } from '../../src/core/body.js';
import { getBuffer, listAll } from '../../src/core/helpers.js';
import { SHA256_KEY } from '../../src/core/metadata.js';
import { isCloudmuxError, type ErrorCode } from '../../src/core/errors.js';
import { MemoryStore } from '../../providers/memory/index.js';
import { ChunkedStore, chunkIdKeyFromKeyring, chunkKey, cutPoints, keyedGear, type ChunkedStoreOptions } from '../../src/layers/chunked/index.js';
import { EncryptedStore, LocalKeyring, generateKey } from '../../src/layers/encryption/index.js';
import { CountingStore, seededBytes } from './helpers.js';

const SIZES = { min: 1024, target: 4096, max: 16384 };
const OPTS: ChunkedStoreOptions = { sizes: SIZES, threshold: 8192 };

function stack(opts: ChunkedStoreOptions = OPTS): { mem: MemoryStore; counting: CountingStore; store: ChunkedStore } {
  const mem = new MemoryStore();
  const counting = new CountingStore(mem);
  return { mem, counting, store: new ChunkedStore(counting, opts) };
}

async function code(p: Promise<unknown>): Promise<ErrorCode | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return isCloudmuxError(e) ? e.code : undefined;
  }
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('ChunkedStore', () => {
  it('stores a large object as a manifest plus chunks, and a small one as it is', async () => {
    const { mem, store } = stack();
    const big = seededBytes(200_000, 1);
    const meta = await store.put('big', big, { metadata: { color: 'blue' }, contentType: 'application/x-big' });
    expect(meta.size).toBe(200_000);
    expect(meta.checksums.sha256).toBe(sha(big));
    expect(meta.metadata).toEqual({ color: 'blue', [SHA256_KEY]: sha(big) });
    const m = await store.manifest('big');
    expect(m!.chunks.length).toBeGreaterThan(10);
    expect(m!.chunks.reduce((a, c) => a + c.size, 0)).toBe(200_000);
    // The inner object under the key is the small manifest.
    expect((await mem.head('big')).size).toBeLessThan(20_000);
    await store.put('small', 'hello');
    expect((await getBuffer(mem, 'small')).toString()).toBe('hello');
    expect(await store.manifest('small')).toBeUndefined();
    expect((await getBuffer(store, 'big')).equals(big)).toBe(true);
  });

  it('uploads only the chunks the store lacks: a second object with the same bytes sends only its manifest', async () => {
    const { counting, store } = stack();
    const data = seededBytes(300_000, 2);
    await store.put('a', data);
    counting.reset();
    const before = { ...store.totals };
    await store.put('b', data);
    expect(counting.puts).toEqual(['b']);
    expect(counting.bytesPut).toBeLessThan(10_000);
    expect(store.totals.bytesDeduplicated - before.bytesDeduplicated).toBe(300_000);
    expect((await getBuffer(store, 'b')).equals(data)).toBe(true);
  });

  it('a range read fetches only the chunks it covers', async () => {
    const { counting, store } = stack();
    const data = seededBytes(400_000, 3);
    await store.put('r', data);
    const m = (await store.manifest('r'))!;
    counting.reset();
    const got = await store.get('r', { range: { offset: 200_000, length: 1000 } });
    expect((await collect(got.body)).equals(data.subarray(200_000, 201_000))).toBe(true);
    expect(got.range).toEqual({ offset: 200_000, length: 1000 });
    const chunkGets = counting.gets.filter((k) => k.startsWith(store.chunkPrefix));
    expect(chunkGets.length).toBeLessThanOrEqual(2);
    expect(chunkGets.length).toBeLessThan(m.chunks.length / 10);
  });

  it('hides the chunk prefix from listings, reports logical sizes, and refuses chunk keys from callers', async () => {
    const { mem, store } = stack();
    const data = seededBytes(100_000, 4);
    await store.put('dir/big', data);
    await store.put('dir/small', 'x');
    const items = await listAll(store);
    expect(items.map((i) => (i.type === 'object' ? [i.key, i.size] : [i.prefix]))).toEqual([['dir/big', 100_000], ['dir/small', 1]]);
    expect((await listAll(store, { delimiter: '/' })).map((i) => (i.type === 'prefix' ? i.prefix : i.key))).toEqual(['dir/']);
    const chunk = (await listAll(mem)).find((i) => i.type === 'object' && i.key.startsWith(store.chunkPrefix))!;
    const ck = chunk.type === 'object' ? chunk.key : '';
    expect(await code(store.get(ck))).toBe('InvalidKey');
    expect(await code(store.put(ck, 'evil'))).toBe('InvalidKey');
    expect(await code(store.delete(ck))).toBe('InvalidKey');
    expect((await store.deleteMany([ck])).errors.map((e) => e.key)).toEqual([ck]);
    expect(await code(store.copy('dir/big', ck))).toBe('InvalidKey');
    expect((await getBuffer(store, 'dir/big')).equals(data)).toBe(true);
  });

  it('never serves a missing or altered chunk, and refuses a damaged manifest', async () => {
    const { mem, store } = stack();
    const data = seededBytes(100_000, 5);
    await store.put('x', data);
    const m = (await store.manifest('x'))!;
    const victim = chunkKey(store.chunkPrefix, m.chunks[3]!.id);
    const saved = await getBuffer(mem, victim);
    await mem.delete(victim);
    expect(await code(getBuffer(store, 'x'))).toBe('IntegrityError');
    // A range that does not need the missing chunk still reads.
    expect((await getBuffer(store, 'x', { range: { offset: 0, length: 100 } })).equals(data.subarray(0, 100))).toBe(true);
    const altered = Buffer.from(saved);
    altered[0]! ^= 1;
    await mem.put(victim, altered);
    expect(await code(getBuffer(store, 'x'))).toBe('IntegrityError');
    await mem.put(victim, saved);
    expect((await getBuffer(store, 'x', { verify: true })).equals(data)).toBe(true);
    // A manifest rewritten behind the layer's back (mark kept) is refused, not guessed at.
    const raw = await mem.get('x');
    const { carriedMetadata } = await import('../../src/core/system-metadata.js');
    await mem.put('x', '{"format":"cloudmux-chunked","version":1}', { metadata: carriedMetadata(raw.meta.metadata) });
    raw.body.destroy();
    expect(await code(store.head('x'))).toBe('IntegrityError');
    expect(await code(getBuffer(store, 'x'))).toBe('IntegrityError');
  });

  it('refreshes an old chunk it relies on instead of uploading it again (GC keeps it)', async () => {
    let now = Date.now();
    const { counting, store } = stack({ ...OPTS, graceMs: 3_600_000, now: () => now });
    const data = seededBytes(100_000, 6);
    await store.put('a', data);
    now += 3_600_000; // the chunks are now a whole grace period old
    counting.reset();
    const before = { ...store.totals };
    await store.put('b', data);
    expect(counting.puts).toEqual(['b']);
    expect(store.totals.chunksTouched - before.chunksTouched).toBe((await store.manifest('b'))!.chunks.length);
  });

  it('a copy shares the chunks, refreshes the old ones for GC first, and refuses a source with a missing chunk', async () => {
    let now = Date.now();
    const { mem, counting, store } = stack({ ...OPTS, graceMs: 3_600_000, now: () => now });
    const data = seededBytes(100_000, 11);
    await store.put('src', data);
    now += 3_600_000;
    counting.reset();
    const before = store.totals.chunksTouched;
    const meta = await store.copy('src', 'dst', { metadata: { color: 'red' } });
    expect(meta.size).toBe(100_000);
    expect(meta.metadata.color).toBe('red');
    expect(counting.bytesPut).toBe(0);
    expect(store.totals.chunksTouched - before).toBe((await store.manifest('src'))!.chunks.length);
    expect((await getBuffer(store, 'dst', { verify: true })).equals(data)).toBe(true);
    const m = (await store.manifest('src'))!;
    await mem.delete(chunkKey(store.chunkPrefix, m.chunks[1]!.id));
    const fresh = new ChunkedStore(counting, OPTS);
    expect(await code(fresh.copy('src', 'copy2'))).toBe('IntegrityError');
    expect(await code(mem.head('copy2'))).toBe('NotFound');
  });

  it('fails a put that outlasted a quarter of the grace period, writing nothing', async () => {
    let now = Date.now();
    const { mem } = stack();
    const store = new ChunkedStore(mem, { ...OPTS, graceMs: 2000, now: () => (now += 1000) });
    expect(await code(store.put('slow', seededBytes(100_000, 7)))).toBe('Transient');
    expect(await code(mem.head('slow'))).toBe('NotFound');
  });

  it('bad options are InvalidConfig / InvalidArgument', () => {
    const mem = new MemoryStore();
    const err = (f: () => unknown): string | undefined => {
      try {
        f();
        return undefined;
      } catch (e) {
        return isCloudmuxError(e) ? e.code : String(e);
      }
    };
    expect(err(() => new ChunkedStore(mem, { sizes: { min: 10 } }))).toBe('InvalidArgument');
    expect(err(() => new ChunkedStore(mem, { threshold: 0 }))).toBe('InvalidConfig');
    expect(err(() => new ChunkedStore(mem, { chunkPrefix: 'nochunks' }))).toBe('InvalidConfig');
    expect(err(() => new ChunkedStore(mem, { idKey: new Uint8Array(5) }))).toBe('InvalidConfig');
  });
});

describe('ChunkedStore over EncryptedStore with keyed chunk ids', () => {
  const k = generateKey('chunks');
  const keyring = new LocalKeyring({ [k.id]: k.key });

  async function encryptedStack(mem = new MemoryStore(), ring = keyring, keyId = k.id): Promise<ChunkedStore> {
    const idKey = await chunkIdKeyFromKeyring(ring, keyId);
    return new ChunkedStore(new EncryptedStore(mem, { keyring: ring, keyId }), { ...OPTS, idKey });
  }

  it('the provider cannot tell whether a known file is stored: no plain id, no plain cut points, only ciphertext', async () => {
    const mem = new MemoryStore();
    const store = await encryptedStack(mem);
    const known = seededBytes(120_000, 8);
    await store.put('secret', known);
    const stored = (await listAll(mem)).filter((i) => i.type === 'object' && i.key.startsWith(store.chunkPrefix));
    // The ids a provider could compute from the known file (SHA-256 of its public-CDC chunks).
    let at = 0;
    const guessable = cutPoints(known, SIZES).map((cut) => sha(known.subarray(at, (at = cut))));
    for (const id of guessable) expect(await code(mem.head(chunkKey(store.chunkPrefix, id)))).toBe('NotFound');
    expect(stored.length).toBeGreaterThan(5);
    // Cut points depend on the key.
    expect(cutPoints(known, SIZES, keyedGear(await chunkIdKeyFromKeyring(keyring, k.id)))).not.toEqual(cutPoints(known, SIZES));
    for (const item of stored) {
      if (item.type !== 'object') continue;
      const bytes = await getBuffer(mem, item.key);
      expect(bytes.includes(known.subarray(5000, 5032))).toBe(false);
    }
    expect((await getBuffer(store, 'secret', { verify: true })).equals(known)).toBe(true);
  });

  it('dedups within one keyring, and another keyring cannot read the chunks', async () => {
    const mem = new MemoryStore();
    const store = await encryptedStack(mem);
    const data = seededBytes(150_000, 9);
    await store.put('one', data);
    const before = { ...store.totals };
    await store.put('two', data);
    expect(store.totals.chunksSent - before.chunksSent).toBe(0);
    expect(store.totals.bytesDeduplicated - before.bytesDeduplicated).toBe(150_000);
    // Same key id name, different key material: keyed ids differ, and reads fail clearly.
    const other = generateKey('chunks');
    const otherRing = new LocalKeyring({ [other.id]: other.key });
    const intruder = await encryptedStack(mem, otherRing, other.id);
    const c = await code(getBuffer(intruder, 'one'));
    expect(c === 'AccessDenied' || c === 'IntegrityError').toBe(true);
  });
});
