import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { collect } from '../../src/core/body.js';
import { getBuffer } from '../../src/core/helpers.js';
import type { ByteRange } from '../../src/core/types.js';
import { MemoryStore } from '../../providers/memory/index.js';
import {
  EncryptedStore, LocalKeyring, SegmentDecryptor, SegmentEncryptor, cipherSize, generateKey, plainSize, segmentCount,
} from '../../src/layers/encryption/index.js';
import { sha256Hex } from '../../src/testing/data.js';
import { raw } from './helpers.js';

const k = generateKey('prop');
const keyring = new LocalKeyring({ [k.id]: k.key });

/** Sizes around the boundaries that matter, plus random ones up to a few segments. */
function sizeFor(seg: number): fc.Arbitrary<number> {
  return fc.oneof(
    fc.constantFrom(0, 1, seg - 1, seg, seg + 1, 2 * seg - 1, 2 * seg, 2 * seg + 1, 3 * seg),
    fc.integer({ min: 0, max: 5 * seg }),
  );
}

const segmentSizes = fc.constantFrom(16, 17, 100, 1024, 4096);

/** Splits `data` into a random sequence of chunks (some empty), as a stream would deliver it. */
function chunked(data: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (data.byteLength + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    out.push(data.subarray(at, p));
    at = p;
  }
  out.push(data.subarray(at));
  return out;
}

describe('size arithmetic', () => {
  it('plainSize inverts cipherSize and rejects every size no plaintext produces', () => {
    fc.assert(fc.property(segmentSizes, fc.integer({ min: 0, max: 20_000 }), (seg, p) => {
      const c = cipherSize(p, seg);
      expect(c).toBe(p + 16 * segmentCount(p, seg));
      expect(plainSize(c, seg)).toBe(p);
    }));
    for (const seg of [16, 100, 1024]) {
      const valid = new Set(Array.from({ length: 5 * seg }, (_, p) => cipherSize(p, seg)));
      for (let c = 0; c < 5 * seg; c++) expect(plainSize(c, seg) !== undefined, `stored size ${c}`).toBe(valid.has(c));
    }
  });
});

describe('random plaintexts round-trip', () => {
  it('through the segment encryptor and decryptor under any chunking', () => {
    fc.assert(fc.property(
      segmentSizes.chain((seg) => fc.tuple(fc.constant(seg), sizeFor(seg).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })))),
      fc.array(fc.nat(), { maxLength: 8 }),
      fc.array(fc.nat(), { maxLength: 8 }),
      ([seg, bytes], cutsIn, cutsOut) => {
        const plain = Buffer.from(bytes);
        const size = plain.byteLength;
        const dek = Buffer.alloc(32, 7);
        const prefix = Buffer.alloc(7, 9);
        const enc = new SegmentEncryptor(dek, prefix, seg);
        const sealed = Buffer.concat([...chunked(plain, cutsIn).flatMap((c) => enc.update(c)), ...enc.final()]);
        expect(sealed.byteLength).toBe(cipherSize(size, seg));
        const dec = new SegmentDecryptor({ dek, prefix, segmentSize: seg, plainSize: size });
        const opened = Buffer.concat([...chunked(sealed, cutsOut).flatMap((c) => dec.update(c)), ...dec.final()]);
        expect(opened.equals(plain)).toBe(true);
      },
    ), { numRuns: 300 });
  });

  it('through EncryptedStore, buffered and streamed, with plaintext size and digest', async () => {
    await fc.assert(fc.asyncProperty(
      segmentSizes.chain((seg) => fc.tuple(fc.constant(seg), sizeFor(seg).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })))),
      fc.array(fc.nat(), { maxLength: 6 }),
      fc.boolean(),
      async ([seg, bytes], cuts, streamed) => {
        const plain = Buffer.from(bytes);
        const inner = new MemoryStore();
        const store = new EncryptedStore(inner, { keyring, keyId: k.id, segmentSize: seg });
        const body = streamed ? (async function* () { yield* chunked(plain, cuts); })() : plain;
        const put = await store.put('x', body);
        expect(put.size).toBe(plain.byteLength);
        expect(put.checksums.sha256).toBe(sha256Hex(plain));
        const head = await store.head('x');
        expect(head.size).toBe(plain.byteLength);
        expect(head.checksums.sha256).toBe(sha256Hex(plain));
        expect((await getBuffer(store, 'x', { verify: true })).equals(plain)).toBe(true);
        expect((await raw(inner, 'x')).bytes.byteLength).toBe(cipherSize(plain.byteLength, seg));
        const [listed] = await collectList(store);
        expect(listed).toBe(plain.byteLength);
      },
    ), { numRuns: 150 });
  });
});

async function collectList(store: EncryptedStore): Promise<number[]> {
  const sizes: number[] = [];
  for await (const item of store.list()) if (item.type === 'object') sizes.push(item.size);
  return sizes;
}

describe('random ranges return exactly the plaintext slice', () => {
  it('offset/length, open-ended and suffix ranges, any segment size', async () => {
    await fc.assert(fc.asyncProperty(
      segmentSizes,
      fc.integer({ min: 1, max: 6000 }).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })),
      fc.nat(),
      fc.option(fc.integer({ min: 1, max: 7000 }), { nil: undefined }),
      fc.boolean(),
      fc.constantFrom(16, 1024, 65536),
      async (seg, bytes, offsetSeed, length, suffix, readerSeg) => {
        const plain = Buffer.from(bytes);
        const size = plain.byteLength;
        const inner = new MemoryStore();
        await new EncryptedStore(inner, { keyring, keyId: k.id, segmentSize: seg }).put('x', plain);
        // The reader may be configured with another segment size: it plans with its own and
        // corrects from the object's header.
        const reader = new EncryptedStore(inner, { keyring, keyId: k.id, segmentSize: readerSeg });
        let range: ByteRange;
        let start: number;
        let end: number;
        if (suffix) {
          const n = length ?? 1;
          range = { suffix: n };
          start = Math.max(0, size - n);
          end = size;
        } else {
          const offset = offsetSeed % size;
          range = length === undefined ? { offset } : { offset, length };
          start = offset;
          end = length === undefined ? size : Math.min(size, offset + length);
        }
        const got = await reader.get('x', { range });
        expect(got.range).toEqual({ offset: start, length: end - start });
        expect(got.meta.size).toBe(size);
        expect((await collect(got.body)).equals(plain.subarray(start, end))).toBe(true);
      },
    ), { numRuns: 300 });
  });
});
