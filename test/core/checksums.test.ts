import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { Crc32c, HashingTransform, IntegrityError, MultiHasher, collect, digestBuffer, verifyingTransform, base64ToHex, hexToBase64 } from '../../src/core/index.js';

describe('checksums', () => {
  it('CRC32C matches the standard check value', () => {
    expect(new Crc32c().update(Buffer.from('123456789')).value()).toBe(0xe3069283);
    expect(new Crc32c().update(Buffer.from('1234')).update(Buffer.from('56789')).hex()).toBe('e3069283');
    expect(new Crc32c().hex()).toBe('00000000');
  });

  it('hashes several algorithms in one pass, chunking-independent', () => {
    const data = Buffer.from('The quick brown fox jumps over the lazy dog');
    const h = new MultiHasher(['md5', 'crc32c']);
    h.update(data.subarray(0, 5));
    h.update(data.subarray(5));
    expect(h.digest()).toEqual({
      sha256: createHash('sha256').update(data).digest('hex'),
      md5: '9e107d9d372bb6826bd81d3542a419d6',
      crc32c: '22620404',
    });
    expect(digestBuffer(data).sha256).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('a hashing transform passes bytes through untouched', async () => {
    const t = new HashingTransform(['md5']);
    const out = collect(t);
    await pipeline(Readable.from([Buffer.from('ab'), Buffer.from('c')]), t);
    expect((await out).toString()).toBe('abc');
    expect(t.result?.bytes).toBe(3);
    expect(t.result?.md5).toBe('900150983cd24fb0d6963f7d28e17f72');
  });

  it('a verifying transform fails at the end on a digest or length mismatch, never ends cleanly', async () => {
    const good = createHash('sha256').update('abc').digest('hex');
    await expect(collect(Readable.from([Buffer.from('abc')]).pipe(verifyingTransform({ sha256: good })))).resolves.toEqual(Buffer.from('abc'));
    await expect(collect(Readable.from([Buffer.from('abd')]).pipe(verifyingTransform({ sha256: good })))).rejects.toBeInstanceOf(IntegrityError);
    await expect(collect(Readable.from([Buffer.from('ab')]).pipe(verifyingTransform({}, { expectedSize: 3 })))).rejects.toThrow(/expected 3/);
    await expect(collect(Readable.from([Buffer.from('abd')]).pipe(verifyingTransform({ md5: '900150983cd24fb0d6963f7d28e17f72' })))).rejects.toBeInstanceOf(IntegrityError);
  });

  it('converts between hex and base64', () => {
    expect(hexToBase64('e3069283')).toBe('4waSgw==');
    expect(base64ToHex('4waSgw==')).toBe('e3069283');
  });

});
