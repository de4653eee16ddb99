import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import type { GetOptions, ObjectSummary } from '../../src/core/index.js';
import { mergeListings } from '../../src/replication/plan.js';
import { treesMatch, verifyTrees } from '../../src/replication/verify.js';
import { overrideStore } from './helpers.js';

describe('verifyTrees', () => {
  it('reports matching, differing and missing keys on either side', async () => {
    const a = new MemoryStore();
    const b = new MemoryStore();
    await a.put('same', 'x');
    await b.put('same', 'x');
    await a.put('differs', 'AAAA');
    await b.put('differs', 'BBBB');
    await a.put('only-a', '1');
    await b.put('only-b', '2');
    const r = await verifyTrees(a, b);
    expect(r).toMatchObject({ matching: 1, differing: 1, onlyInA: 1, onlyInB: 1, errors: 0 });
    expect(treesMatch(r)).toBe(false);
    expect(r.problems.map((p) => [p.key, p.outcome])).toEqual([['differs', 'differ'], ['only-a', 'only-in-a'], ['only-b', 'only-in-b']]);
  });

  it('with download, catches bytes that rotted behind a correct-looking digest', async () => {
    const a = new MemoryStore();
    const inner = new MemoryStore();
    await a.put('k', 'good bytes');
    await inner.put('k', 'good bytes');
    const honest = await inner.head('k');
    await inner.put('k', 'bad! bytes');
    // b claims the digest of the good bytes (listings and heads), but serves the bad ones.
    const b = overrideStore(inner, {
      list: async function* () {
        for await (const i of inner.list()) yield i.type === 'object' ? { ...i, etag: honest.etag, checksums: honest.checksums } : i;
      },
      head: async () => honest,
      get: async (key: string, opts?: GetOptions) => {
        const r = await inner.get(key, { ...opts, verify: false });
        return { ...r, meta: { ...r.meta, checksums: honest.checksums } };
      },
    });
    expect(treesMatch(await verifyTrees(a, b))).toBe(true); // digests alone are fooled
    const r = await verifyTrees(a, b, { download: true });
    expect(r.differing).toBe(1);
    expect(r.problems[0]!.reason).toMatch(/b's bytes do not match its recorded sha256/);
  });

  it('size-only matches equal sizes without looking at contents', async () => {
    const a = new MemoryStore();
    const b = new MemoryStore();
    await a.put('k', 'AAAA');
    await b.put('k', 'BBBB');
    const r = await verifyTrees(a, b, { checksum: 'size-only' });
    expect(r.matchedBy).toEqual({ 'size-only': 1 });
  });
});

describe('mergeListings', () => {
  it('joins two listings in UTF-8 byte order, not UTF-16 order', async () => {
    const s = (key: string): ObjectSummary => ({ key, size: 0, etag: '', lastModified: new Date(0) });
    // U+FF5E sorts before U+1F600 in UTF-8, after its surrogate pair in UTF-16.
    async function* left() {
      yield* ['a', '\uff5e', '😀'].map(s);
    }
    async function* right() {
      yield* ['\uff5e', 'z-not-in-left', '😀'].map(s);
    }
    const out = [];
    for await (const m of mergeListings(left(), right(), 1)) out.push([m.key, !!m.src, !!m.dst]);
    expect(out).toEqual([['a', true, false], ['\uff5e', true, true], ['z-not-in-left', false, true], ['😀', true, true]]);
  });
});
