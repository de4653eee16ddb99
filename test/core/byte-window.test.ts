import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ByteWindow } from '../../src/core/byte-window.js';

/** Feeds `pieces` through a window and returns what it kept, piece by piece. */
function run(pieces: Buffer[], skip: number, length: number): { out: Buffer[]; w: ByteWindow } {
  const w = new ByteWindow(skip, length);
  return { out: pieces.map((p) => w.take(p)), w };
}

const bytes = (n: number, from = 0): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (from + i) & 0xff));

describe('ByteWindow: the bytes [skip, skip + length) of a stream in pieces', () => {
  const whole = bytes(30);
  const pieces = [whole.subarray(0, 10), whole.subarray(10, 20), whole.subarray(20, 30)];
  const cases: { name: string; skip: number; length: number; want: number[]; overflowed: boolean }[] = [
    { name: 'offset 0, whole stream', skip: 0, length: 30, want: [10, 10, 10], overflowed: false },
    { name: 'offset 0, ending mid-piece', skip: 0, length: 15, want: [10, 5, 0], overflowed: true },
    { name: 'offset at a piece boundary', skip: 10, length: 10, want: [0, 10, 0], overflowed: true },
    { name: 'offset mid-piece, ending mid-piece', skip: 7, length: 16, want: [3, 10, 3], overflowed: true },
    { name: 'empty range', skip: 5, length: 0, want: [0, 0, 0], overflowed: true },
    { name: 'empty range at the end', skip: 30, length: 0, want: [0, 0, 0], overflowed: false },
    { name: 'range past the end', skip: 25, length: 20, want: [0, 0, 5], overflowed: false },
    { name: 'offset past the end', skip: 40, length: 5, want: [0, 0, 0], overflowed: false },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const { out, w } = run(pieces, c.skip, c.length);
      expect(out.map((b) => b.byteLength)).toEqual(c.want);
      expect(Buffer.concat(out)).toEqual(whole.subarray(c.skip, c.skip + c.length));
      const expectedLeft = c.length - Buffer.concat(out).byteLength;
      expect(w.remaining).toBe(expectedLeft);
      expect(w.done).toBe(expectedLeft === 0);
      expect(w.overflowed).toBe(c.overflowed);
    });
  }

  it('returns views of the pieces, not copies', () => {
    const piece = bytes(8);
    const got = new ByteWindow(2, 3).take(piece);
    expect(got.buffer).toBe(piece.buffer);
    expect(got.byteOffset).toBe(piece.byteOffset + 2);
  });

  it('many one-byte pieces', () => {
    const whole = bytes(1000, 3);
    const pieces = Array.from({ length: 1000 }, (_, i) => whole.subarray(i, i + 1));
    const { out, w } = run(pieces, 333, 444);
    expect(Buffer.concat(out)).toEqual(whole.subarray(333, 777));
    expect(out.filter((b) => b.byteLength > 0)).toHaveLength(444);
    expect(w.done).toBe(true);
  });

  it('empty pieces change nothing', () => {
    const w = new ByteWindow(1, 2);
    expect(w.take(Buffer.alloc(0)).byteLength).toBe(0);
    expect(w.take(bytes(2)).equals(bytes(1, 1))).toBe(true);
    expect(w.take(Buffer.alloc(0)).byteLength).toBe(0);
    expect(w.remaining).toBe(1);
    expect(w.overflowed).toBe(false);
  });

  it('rejects a negative or fractional skip or length', () => {
    expect(() => new ByteWindow(-1, 1)).toThrow(RangeError);
    expect(() => new ByteWindow(0, -1)).toThrow(RangeError);
    expect(() => new ByteWindow(0.5, 1)).toThrow(RangeError);
    expect(() => new ByteWindow(0, Number.NaN)).toThrow(RangeError);
  });

  it('property: any split of any stream, any window, gives the slice of the whole', () => {
    fc.assert(fc.property(
      fc.uint8Array({ maxLength: 300 }),
      fc.array(fc.nat({ max: 300 }), { maxLength: 40 }),
      fc.nat({ max: 350 }),
      fc.nat({ max: 350 }),
      (data, cuts, skip, length) => {
        const whole = Buffer.from(data);
        const at = [...new Set(cuts.map((c) => c % (whole.byteLength + 1)))].sort((a, b) => a - b);
        const pieces: Buffer[] = [];
        let from = 0;
        for (const c of [...at, whole.byteLength]) {
          pieces.push(whole.subarray(from, c));
          from = c;
        }
        const { out, w } = run(pieces, skip, length);
        const want = whole.subarray(skip, skip + length);
        expect(Buffer.concat(out)).toEqual(want);
        expect(w.remaining).toBe(length - want.byteLength);
        expect(w.overflowed).toBe(skip + length < whole.byteLength);
      },
    ));
  });
});
