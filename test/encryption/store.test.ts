import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { collect } from '../../src/core/body.js';
import { getBuffer, listAll } from '../../src/core/helpers.js';
import { RESERVED_METADATA_BYTES, SHA256_KEY } from '../../src/core/metadata.js';
import type { Body, ObjectMeta, PutOptions } from '../../src/core/types.js';
import { EncryptedStore, ENC_META, LocalKeyring, generateKey } from '../../src/layers/encryption/index.js';
import { MemoryStore } from '../../providers/memory/index.js';
import { generatedStream, sha256Hex } from '../../src/testing/data.js';
import { CountingStore, raw, stack } from './helpers.js';

describe('what the provider sees', () => {
  it('stored bytes contain no plaintext, in any size class', async () => {
    const { inner, store } = stack();
    const phrase = 'The quick brown fox jumps over the lazy dog. ';
    for (const [key, text] of [['short', 'secret!'], ['line', phrase], ['big', phrase.repeat(5000)]] as const) {
      await store.put(key, text);
      const { bytes } = await raw(inner, key);
      expect(bytes.byteLength).toBeGreaterThan(Buffer.byteLength(text));
      // No 6-byte window of the plaintext survives (a 6-byte match in random data is ~2^-48 likely).
      const plain = Buffer.from(text);
      for (let i = 0; i + 6 <= plain.byteLength; i += 3) expect(bytes.includes(plain.subarray(i, i + 6)), `${key} @${i}`).toBe(false);
    }
    // Repeated plaintext does not give repeated ciphertext (no ECB-like leak across segments or objects).
    const big = (await raw(inner, 'big')).bytes;
    expect(big.subarray(0, 45).equals(big.subarray(45, 90))).toBe(false);
    await store.put('big2', phrase.repeat(5000));
    expect((await raw(inner, 'big2')).bytes.subarray(0, 64).equals(big.subarray(0, 64))).toBe(false);
  });

  it('the header fits cloudmux reserved metadata room with the longest key id', async () => {
    const id = 'K'.repeat(64);
    const k = generateKey(id);
    const inner = new MemoryStore();
    const store = new EncryptedStore(inner, { keyring: new LocalKeyring({ [id]: k.key }), keyId: id });
    await store.put('x', (async function* () { yield Buffer.from('streamed'); })(), { metadata: { user: 'v' } });
    const stored = (await inner.head('x')).metadata;
    const reserved = Object.entries(stored).filter(([n]) => n.startsWith('cloudmux_')).reduce((a, [n, v]) => a + n.length + v.length, 0);
    expect(Object.keys(stored).sort()).toEqual([...Object.values(ENC_META), SHA256_KEY, 'user'].sort());
    expect(reserved).toBeLessThanOrEqual(RESERVED_METADATA_BYTES * 0.7);
  });

  it('the caller sees plaintext size, plaintext digest and user metadata only', async () => {
    const { inner, store } = stack();
    // A caller's reserved name is refused, never silently dropped (issue 14): nothing is written.
    await expect(store.put('x', 'hello', { metadata: { a: '1', cloudmux_enc_kid: 'spoof' } })).rejects.toMatchObject({ code: 'InvalidArgument' });
    expect(await listAll(inner)).toEqual([]);
    const put = await store.put('x', 'hello', { metadata: { a: '1' }, contentType: 'text/plain' });
    for (const m of [put, await store.head('x'), (await store.get('x')).meta]) {
      expect(m.size).toBe(5);
      expect(m.checksums).toEqual({ sha256: sha256Hex('hello') });
      expect(m.metadata).toEqual({ a: '1', [SHA256_KEY]: sha256Hex('hello') });
      expect(m.contentType).toBe('text/plain');
    }
    const stored = await inner.head('x');
    expect(stored.metadata[ENC_META.keyId]).toBe('primary');
    expect(stored.metadata[SHA256_KEY]).toBe(createHash('sha256').update((await raw(inner, 'x')).bytes).digest('hex'));
    const [item] = await listAll(store);
    expect(item).toMatchObject({ type: 'object', key: 'x', size: 5 });
    expect(item && 'checksums' in item).toBe(false);
  });
});

