import fc from 'fast-check';
import * as Y from 'yjs';
import { describe, expect, it } from 'vitest';
import { isCloudmuxError } from '../../src/core/errors.js';
import { getMerger, mergers, MergerRegistry, type MergeResult, type Merger } from '../../src/sync/merge/index.js';
import { createTextMerger, splitLines } from '../../src/sync/merge/text-merger.js';
import { historySeed } from '../history/seed.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (r: MergeResult): string => {
  if (r.kind !== 'merged') throw new Error(`expected a merge, got a conflict: ${r.reason}`);
  return new TextDecoder().decode(r.bytes);
};
const text = getMerger('text');
const yjs = getMerger('yjs');

describe('merger registry', () => {
  it('has yjs and text; an unknown name is InvalidConfig naming the known ones', () => {
    expect(mergers.names()).toEqual(expect.arrayContaining(['text', 'yjs']));
    const err = (() => { try { getMerger('ot'); } catch (e) { return e; } })();
    expect(isCloudmuxError(err, 'InvalidConfig')).toBe(true);
    expect(String((err as Error).message)).toMatch(/unknown merger "ot"; known: .*text.*yjs/);
  });

  it('takes custom mergers; refuses bad and duplicate names', async () => {
    const reg = new MergerRegistry();
    const concat: Merger = { name: 'concat', maxBytes: 10, merge: async (i) => ({ kind: 'merged', bytes: new Uint8Array([...i.local, ...i.remote]) }) };
    reg.register(concat);
    expect(await reg.get('concat').merge({ path: 'p', local: enc('a'), remote: enc('b') })).toEqual({ kind: 'merged', bytes: enc('ab') });
    expect(() => reg.register(concat)).toThrow(/already registered/);
    expect(() => reg.register({ ...concat, name: 'Bad Name' })).toThrow(/merger name/);
  });
});

describe('text merger (diff3 against the base)', () => {
  const base = 'one\ntwo\nthree\nfour\nfive\n';

  it('merges edits to different lines', async () => {
    const local = 'ONE\ntwo\nthree\nfour\nfive\n';
    const remote = 'one\ntwo\nthree\nfour\nFIVE\nsix\n';
    expect(dec(await text.merge({ path: 'a.txt', base: enc(base), local: enc(local), remote: enc(remote) }))).toBe('ONE\ntwo\nthree\nfour\nFIVE\nsix\n');
  });

  it('overlapping edits are a conflict; the same edit on both sides is not', async () => {
    const r = await text.merge({ path: 'a.txt', base: enc(base), local: enc(base.replace('three', 'THREE')), remote: enc(base.replace('three', '3')) });
    expect(r).toEqual({ kind: 'conflict', reason: expect.stringMatching(/overlapping edits near line 3/) });
    const same = base.replace('three', 'THREE');
    expect(dec(await text.merge({ path: 'a.txt', base: enc(base), local: enc(`x\n${same}`), remote: enc(same) }))).toBe(`x\n${same}`);
  });

  it('keeps CRLF line endings and a missing final newline as written', async () => {
    const crlf = 'a\r\nb\r\nc\r\nd\r\n';
    expect(dec(await text.merge({ path: 'w.txt', base: enc(crlf), local: enc(crlf.replace('a', 'A')), remote: enc(crlf.replace('d', 'D')) }))).toBe('A\r\nb\r\nc\r\nD\r\n');
    const open = 'a\nb\nc\nd';
    expect(dec(await text.merge({ path: 'n.txt', base: enc(open), local: enc(open.replace('a', 'A')), remote: enc(open.replace('d', 'D')) }))).toBe('A\nb\nc\nD');
    // A BOM and characters outside the BMP come through byte for byte.
    const bom = '\uFEFFa\n\u{1F600}\nc\nd\n';
    const merged = await text.merge({ path: 'b.txt', base: enc(bom), local: enc(bom.replace('a', 'A')), remote: enc(bom.replace('d', 'D')) });
    expect(merged.kind === 'merged' && Buffer.from(merged.bytes).equals(Buffer.from(enc('\uFEFFA\n\u{1F600}\nc\nD\n')))).toBe(true);
  });

  it('no base: identical sides merge, different ones conflict; binary and non-UTF-8 content conflict', async () => {
    expect(dec(await text.merge({ path: 'x', local: enc('same'), remote: enc('same') }))).toBe('same');
    expect(await text.merge({ path: 'x', local: enc('a'), remote: enc('b') })).toMatchObject({ kind: 'conflict', reason: expect.stringMatching(/no base/) });
    const withNul = new Uint8Array([...enc('a\nb\n'), 0]);
    expect(await text.merge({ path: 'x', base: enc('a\nb\n'), local: withNul, remote: enc('a\nB\n') })).toMatchObject({ kind: 'conflict', reason: 'not UTF-8 text' });
    const latin1 = new Uint8Array([0x61, 0x0a, 0xe9, 0x0a]);
    expect(await text.merge({ path: 'x', base: enc('a\nb\n'), local: latin1, remote: enc('a\nB\n') })).toMatchObject({ kind: 'conflict', reason: 'not UTF-8 text' });
  });

  it('one side unchanged: the other side wins as is (any content), inputs untouched', async () => {
    const b = new Uint8Array([1, 2, 0, 3]);
    const changed = new Uint8Array([9, 9]);
    expect(await text.merge({ path: 'x', base: b, local: b, remote: changed })).toEqual({ kind: 'merged', bytes: changed });
    expect([...b]).toEqual([1, 2, 0, 3]);
  });

  it('inputs over maxBytes are a conflict', async () => {
    const small = createTextMerger({ maxBytes: 7 });
    expect(await small.merge({ path: 'x', base: enc('a\nb\nc\nd\n'), local: enc('A\nb\nc\nd\n'), remote: enc('a\nb\nc\nD\n') })).toMatchObject({ kind: 'conflict', reason: expect.stringMatching(/limit of 7 bytes/) });
  });

  it('property: edits to separate blocks of lines always merge, into exactly both edits', async () => {
    // Base of 3 blocks separated by fixed lines; local rewrites block 0, remote block 2.
    const line = fc.stringMatching(/^[a-z ]{0,8}$/);
    const block = fc.array(line, { minLength: 1, maxLength: 4 });
    await fc.assert(fc.asyncProperty(block, block, block, block, block, fc.constantFrom('\n', '\r\n'), async (b0, b1, b2, l0, r2, eol) => {
      const join = (bs: string[][]): string => bs.map((b) => b.map((l) => l + eol).join('')).join(`--sep--${eol}`);
      const out = await text.merge({ path: 'p', base: enc(join([b0, b1, b2])), local: enc(join([l0, b1, b2])), remote: enc(join([b0, b1, r2])) });
      expect(dec(out)).toBe(join([l0, b1, r2]));
    }), { seed: historySeed('text-merge-blocks'), numRuns: 200 });
  });

  it('splitLines keeps every byte', () => {
    fc.assert(fc.property(fc.string(), (s) => {
      expect(splitLines(s).join('')).toBe(s);
    }), { seed: historySeed('split-lines'), numRuns: 500 });
  });
});

