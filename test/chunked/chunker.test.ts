import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Chunker, DEFAULT_CHUNK_SIZES, GEAR, chunkStream, cutPoints, type ChunkSizes } from '../../src/layers/chunked/chunker.js';
import { isCloudmuxError } from '../../src/core/errors.js';
import { deterministicBytes } from './helpers.js';

const SMALL: ChunkSizes = { min: 256, target: 1024, max: 4096 };

function chunksOf(data: Buffer, sizes: Partial<ChunkSizes>): string[] {
  const out: string[] = [];
  let at = 0;
  for (const cut of cutPoints(data, sizes)) {
    out.push(createHash('sha256').update(data.subarray(at, cut)).digest('hex'));
    at = cut;
  }
  return out;
}

/** Cut points found when `data` arrives in pieces ending at `splits`. */
function streamedCuts(data: Buffer, splits: number[], sizes: Partial<ChunkSizes>): number[] {
  const c = new Chunker(sizes);
  const points = [...new Set(splits.map((s) => s % (data.byteLength + 1)))].sort((a, b) => a - b);
  const cuts: number[] = [];
  let at = 0;
  for (const p of [...points, data.byteLength]) {
    for (const cut of c.push(data.subarray(at, p))) cuts.push(at + cut);
    at = p;
  }
  if (c.pendingBytes > 0) cuts.push(data.byteLength);
  return cuts;
}

describe('chunker format v1 (fixed forever: changing it defeats dedup against stored data)', () => {
  it('has the documented gear table', () => {
    expect([...GEAR.slice(0, 4)]).toEqual([0x0fedea16, 0x584bd896, 0xd1900933, 0x26998faf]);
    expect(GEAR[255]).toBe(0xd9352b2e);
  });

  it('cuts known bytes at known places', () => {
    const cuts = cutPoints(deterministicBytes(1 << 20), { min: 4096, target: 16384, max: 65536 });
    expect(cuts.length).toBe(49);
    expect(cuts.slice(0, 6)).toEqual([31662, 42610, 63373, 73486, 108191, 117903]);
  });

  it('defaults to 256 KiB / 1 MiB / 4 MiB', () => {
    expect(new Chunker().sizes).toEqual({ min: 256 * 1024, target: 1024 * 1024, max: 4 * 1024 * 1024 });
    expect(DEFAULT_CHUNK_SIZES.target).toBe(1 << 20);
  });
});

describe('chunker', () => {
  it('refuses bad sizes with InvalidArgument', () => {
    for (const bad of [{ min: 0 }, { min: 32 }, { min: 2048, target: 1024 }, { target: 8 << 20 }, { max: 128 << 20 }, { min: 1.5 }, { target: Number.NaN }]) {
      let err: unknown;
      try {
        new Chunker({ ...SMALL, ...bad });
      } catch (e) {
        err = e;
      }
      expect(isCloudmuxError(err, 'InvalidArgument'), JSON.stringify(bad)).toBe(true);
    }
  });

  it('finds the same cut points whatever the input is split into', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 40_000 }), fc.integer(), fc.array(fc.nat(), { maxLength: 60 }), (size, seed, splits) => {
        const data = deterministicBytes(size, seed);
        expect(streamedCuts(data, splits, SMALL)).toEqual(cutPoints(data, SMALL));
      }),
      { numRuns: 200 },
    );
  });

  it('keeps every chunk within [min, max] but the last, which is within (0, max]', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 60_000 }), fc.integer(), (size, seed) => {
        const cuts = cutPoints(deterministicBytes(size, seed), SMALL);
        let at = 0;
        cuts.forEach((cut, i) => {
          const len = cut - at;
          if (i < cuts.length - 1) expect(len).toBeGreaterThanOrEqual(SMALL.min);
          expect(len).toBeGreaterThan(0);
          expect(len).toBeLessThanOrEqual(SMALL.max);
          at = cut;
        });
        expect(at).toBe(size);
      }),
      { numRuns: 200 },
    );
  });

  it('forces a cut at max on input with no cut point (all zero bytes)', () => {
    const cuts = cutPoints(Buffer.alloc(10_000), SMALL);
    // The gear hash of a run of zeros never has its top bits all zero, so only max cuts.
    expect(cuts).toEqual([4096, 8192, 10_000]);
  });

  it('insertion at the start changes only a prefix of the chunks (content-defined, not fixed offsets)', () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer({ min: 1, max: 300 }), (seed, inserted) => {
        const data = deterministicBytes(60_000, seed);
        const edited = Buffer.concat([deterministicBytes(inserted, seed + 1), data]);
        const after = new Set(chunksOf(edited, SMALL));
        const before = chunksOf(data, SMALL);
        // Once an original chunk reappears, every later one does: the edit's effect ends there.
        const firstKept = before.findIndex((c) => after.has(c));
        expect(firstKept).toBeGreaterThanOrEqual(0);
        expect(before.slice(firstKept).every((c) => after.has(c))).toBe(true);
      }),
      { numRuns: 100 },
    );
  });

  it('after an insertion at the start, cut points line up again within a few chunks (measured over fixed seeds)', () => {
    const fresh: number[] = [];
    for (let seed = 1; seed <= 100; seed++) {
      for (const inserted of [1, 100, 333]) {
        const data = deterministicBytes(30_000, seed);
        const edited = Buffer.concat([deterministicBytes(inserted, -seed), data]);
        const before = new Set(chunksOf(data, SMALL));
        fresh.push(chunksOf(edited, SMALL).filter((c) => !before.has(c)).length);
      }
    }
    const mean = fresh.reduce((a, b) => a + b, 0) / fresh.length;
    expect(Math.max(...fresh)).toBeLessThanOrEqual(4);
    expect(mean).toBeLessThan(1.5);
  });

  it('a 1-byte change in the middle changes at most two chunks', () => {
    const data = deterministicBytes(300_000, 7);
    const edited = Buffer.from(data);
    edited[150_000] = edited[150_000]! ^ 0xff;
    const before = new Set(chunksOf(data, SMALL));
    expect(chunksOf(edited, SMALL).filter((c) => !before.has(c)).length).toBeLessThanOrEqual(2);
  });

  it('chunkStream yields chunks that reassemble the input, as views of its pieces', async () => {
    const data = deterministicBytes(50_000, 3);
    async function* pieces(): AsyncGenerator<Uint8Array> {
      for (let at = 0; at < data.byteLength; at += 777) yield data.subarray(at, at + 777);
    }
    const out: Buffer[] = [];
    const sizes: number[] = [];
    for await (const c of chunkStream(pieces(), SMALL)) {
      const joined = Buffer.concat(c.parts);
      expect(joined.byteLength).toBe(c.size);
      out.push(joined);
      sizes.push(c.size);
    }
    expect(Buffer.concat(out).equals(data)).toBe(true);
    let at = 0;
    expect(sizes.map((s) => (at += s))).toEqual(cutPoints(data, SMALL));
  });

  it('chunkStream of an empty stream yields nothing', async () => {
    const out = [];
    for await (const c of chunkStream((async function* () {})(), SMALL)) out.push(c);
    expect(out).toEqual([]);
  });
});
