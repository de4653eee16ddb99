import { describe, expect, it } from 'vitest';
import { CloudmuxError } from '../../src/core/errors.js';
import { getBuffer } from '../../src/core/helpers.js';
import { EncryptedStore, LocalKeyring, generateKey, ENC_META } from '../../src/layers/encryption/index.js';
import { pseudoRandomBytes } from '../../src/testing/data.js';
import { raw, readUntilError, rewrite, stack } from './helpers.js';

const SEG = 1024;
const STRIDE = SEG + 16;
/** 4 full segments and a 904-byte last one. */
const PLAIN = pseudoRandomBytes(4 * SEG + 904, 'tamper');

async function setup() {
  const s = stack({ segmentSize: SEG });
  await s.store.put('obj', PLAIN);
  const { bytes, meta } = await raw(s.inner, 'obj');
  expect(bytes.byteLength).toBe(PLAIN.byteLength + 5 * 16);
  return { ...s, bytes, meta };
}

/**
 * Every read, whole or verified or ranged, must fail with `code` and must never hand out a byte
 * that is not the plaintext's (what it delivers before failing is a correct prefix).
 */
async function expectRejected(store: EncryptedStore, key: string, code: 'IntegrityError' | 'AccessDenied' = 'IntegrityError'): Promise<void> {
  for (const opts of [{}, { verify: true }]) {
    const { bytes, error } = await readUntilError(store, key, opts);
    expect(error, `read ${JSON.stringify(opts)} succeeded on tampered data`).toBeInstanceOf(CloudmuxError);
    expect((error as CloudmuxError).code, (error as Error).message).toBe(code);
    expect(PLAIN.subarray(0, bytes.byteLength).equals(bytes), 'bytes before the failure are the plaintext').toBe(true);
  }
}

