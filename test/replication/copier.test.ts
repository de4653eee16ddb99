import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import { SHA256_KEY, bodyChunks, collect, digestBuffer, getBuffer, isCloudmuxError } from '../../src/core/index.js';
import type { BlobStore, Body, CopyOptions, GetOptions, ObjectMeta, PutOptions } from '../../src/core/index.js';
import { SMALL_OBJECT_BYTES, copyObject, portableMetadata } from '../../src/replication/copier.js';
import { overrideStore, payload } from './helpers.js';

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(isCloudmuxError(err), `expected a CloudmuxError ${code}, got ${String(err)}`).toBe(true);
  expect((err as { code: string }).code).toBe(code);
}

describe('copyObject', () => {
  it('streams between two stores, carrying content type and metadata, and verifies by sha256', async () => {
    const src = new MemoryStore();
    const dst = new MemoryStore();
    const data = payload(300_000);
    await src.put('a/b.bin', data, { contentType: 'image/png', metadata: { owner: 'ann' } });
    let progressed = 0;
    const r = await copyObject(src, 'a/b.bin', dst, 'x/b.bin', { onProgress: (n) => { progressed += n; } });
    expect(r.serverSide).toBe(false);
    expect(r.bytes).toBe(data.byteLength);
    expect(progressed).toBe(data.byteLength);
    expect(r.sha256).toBe(digestBuffer(data).sha256);
    expect(r.verifiedBy).toContain('sha256');
    expect((await getBuffer(dst, 'x/b.bin')).equals(data)).toBe(true);
    const head = await dst.head('x/b.bin');
    expect(head.contentType).toBe('image/png');
    expect(head.metadata.owner).toBe('ann');
    expect(head.metadata[SHA256_KEY]).toBe(r.sha256);
  });

  it('copies an empty object', async () => {
    const src = new MemoryStore();
    const dst = new MemoryStore();
    await src.put('empty', '');
    const r = await copyObject(src, 'empty', dst, 'empty');
    expect(r.bytes).toBe(0);
    expect((await dst.head('empty')).size).toBe(0);
  });

  it('copies server-side within one store', async () => {
    const s = new MemoryStore();
    await s.put('k', 'hello', { metadata: { a: '1' } });
    const r = await copyObject(s, 'k', s, 'k2');
    expect(r.serverSide).toBe(true);
    expect(r.verifiedBy).toContain('sha256');
    expect((await s.head('k2')).metadata.a).toBe('1');
  });

  it('uses a destination\'s declared copyFromStore when it can copy from the source, and streams when it cannot', async () => {
    const src = new MemoryStore();
    const inner = new MemoryStore();
    await src.put('k', 'server side please');
    let accepted = true;
    const calls: string[] = [];
    const dst = overrideStore(inner, {
      capabilities: { ...inner.capabilities, copyFromStore: true },
      canCopyFrom: (source: BlobStore) => accepted && source === src,
      copyFromStore: async (source: BlobStore, srcKey: string, dstKey: string, _opts?: CopyOptions): Promise<ObjectMeta> => {
        calls.push(`${srcKey}->${dstKey}`);
        return inner.put(dstKey, await getBuffer(source, srcKey));
      },
    });
    expect((await copyObject(src, 'k', dst, 'd1')).serverSide).toBe(true);
    accepted = false;
    expect((await copyObject(src, 'k', dst, 'd2')).serverSide).toBe(false);
    expect(calls).toEqual(['k->d1']);
    // Declared off, the method is not used even where it exists (capabilities are declared, not detected).
    const undeclared = overrideStore(inner, { canCopyFrom: () => true, copyFromStore: () => Promise.reject(new Error('must not be called')) });
    expect((await copyObject(src, 'k', undeclared, 'd3')).serverSide).toBe(false);
    expect(await getBuffer(inner, 'd2').then(String)).toBe('server side please');
  });

  it('pins the source version: a changed source fails with PreconditionFailed and writes nothing', async () => {
    const src = new MemoryStore();
    const dst = new MemoryStore();
    const first = await src.put('k', 'v1');
    await src.put('k', 'v2');
    await rejectsWith(copyObject(src, 'k', dst, 'k', { sourceEtag: first.etag }), 'PreconditionFailed');
    await rejectsWith(dst.head('k'), 'NotFound');
  });

  it('fails with IntegrityError when the destination stores other bytes than it was sent, and re-reads to find out', async () => {
    const src = new MemoryStore();
    const inner = new MemoryStore();
    await src.put('k', payload(1000));
    // A destination that corrupts bytes, ignores `expect` and reports no digest: only a re-read can catch it.
    const dst = overrideStore(inner, {
      put: async (key: string, body: Body, opts?: PutOptions) => {
        const buf = await collect(bodyChunks(body));
        buf[10] = buf[10]! ^ 0xff;
        const meta = await inner.put(key, buf, { ...opts, expect: undefined });
        return { ...meta, checksums: {} };
      },
    });
    await rejectsWith(copyObject(src, 'k', dst, 'k'), 'IntegrityError');
  });

  it('passes the source digest as expect, so a destination that checks it refuses a corrupted write', async () => {
    const src = new MemoryStore();
    const inner = new MemoryStore();
    await src.put('k', payload(1000));
    const dst = overrideStore(inner, {
      put: async (key: string, body: Body, opts?: PutOptions) => {
        expect(opts?.expect?.sha256).toBe(digestBuffer(payload(1000)).sha256);
        const buf = await collect(bodyChunks(body));
        buf[0] = buf[0]! ^ 1;
        return inner.put(key, buf, opts);
      },
    });
    await rejectsWith(copyObject(src, 'k', dst, 'k'), 'IntegrityError');
    await rejectsWith(inner.head('k'), 'NotFound');
  });

  it('refuses a source whose bytes no longer match its recorded sha256', async () => {
    const inner = new MemoryStore();
    await inner.put('k', 'good bytes');
    const rotten = await inner.head('k');
    await inner.put('k', 'evil bytes');
    // The source claims the old digest for the new bytes (bit rot behind the store's back).
    const src = overrideStore(inner, {
      get: async (key: string, opts?: GetOptions) => {
        const r = await inner.get(key, opts);
        return { ...r, meta: { ...r.meta, checksums: rotten.checksums } };
      },
    });
    const dst = new MemoryStore();
    await rejectsWith(copyObject(src, 'k', dst, 'k'), 'IntegrityError');
    await rejectsWith(dst.head('k'), 'NotFound');
  });

  it('puts small objects as one buffer and streams larger ones, verifying both', async () => {
    const src = new MemoryStore();
    const inner = new MemoryStore();
    const bodies: string[] = [];
    const dst = overrideStore(inner, {
      put: async (key: string, body: Body, opts?: PutOptions) => {
        bodies.push(body instanceof Uint8Array ? 'buffer' : 'stream');
        return inner.put(key, body, opts);
      },
    });
    const small = payload(SMALL_OBJECT_BYTES);
    const large = payload(SMALL_OBJECT_BYTES + 1, 2);
    await src.put('small', small);
    await src.put('large', large);
    let progressed = 0;
    const a = await copyObject(src, 'small', dst, 'small', { onProgress: (n) => { progressed += n; } });
    const b = await copyObject(src, 'large', dst, 'large', { onProgress: (n) => { progressed += n; } });
    expect(bodies).toEqual(['buffer', 'stream']);
    expect(progressed).toBe(small.byteLength + large.byteLength);
    expect([a.sha256, b.sha256]).toEqual([digestBuffer(small).sha256, digestBuffer(large).sha256]);
    expect([a.verifiedBy, b.verifiedBy]).toEqual(['sha256+crc32c', 'sha256+crc32c']);
    expect((await getBuffer(inner, 'small')).equals(small)).toBe(true);
    expect((await getBuffer(inner, 'large')).equals(large)).toBe(true);
  });

  it('refuses a small source that sends more or fewer bytes than it reported, writing nothing', async () => {
    const inner = new MemoryStore();
    await inner.put('long', 'twelve bytes');
    await inner.put('short', 'six b!');
    // The source reports a size its body does not have (a truncated or overlong response).
    const src = overrideStore(inner, {
      get: async (key: string, opts?: GetOptions) => {
        const r = await inner.get(key, opts);
        return { ...r, meta: { ...r.meta, size: key === 'long' ? 6 : 12 } };
      },
    });
    const dst = new MemoryStore();
    await rejectsWith(copyObject(src, 'long', dst, 'long'), 'IntegrityError');
    await rejectsWith(copyObject(src, 'short', dst, 'short'), 'IntegrityError');
    await rejectsWith(dst.head('long'), 'NotFound');
    await rejectsWith(dst.head('short'), 'NotFound');
  });

  it('catches a destination that ignores expect and reports the digest of other bytes', async () => {
    for (const size of [1000, SMALL_OBJECT_BYTES + 1]) {
      const src = new MemoryStore();
      const inner = new MemoryStore();
      await src.put('k', payload(size));
      const dst = overrideStore(inner, {
        put: async (key: string, body: Body, opts?: PutOptions) => {
          const buf = await collect(bodyChunks(body));
          buf[size - 1] = buf[size - 1]! ^ 1;
          return inner.put(key, buf, { ...opts, expect: undefined });
        },
      });
      await rejectsWith(copyObject(src, 'k', dst, 'k'), 'IntegrityError');
    }
  });

  it('hashes a source that records no SHA-256 itself, and reports that digest', async () => {
    const inner = new MemoryStore();
    const data = payload(5000);
    await inner.put('k', data);
    const src = overrideStore(inner, {
      get: async (key: string, opts?: GetOptions) => {
        const r = await inner.get(key, opts);
        return { ...r, meta: { ...r.meta, checksums: {} } };
      },
    });
    const dst = new MemoryStore();
    const r = await copyObject(src, 'k', dst, 'k');
    expect(r.sha256).toBe(digestBuffer(data).sha256);
    expect(r.verifiedBy).toContain('sha256');
  });

  it('size-only mode verifies by size alone', async () => {
    const src = new MemoryStore();
    const dst = new MemoryStore();
    await src.put('k', 'abc');
    const r = await copyObject(src, 'k', dst, 'k', { verify: 'size-only' });
    expect(r.verifiedBy).toBe('size-only');
  });

  it('native mode compares the provider digests both sides share', async () => {
    const src = new MemoryStore();
    const dst = new MemoryStore();
    await src.put('k', payload(5000));
    const r = await copyObject(src, 'k', dst, 'k', { verify: 'native' });
    expect(r.verifiedBy).toBe('crc32c');
  });

  it('maps foreign metadata names onto portable ones', () => {
    expect(portableMetadata({ 'Content-Owner': 'x', '9lives': 'cat', ok_name: 'é' })).toEqual({
      content_owner: 'x',
      x9lives: 'cat',
      ok_name: '=?utf-8?b?w6k=?=',
    });
  });
});