describe('yjs merger', () => {
  /** A device's copy of the document: loads the file, edits offline, saves the file. */
  function edit(file: Uint8Array | undefined, change: (doc: Y.Doc) => void): Uint8Array {
    const doc = new Y.Doc();
    if (file) Y.applyUpdate(doc, file);
    change(doc);
    return Y.encodeStateAsUpdate(doc);
  }
  const load = (bytes: Uint8Array): Y.Doc => {
    const doc = new Y.Doc();
    Y.applyUpdate(doc, bytes);
    return doc;
  };

  it('two devices editing one document offline end as one document holding both edits, whichever merges', async () => {
    const base = edit(undefined, (d) => {
      d.getText('body').insert(0, 'hello world');
      d.getMap('meta').set('title', 'draft');
    });
    const laptop = edit(base, (d) => {
      d.getText('body').insert(0, 'Oh, ');
      d.getMap('meta').set('author', 'ann');
    });
    const phone = edit(base, (d) => {
      d.getText('body').insert(11, '!');
      d.getText('body').delete(0, 5);
      d.getMap('meta').set('title', 'final');
    });
    const a = await yjs.merge({ path: 'notes.yjs', base, local: laptop, remote: phone });
    const b = await yjs.merge({ path: 'notes.yjs', base, local: phone, remote: laptop });
    if (a.kind !== 'merged' || b.kind !== 'merged') throw new Error('expected merges');
    expect(Buffer.from(a.bytes).equals(Buffer.from(b.bytes))).toBe(true);
    const doc = load(a.bytes);
    expect(doc.getText('body').toString()).toBe('Oh,  world!');
    expect(doc.getMap('meta').toJSON()).toEqual({ title: 'final', author: 'ann' });
    // Merging again with either side changes nothing (idempotent).
    const again = await yjs.merge({ path: 'notes.yjs', base, local: a.bytes, remote: laptop });
    expect(again.kind === 'merged' && load(again.bytes).getText('body').toString()).toBe('Oh,  world!');
  });

  it('content that is not a Yjs update, or an update missing its history, is a conflict', async () => {
    const good = edit(undefined, (d) => d.getText('t').insert(0, 'x'));
    expect(await yjs.merge({ path: 'a', local: enc('plain text'), remote: good })).toMatchObject({ kind: 'conflict', reason: expect.stringMatching(/^local is not a Yjs update/) });
    expect(await yjs.merge({ path: 'a', local: good, remote: new Uint8Array(0) })).toMatchObject({ kind: 'conflict', reason: expect.stringMatching(/^remote is not a Yjs update/) });
    const doc = load(good);
    const sv = Y.encodeStateVector(doc);
    doc.getText('t').insert(1, 'y');
    const deltaOnly = Y.encodeStateAsUpdate(doc, sv);
    const other = edit(undefined, (d) => d.getText('t').insert(0, 'z'));
    expect(await yjs.merge({ path: 'a', local: deltaOnly, remote: other })).toMatchObject({ kind: 'conflict', reason: expect.stringMatching(/neither version/) });
  });
});