describe('tampering is detected, never returned as plaintext', () => {
  it('a flipped byte in any segment (body or tag) fails that segment', async () => {
    const { inner, store, bytes, meta } = await setup();
    const positions = [0, 500, SEG - 1, SEG, SEG + 15, STRIDE, 2 * STRIDE + 77, 3 * STRIDE + SEG + 3, 4 * STRIDE, bytes.byteLength - 1];
    for (const pos of positions) {
      const bad = Buffer.from(bytes);
      bad[pos]! ^= 0x01;
      await rewrite(inner, 'obj', bad, meta.metadata);
      await expectRejected(store, 'obj');
      // A range over the damaged segment fails too; ranges elsewhere still authenticate.
      const seg = Math.floor(pos / STRIDE);
      const { error } = await readUntilError(store, 'obj', { range: { offset: seg * SEG, length: 1 } });
      expect((error as CloudmuxError).code).toBe('IntegrityError');
    }
  });

  it('a truncated last segment, a dropped last segment, cuts anywhere', async () => {
    const { inner, store, bytes, meta } = await setup();
    for (const cut of [1, 16, 17, 500, bytes.byteLength - 4 * STRIDE, bytes.byteLength - 3 * STRIDE, bytes.byteLength - 1]) {
      await rewrite(inner, 'obj', bytes.subarray(0, bytes.byteLength - cut), meta.metadata);
      await expectRejected(store, 'obj');
    }
    // Cut exactly at a segment boundary and the recorded size removed: the new last segment was
    // sealed as a middle one.
    const { [ENC_META.plainSize]: _size, ...noSize } = meta.metadata;
    await rewrite(inner, 'obj', bytes.subarray(0, 3 * STRIDE), noSize);
    await expectRejected(store, 'obj');
    await rewrite(inner, 'obj', bytes.subarray(0, 4 * STRIDE), noSize);
    await expectRejected(store, 'obj');
  });

  it('a dropped middle segment', async () => {
    const { inner, store, bytes, meta } = await setup();
    const { [ENC_META.plainSize]: _size, ...noSize } = meta.metadata;
    const dropped = Buffer.concat([bytes.subarray(0, STRIDE), bytes.subarray(2 * STRIDE)]);
    await rewrite(inner, 'obj', dropped, noSize);
    await expectRejected(store, 'obj');
  });

  it('swapped segments, and a segment from another object', async () => {
    const { inner, store, bytes, meta } = await setup();
    const seg = (b: Buffer, i: number): Buffer => b.subarray(i * STRIDE, (i + 1) * STRIDE);
    const swapped = Buffer.concat([seg(bytes, 0), seg(bytes, 2), seg(bytes, 1), bytes.subarray(3 * STRIDE)]);
    await rewrite(inner, 'obj', swapped, meta.metadata);
    await expectRejected(store, 'obj');

    await store.put('other', PLAIN);
    const other = await raw(inner, 'other');
    const spliced = Buffer.concat([seg(bytes, 0), seg(other.bytes, 1), bytes.subarray(2 * STRIDE)]);
    await rewrite(inner, 'obj', spliced, meta.metadata);
    await expectRejected(store, 'obj');
  });

  it('appended bytes: one byte, a tag, or a replayed segment', async () => {
    const { inner, store, bytes, meta } = await setup();
    const { [ENC_META.plainSize]: _size, ...noSize } = meta.metadata;
    for (const extra of [Buffer.from([0]), bytes.subarray(bytes.byteLength - 16), bytes.subarray(STRIDE, 2 * STRIDE)]) {
      await rewrite(inner, 'obj', Buffer.concat([bytes, extra]), meta.metadata);
      await expectRejected(store, 'obj');
      await rewrite(inner, 'obj', Buffer.concat([bytes, extra]), noSize);
      await expectRejected(store, 'obj');
    }
  });

  it('metadata swapped between two objects (whole header, or only the wrapped key)', async () => {
    const { inner, store, bytes, meta } = await setup();
    await store.put('twin', pseudoRandomBytes(PLAIN.byteLength, 'twin'));
    const twin = await raw(inner, 'twin');
    await rewrite(inner, 'obj', bytes, twin.meta.metadata);
    await expectRejected(store, 'obj');
    await rewrite(inner, 'obj', bytes, { ...meta.metadata, [ENC_META.wrappedKey]: twin.meta.metadata[ENC_META.wrappedKey]! });
    await expectRejected(store, 'obj');
    await expect(store.head('obj')).rejects.toMatchObject({ code: 'IntegrityError' });
    await rewrite(inner, 'obj', bytes, { ...meta.metadata, [ENC_META.noncePrefix]: twin.meta.metadata[ENC_META.noncePrefix]! });
    await expectRejected(store, 'obj');
  });

  it('header fields altered: segment size, recorded size, sealed digest, version', async () => {
    const { inner, store, bytes, meta } = await setup();
    const cases: [Record<string, string>, string][] = [
      [{ [ENC_META.segmentSize]: String(SEG * 2) }, 'IntegrityError'],
      [{ [ENC_META.segmentSize]: String(SEG - 16) }, 'IntegrityError'],
      [{ [ENC_META.segmentSize]: 'x' }, 'IntegrityError'],
      [{ [ENC_META.plainSize]: String(PLAIN.byteLength - 1) }, 'IntegrityError'],
      [{ [ENC_META.digest]: Buffer.alloc(48).toString('base64') }, 'IntegrityError'],
      // v2 is the vault format: a v1 key id under it is a malformed header.
      [{ [ENC_META.version]: '2' }, 'IntegrityError'],
      [{ [ENC_META.version]: '3' }, 'NotSupported'],
    ];
    for (const [patch, code] of cases) {
      await rewrite(inner, 'obj', bytes, { ...meta.metadata, ...patch });
      const { bytes: got, error } = await readUntilError(store, 'obj');
      expect((error as CloudmuxError | undefined)?.code, JSON.stringify(patch)).toBe(code);
      expect(got.byteLength).toBe(0);
    }
  });

  it('a key id relabelled to another key of the keyring fails to unwrap', async () => {
    const a = generateKey('a');
    const b = generateKey('b');
    const keyring = new LocalKeyring({ [a.id]: a.key, [b.id]: b.key });
    const s = stack({ keyring, keyId: 'a', segmentSize: SEG });
    await s.store.put('obj', PLAIN);
    const { bytes, meta } = await raw(s.inner, 'obj');
    await rewrite(s.inner, 'obj', bytes, { ...meta.metadata, [ENC_META.keyId]: 'b' });
    await expectRejected(s.store, 'obj');
  });

  it('wrong KEK under the right id: IntegrityError; id missing from the keyring: AccessDenied', async () => {
    const { inner, secret } = await setup();
    const wrong = new EncryptedStore(inner, { keyring: new LocalKeyring({ primary: generateKey().key }), keyId: 'primary' });
    await expectRejected(wrong, 'obj');
    const err = (await readUntilError(wrong, 'obj')).error as Error;
    expect(err.message).toMatch(/key id primary/);
    expect(err.message).not.toContain(secret);
    const missing = new EncryptedStore(inner, { keyring: new LocalKeyring({ other: generateKey().key }), keyId: 'other' });
    await expectRejected(missing, 'obj', 'AccessDenied');
    await expect(missing.head('obj')).rejects.toMatchObject({ code: 'AccessDenied', key: 'obj' });
  });

  it('an object written without encryption is refused unless allowPlaintext', async () => {
    const { inner, store, keyring, keyId } = stack();
    await inner.put('plain', 'not encrypted');
    await expect(getBuffer(store, 'plain')).rejects.toMatchObject({ code: 'IntegrityError' });
    await expect(store.head('plain')).rejects.toMatchObject({ code: 'IntegrityError' });
    const lenient = new EncryptedStore(inner, { keyring, keyId, allowPlaintext: true });
    expect((await getBuffer(lenient, 'plain', { verify: true })).toString()).toBe('not encrypted');
    expect((await getBuffer(lenient, 'plain', { range: { offset: 4, length: 9 } })).toString()).toBe('encrypted');
    expect((await lenient.head('plain')).size).toBe(13);
  });

  it('ranges: every segment authenticated, the untouched ones still read', async () => {
    const { inner, store, bytes, meta } = await setup();
    const bad = Buffer.from(bytes);
    bad[2 * STRIDE + 5]! ^= 0x80;
    await rewrite(inner, 'obj', bad, meta.metadata);
    expect((await getBuffer(store, 'obj', { range: { offset: 10, length: 2 * SEG - 20 } })).equals(PLAIN.subarray(10, 2 * SEG - 10))).toBe(true);
    expect((await getBuffer(store, 'obj', { range: { suffix: 100 } })).equals(PLAIN.subarray(PLAIN.byteLength - 100))).toBe(true);
    const { bytes: got, error } = await readUntilError(store, 'obj', { range: { offset: SEG + 3 } });
    expect((error as CloudmuxError).code).toBe('IntegrityError');
    expect(PLAIN.subarray(SEG + 3, SEG + 3 + got.byteLength).equals(got)).toBe(true);
  });
});