describe('streamed puts', () => {
  it('record size and digest with one metadata update, pinned to the etag written', async () => {
    const inner = new CountingStore(new MemoryStore());
    const { store } = stack({ segmentSize: 1000 }, inner as unknown as MemoryStore);
    const gen = generatedStream(10_000, { chunkSize: 777, seed: 's' });
    const meta = await store.put('s', gen.stream);
    expect(inner.metadataUpdates).toBe(1);
    expect(meta.checksums.sha256).toBe(gen.sha256());
    expect((await store.head('s')).checksums.sha256).toBe(gen.sha256());
    expect((await store.head('s')).etag).toBe(meta.etag);
    const got = await store.get('s', { verify: true });
    expect(createHash('sha256').update(await collect(got.body)).digest('hex')).toBe(gen.sha256());
  });

  it('recordStreamDigest: false skips the update; reads still authenticate', async () => {
    const inner = new CountingStore(new MemoryStore());
    const { store } = stack({ recordStreamDigest: false }, inner as unknown as MemoryStore);
    const gen = generatedStream(100_000, { seed: 'n' });
    const meta = await store.put('s', gen.stream);
    expect(inner.metadataUpdates).toBe(0);
    expect(meta.checksums.sha256).toBe(gen.sha256());
    const head = await store.head('s');
    expect(head.size).toBe(100_000);
    expect(head.checksums.sha256).toBeUndefined();
    expect((await getBuffer(store, 's', { verify: true })).byteLength).toBe(100_000);
  });

  it('a wrong declared size or expected digest fails before the object completes', async () => {
    const { inner, store } = stack();
    const body = (): Body => (async function* () { yield Buffer.from('abc'); })();
    await expect(store.put('x', body(), { size: 4 })).rejects.toMatchObject({ code: 'InvalidArgument' });
    await expect(store.put('x', body(), { expect: { sha256: sha256Hex('abd') } })).rejects.toMatchObject({ code: 'IntegrityError' });
    await expect(store.put('x', body(), { expect: { md5: '00'.repeat(16) } })).rejects.toMatchObject({ code: 'IntegrityError' });
    await expect(inner.head('x')).rejects.toMatchObject({ code: 'NotFound' });
    const ok = await store.put('x', body(), { size: 3, expect: { sha256: sha256Hex('abc') } });
    expect(ok.size).toBe(3);
  });

  it('streams through in bounded memory: at most one segment of plaintext is held', async () => {
    // A sink that consumes the ciphertext as it comes and records the largest chunk it was handed.
    const sink = new SinkStore();
    const { store } = stack({ recordStreamDigest: false }, sink as unknown as MemoryStore);
    let inFlight = 0;
    let peak = 0;
    sink.onChunk = (n) => {
      inFlight -= n;
    };
    async function* source(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 512; i++) {
        const chunk = Buffer.alloc(100_000, i);
        inFlight += chunk.byteLength;
        peak = Math.max(peak, inFlight);
        yield chunk;
      }
    }
    await store.put('big', source());
    expect(sink.bytes).toBe(51_200_000 + 16 * Math.ceil(51_200_000 / 65536));
    // Bytes the layer had taken in but not yet handed on: below a segment plus one input chunk.
    expect(peak).toBeLessThan(65_536 + 100_000 + 16 * 3);
  });
});

describe('the rest of the interface', () => {
  it('forwards delete, deleteMany, list, copy, updateMetadata and close; presign is NotSupported', async () => {
    const inner = new CountingStore(new MemoryStore());
    const { store } = stack({}, inner as unknown as MemoryStore);
    await store.put('a/1', 'one', { metadata: { m: '1' } });
    await store.put('a/2', 'two');
    const copied = await store.copy('a/1', 'b/1');
    expect(inner.copies).toBe(1);
    expect(copied.size).toBe(3);
    expect((await getBuffer(store, 'b/1')).toString()).toBe('one');
    const replaced = await store.copy('a/1', 'b/2', { metadata: { m: '2' } });
    expect(replaced.metadata.m).toBe('2');
    expect((await getBuffer(store, 'b/2')).toString()).toBe('one');
    const updated = await store.updateMetadata('a/2', { metadata: { n: '9' } });
    expect(updated.metadata).toEqual({ n: '9', [SHA256_KEY]: sha256Hex('two') });
    expect((await getBuffer(store, 'a/2')).toString()).toBe('two');
    expect((await listAll(store, { prefix: '', delimiter: '/' })).map((i) => (i.type === 'prefix' ? i.prefix : i.key))).toEqual(['a/', 'b/']);
    expect((await store.deleteMany(['a/1', 'b/1'])).deleted).toEqual(['a/1', 'b/1']);
    await store.delete('a/2');
    expect((await listAll(store)).map((i) => (i.type === 'object' ? i.key : ''))).toEqual(['b/2']);
    await expect(store.presign('b/2', { method: 'GET', expiresIn: 60 })).rejects.toMatchObject({ code: 'NotSupported' });
    expect(store.capabilities.presign).toBe(false);
    let closed = false;
    inner.close = async () => {
      closed = true;
    };
    await store.close();
    expect(closed).toBe(true);
  });

  it('updateMetadata never stamps an old header onto a newer object', async () => {
    const inner = new MemoryStore();
    const { store } = stack({}, inner);
    await store.put('x', 'v1');
    const realHead = inner.head.bind(inner);
    let raced = false;
    // Overwrite the object right after the layer reads the header it means to carry.
    inner.head = async (key, opts) => {
      const m = await realHead(key, opts);
      if (!raced) {
        raced = true;
        await store.put('x', 'v2 is longer');
      }
      return m;
    };
    const meta = await store.updateMetadata('x', { metadata: { tag: 'y' } });
    expect(meta.metadata.tag).toBe('y');
    expect((await getBuffer(store, 'x', { verify: true })).toString()).toBe('v2 is longer');
  });
});

/** A streaming store that only counts what it is given. */
class SinkStore extends MemoryStore {
  bytes = 0;
  onChunk: (n: number) => void = () => {};
  override readonly capabilities = { ...new MemoryStore().capabilities, streaming: true };
  override async put(key: string, body: Body, _opts?: PutOptions): Promise<ObjectMeta> {
    for await (const c of body as AsyncIterable<Uint8Array>) {
      this.bytes += c.byteLength;
      this.onChunk(c.byteLength);
    }
    return { key, size: this.bytes, etag: 'e', lastModified: new Date(), metadata: {}, checksums: {} } satisfies ObjectMeta;
  }
}
