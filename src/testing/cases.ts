// Over 500 lines on purpose: the conformance suite's catalogue, one exported function per behaviour (CONVENTIONS 6), each independent of the others.
import { Readable } from 'node:stream';
import { expect } from './vitest.js';
import { collect } from '../core/body.js';
import { CloudmuxError, type ErrorCode } from '../core/errors.js';
import { getBuffer, listAll } from '../core/helpers.js';
import { compareKeys } from '../core/keys.js';
import { SHA256_KEY } from '../core/metadata.js';
import type { BlobStore, ListItem } from '../core/types.js';
import { generatedStream, pseudoRandomBytes, sha256Hex, sha256OfStream } from './data.js';
import { partResetMidSend as partReset, type PartFaultHarness } from './part-reset.js';

/** What every case gets: the store and a prefix no other case or run uses. */
export interface CaseContext {
  store: BlobStore;
  /** Unique per case and run, ends with `/`. Every key a case writes starts with it. */
  prefix: string;
  /**
   * Bytes a 64 MiB streamed put may hold in memory at once (for streaming stores). The suite checks
   * the retained external memory while the body flows.
   */
  memoryBudget: number;
  /** Flips one stored byte of `key` behind the store's back, if the harness can. */
  corrupt?: (store: BlobStore, key: string) => Promise<void>;
  /** Calls `skip(reason)` to mark the case skipped with a reason (vitest's context.skip). */
  skip: (reason: string) => void;
  /** For stores that declare `multipartPut`: a proxied twin whose part requests can be reset. */
  partFaults?: PartFaultHarness;
}

export type ConformanceCase = (ctx: CaseContext) => Promise<void>;

/** Asserts that `p` rejects with a CloudmuxError of `code`. */
export async function expectCode(p: Promise<unknown>, code: ErrorCode): Promise<CloudmuxError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code}, but the call succeeded`).toBeDefined();
  expect(err, `expected a CloudmuxError ${code}, got ${String(err)}`).toBeInstanceOf(CloudmuxError);
  expect((err as CloudmuxError).code, `expected ${code}, got ${(err as CloudmuxError).code}: ${(err as Error).message}`).toBe(code);
  return err as CloudmuxError;
}

async function keysUnder(store: BlobStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const item of store.list({ prefix })) if (item.type === 'object') out.push(item.key);
  return out;
}

async function putMany(store: BlobStore, keys: string[], concurrency = 16): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, keys.length) }, async () => {
    while (i < keys.length) {
      const k = keys[i++]!;
      await store.put(k, k);
    }
  }));
}

function itemName(i: ListItem): string {
  return i.type === 'object' ? i.key : i.prefix;
}

// ---------------------------------------------------------------------------------------------
// Round trips

export const roundTripSizes: ConformanceCase = async ({ store, prefix }) => {
  const bodies: [string, Buffer][] = [
    ['empty', Buffer.alloc(0)],
    ['one', Buffer.from([0x42])],
    ['all-bytes', Buffer.from(Array.from({ length: 256 }, (_, i) => i))],
    ['one-mib', pseudoRandomBytes(1024 * 1024, 'one-mib')],
  ];
  for (const [name, data] of bodies) {
    const key = `${prefix}${name}`;
    const meta = await store.put(key, data);
    expect(meta.key).toBe(key);
    expect(meta.size).toBe(data.byteLength);
    expect(meta.checksums.sha256).toBe(sha256Hex(data));
    expect(meta.metadata[SHA256_KEY]).toBe(sha256Hex(data));
    expect(meta.etag).toBeTruthy();
    const head = await store.head(key);
    expect(head.size).toBe(data.byteLength);
    expect(head.etag).toBe(meta.etag);
    expect(head.checksums.sha256).toBe(sha256Hex(data));
    const got = await store.get(key);
    expect(got.meta.size).toBe(data.byteLength);
    const bytes = await collect(got.body);
    expect(bytes.equals(data), `${name} bytes differ`).toBe(true);
  }
};

export const bodyKinds: ConformanceCase = async ({ store, prefix }) => {
  const data = pseudoRandomBytes(200_000, 'kinds');
  const kinds: [string, () => Parameters<BlobStore['put']>[1]][] = [
    ['uint8array', () => new Uint8Array(data)],
    ['buffer', () => data],
    ['string', () => 'héllo wörld ✓'],
    ['readable', () => Readable.from([data.subarray(0, 1000), data.subarray(1000)])],
    ['async-iterable', () => (async function* () {
      yield data.subarray(0, 7);
      yield new Uint8Array(0);
      yield data.subarray(7);
    })()],
  ];
  for (const [name, make] of kinds) {
    const key = `${prefix}${name}`;
    await store.put(key, make());
    const expected = name === 'string' ? Buffer.from('héllo wörld ✓', 'utf8') : data;
    expect((await getBuffer(store, key)).equals(expected), `${name} round trip`).toBe(true);
  }
};

/** Sample retained external memory (after a GC) while a 64 MiB body streams in. */
export const streamedLargePut: ConformanceCase = async ({ store, prefix, memoryBudget, skip }) => {
  const size = 64 * 1024 * 1024;
  const gc = (globalThis as { gc?: () => void }).gc;
  const measure = store.capabilities.streaming && gc !== undefined;
  let baseline = 0;
  let peak = 0;
  if (measure) {
    gc();
    baseline = process.memoryUsage().arrayBuffers;
  }
  const gen = generatedStream(size, {
    seed: 'large',
    onChunk: (done) => {
      if (measure && done % (8 * 1024 * 1024) === 0 && done > 0) {
        gc();
        peak = Math.max(peak, process.memoryUsage().arrayBuffers - baseline);
      }
    },
  });
  const key = `${prefix}large`;
  const meta = await store.put(key, gen.stream);
  expect(meta.size).toBe(size);
  expect(meta.checksums.sha256).toBe(gen.sha256());
  const got = await store.get(key, { verify: true });
  const read = await sha256OfStream(got.body);
  expect(read.bytes).toBe(size);
  expect(read.sha256).toBe(gen.sha256());
  if (measure) {
    expect(peak, `held ${(peak / 2 ** 20).toFixed(1)} MiB of a 64 MiB body; budget ${(memoryBudget / 2 ** 20).toFixed(1)} MiB`).toBeLessThan(memoryBudget);
  } else if (!store.capabilities.streaming) {
    skip(`memory bound not checked: ${store.provider} declares streaming: false (bytes verified)`);
  } else {
    skip('memory bound not checked: run node with --expose-gc (bytes verified)');
  }
};

// ---------------------------------------------------------------------------------------------
// Keys

export const oddKeys: ConformanceCase = async ({ store, prefix }) => {
  const nfc = 'caf\u00e9';
  const nfd = 'cafe\u0301';
  const names = [
    'with space', 'plus+sign', 'percent%20', 'hash#tag', 'question?mark', 'amp&ersand', 'equals=sign',
    'colon:semi;', 'quote\'"', 'brackets[]{}()', 'tilde~at@dollar$', 'comma,bang!star*',
    '日本語/キー', 'emoji😀/x', 'greek/αβγ', nfc, nfd, 'dots.in.name', 'a/b/c/d/e/f',
    `long-seg-${'s'.repeat(290)}`,
  ];
  const fill = prefix.length + 'max/'.length;
  const segs: string[] = [];
  let remaining = 1024 - fill;
  while (remaining > 0) {
    const n = Math.min(100, remaining - (segs.length > 0 ? 1 : 0));
    if (n <= 0) break;
    segs.push('k'.repeat(n));
    remaining -= n + (segs.length > 1 ? 1 : 0);
  }
  const maxKey = `max/${segs.join('/')}`;
  const keys = [...names, maxKey].map((n) => `${prefix}${n}`);
  expect(Buffer.byteLength(keys[keys.length - 1]!, 'utf8')).toBeLessThanOrEqual(1024);
  for (const key of keys) await store.put(key, `body of ${key}`);
  for (const key of keys) {
    expect((await getBuffer(store, key)).toString('utf8'), key).toBe(`body of ${key}`);
  }
  // NFC and NFD spellings are different keys with different bodies.
  expect((await getBuffer(store, `${prefix}${nfc}`)).toString()).not.toBe((await getBuffer(store, `${prefix}${nfd}`)).toString());
  const listed = await keysUnder(store, prefix);
  expect(listed).toEqual([...keys].sort(compareKeys));
};

export const invalidKeysRejected: ConformanceCase = async ({ store, prefix }) => {
  const bad = [
    '', `${prefix}a//b`, `${prefix}a/./b`, `${prefix}a/../b`, `${prefix}trailing/`, `/${prefix}lead`,
    `${prefix}back\\slash`, `${prefix}nul\u0000`, `${prefix}tab\t`, `${prefix}del\u007f`, `${prefix}lone\ud800`,
    `${prefix}${'x'.repeat(1025)}`, '..', '.', `${prefix}..`,
  ];
  for (const key of bad) {
    await expectCode(store.put(key, 'x'), 'InvalidKey');
    await expectCode(store.get(key), 'InvalidKey');
    await expectCode(store.head(key), 'InvalidKey');
    await expectCode(store.delete(key), 'InvalidKey');
    await expectCode(store.copy(key, `${prefix}ok`), 'InvalidKey');
  }
  await expectCode(store.copy(`${prefix}ok-src`, `${prefix}a/../b`), 'InvalidKey');
  expect(await keysUnder(store, prefix)).toEqual([]);
};

// ---------------------------------------------------------------------------------------------
// Metadata

export const metadataRoundTrip: ConformanceCase = async ({ store, prefix }) => {
  const key = `${prefix}meta`;
  const metadata = { owner: 'team_a', n: '42', spaced_value: 'a b c', symbols: '!#$%&()*+,-./:;<=>?@[]^_`{|}~' };
  const put = await store.put(key, 'x', { contentType: 'text/plain; charset=utf-8', metadata });
  expect(put.contentType).toBe('text/plain; charset=utf-8');
  for (const m of [put, await store.head(key), (await store.get(key)).meta]) {
    expect(m.contentType).toBe('text/plain; charset=utf-8');
    for (const [k, v] of Object.entries(metadata)) expect(m.metadata[k], k).toBe(v);
  }
};

export const invalidMetadataRejected: ConformanceCase = async ({ store, prefix }) => {
  const key = `${prefix}bad-meta`;
  const bad: Record<string, string>[] = [{ 'has-hyphen': 'x' }, { Upper: 'x' }, { '9lead': 'x' }, { ok: 'naïve' }, { ok: 'line\nbreak' }, { big: 'x'.repeat(2100) }];
  for (const metadata of bad) {
    await expectCode(store.put(key, 'x', { metadata }), 'InvalidArgument');
  }
  expect(await keysUnder(store, prefix)).toEqual([]);
};

/**
 * Names starting `cloudmux_` record the digest and the encryption header: a caller's value must
 * never stand in for them. Every write path refuses them with InvalidArgument and changes nothing.
 */
export const reservedMetadataRefused: ConformanceCase = async ({ store, prefix }) => {
  const key = `${prefix}reserved`;
  const fake = sha256Hex('not these bytes');
  const reserved: Record<string, string>[] = [{ [SHA256_KEY]: fake }, { cloudmux_enc: '1' }, { ok: 'x', cloudmux_anything: 'y' }];
  for (const metadata of reserved) await expectCode(store.put(key, 'x', { metadata }), 'InvalidArgument');
  expect(await keysUnder(store, prefix)).toEqual([]);

  const data = pseudoRandomBytes(1000, 'reserved');
  const put = await store.put(key, data, { metadata: { color: 'blue' } });
  for (const metadata of reserved) {
    await expectCode(store.updateMetadata(key, { metadata }), 'InvalidArgument');
    await expectCode(store.copy(key, `${prefix}copy`, { metadata }), 'InvalidArgument');
  }
  const head = await store.head(key);
  expect(head.etag).toBe(put.etag);
  expect(head.metadata.color).toBe('blue');
  expect(head.checksums.sha256).toBe(sha256Hex(data));
  for (const name of Object.keys(head.metadata)) if (name !== SHA256_KEY) expect(reserved.some((m) => name in m && m[name] === head.metadata[name])).toBe(false);
  expect((await collect((await store.get(key, { verify: true })).body)).equals(data)).toBe(true);
  expect(await keysUnder(store, prefix)).toEqual([key]);
};

export const etagChangesOnOverwrite: ConformanceCase = async ({ store, prefix }) => {
  const key = `${prefix}etag`;
  const a = await store.put(key, 'first');
  const b = await store.put(key, 'second, longer');
  expect(b.etag).not.toBe(a.etag);
  expect((await store.head(key)).etag).toBe(b.etag);
  expect((await getBuffer(store, key)).toString()).toBe('second, longer');
};

// ---------------------------------------------------------------------------------------------
// Ranges

export const ranges: ConformanceCase = async ({ store, prefix }) => {
  const data = pseudoRandomBytes(100_000, 'ranges');
  const key = `${prefix}r`;
  await store.put(key, data);
  const check = async (range: Parameters<BlobStore['get']>[1], start: number, end: number): Promise<void> => {
    const got = await store.get(key, range);
    const bytes = await collect(got.body);
    expect(bytes.equals(data.subarray(start, end)), `range ${JSON.stringify(range)}`).toBe(true);
    expect(got.range).toEqual({ offset: start, length: end - start });
    expect(got.meta.size).toBe(data.byteLength);
  };
  await check({ range: { offset: 0, length: 10 } }, 0, 10);
  await check({ range: { offset: 12_345, length: 54_321 } }, 12_345, 12_345 + 54_321);
  await check({ range: { offset: 99_000 } }, 99_000, 100_000);
  await check({ range: { offset: 99_990, length: 1_000 } }, 99_990, 100_000);
  await check({ range: { offset: 99_999, length: 1 } }, 99_999, 100_000);
  await expectCode(store.get(key, { range: { offset: 100_000 } }), 'InvalidRange');
  await expectCode(store.get(key, { range: { offset: 200_000, length: 5 } }), 'InvalidRange');
  await expectCode(store.get(key, { range: { offset: -1 } }), 'InvalidRange');
  await expectCode(store.get(key, { range: { offset: 0, length: 0 } }), 'InvalidRange');
};

export const suffixRanges: ConformanceCase = async ({ store, prefix }) => {
  const data = pseudoRandomBytes(10_000, 'suffix');
  const key = `${prefix}s`;
  await store.put(key, data);
  const last = await store.get(key, { range: { suffix: 100 } });
  expect((await collect(last.body)).equals(data.subarray(9_900))).toBe(true);
  expect(last.range).toEqual({ offset: 9_900, length: 100 });
  const all = await store.get(key, { range: { suffix: 50_000 } });
  expect((await collect(all.body)).equals(data)).toBe(true);
  await expectCode(store.get(key, { range: { suffix: 0 } }), 'InvalidRange');
};

// ---------------------------------------------------------------------------------------------
// Missing keys and deletes

export const missingKeys: ConformanceCase = async ({ store, prefix }) => {
  const key = `${prefix}nope`;
  await expectCode(store.get(key), 'NotFound');
  await expectCode(store.head(key), 'NotFound');
  await expectCode(store.copy(key, `${prefix}dst`), 'NotFound');
  await expectCode(store.updateMetadata(key, { metadata: { a: 'b' } }), 'NotFound');
  await store.delete(key);
  expect(await keysUnder(store, prefix)).toEqual([]);
};

export const deleteRemoves: ConformanceCase = async ({ store, prefix }) => {
  const key = `${prefix}d`;
  await store.put(key, 'x');
  await store.delete(key);
  await expectCode(store.head(key), 'NotFound');
  await store.delete(key);
};

/** `delete` with `ifMatch` deletes only the version named, atomically; NotSupported without the capability. */
export const conditionalDelete: ConformanceCase = async ({ store, prefix }) => {
  const key = `${prefix}cd`;
  const first = await store.put(key, 'v1');
  if (!store.capabilities.conditionalDelete) {
    await expectCode(store.delete(key, { ifMatch: first.etag }), 'NotSupported');
    expect((await store.head(key)).etag).toBe(first.etag);
    return;
  }
  const second = await store.put(key, 'v2, longer');
  await expectCode(store.delete(key, { ifMatch: first.etag }), 'PreconditionFailed');
  await expectCode(store.delete(key, { ifMatch: 'no-such-etag' }), 'PreconditionFailed');
  expect((await getBuffer(store, key)).toString()).toBe('v2, longer');
  await store.delete(key, { ifMatch: second.etag });
  await expectCode(store.head(key), 'NotFound');
  // Idempotent like any delete: the version named is gone either way.
  await store.delete(key, { ifMatch: second.etag });
  expect(await keysUnder(store, prefix)).toEqual([]);
};

export const deleteManyMix: ConformanceCase = async ({ store, prefix }) => {
  const present = Array.from({ length: 25 }, (_, i) => `${prefix}p${String(i).padStart(2, '0')}`);
  await putMany(store, present);
  const missing = [`${prefix}missing-1`, `${prefix}missing-2`];
  const keep = `${prefix}keep`;
  await store.put(keep, 'k');
  const res = await store.deleteMany([...present, ...missing, `${prefix}bad//key`]);
  expect(new Set(res.deleted)).toEqual(new Set([...present, ...missing]));
  expect(res.errors.map((e) => e.key)).toEqual([`${prefix}bad//key`]);
  expect((res.errors[0]!.error as CloudmuxError).code).toBe('InvalidKey');
  expect(await keysUnder(store, prefix)).toEqual([keep]);
};

// ---------------------------------------------------------------------------------------------
// Conditions

export const conditionalPut: ConformanceCase = async ({ store, prefix }) => {
  const key = `${prefix}cas`;
  if (!store.capabilities.conditionalPut) {
    await expectCode(store.put(key, 'x', { ifNoneMatch: '*' }), 'NotSupported');
    await expectCode(store.put(key, 'x', { ifMatch: 'abc' }), 'NotSupported');
    expect(await keysUnder(store, prefix)).toEqual([]);
    return;
  }
  const first = await store.put(key, 'v1', { ifNoneMatch: '*' });
  await expectCode(store.put(key, 'v1-again', { ifNoneMatch: '*' }), 'AlreadyExists');
  const second = await store.put(key, 'v2', { ifMatch: first.etag });
  await expectCode(store.put(key, 'v3', { ifMatch: first.etag }), 'PreconditionFailed');
  expect((await getBuffer(store, key)).toString()).toBe('v2');
  expect((await store.head(key)).etag).toBe(second.etag);
  await expectCode(store.put(`${prefix}absent`, 'x', { ifMatch: first.etag }), 'NotFound');
};

export const conditionalPutRace: ConformanceCase = async ({ store, prefix }) => {
  const key = `${prefix}race`;
  if (!store.capabilities.conditionalPut) {
    await expectCode(store.put(key, 'x', { ifNoneMatch: '*' }), 'NotSupported');
    return;
  }
  const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => store.put(key, `writer ${i}`, { ifNoneMatch: '*' })));
  const winners = results.filter((r) => r.status === 'fulfilled');
  expect(winners.length).toBe(1);
  for (const r of results) {
    if (r.status === 'rejected') expect((r.reason as CloudmuxError).code).toMatch(/^(AlreadyExists|PreconditionFailed)$/);
  }
  const body = (await getBuffer(store, key)).toString();
  const winnerIndex = results.findIndex((r) => r.status === 'fulfilled');
  expect(body).toBe(`writer ${winnerIndex}`);
};

/** Compare-and-swap increments from several workers: none lost (object_store's put_opts case). */
export const conditionalPutCounter: ConformanceCase = async ({ store, prefix }) => {
  const key = `${prefix}counter`;
  if (!store.capabilities.conditionalPut) return;
  await store.put(key, '0', { ifNoneMatch: '*' });
  const worker = async (): Promise<void> => {
    for (let done = 0; done < 5;) {
      const { meta, body } = await store.get(key);
      const n = Number((await collect(body)).toString());
      try {
        await store.put(key, String(n + 1), { ifMatch: meta.etag });
        done++;
      } catch (e) {
        if (!(e instanceof CloudmuxError && e.code === 'PreconditionFailed')) throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  expect((await getBuffer(store, key)).toString()).toBe('20');
};

export const getConditions: ConformanceCase = async ({ store, prefix }) => {
  const key = `${prefix}gc`;
  const meta = await store.put(key, 'data');
  expect((await getBuffer(store, key, { ifMatch: meta.etag })).toString()).toBe('data');
  await expectCode(store.get(key, { ifMatch: 'not-the-etag' }), 'PreconditionFailed');
  await expectCode(store.get(key, { ifNoneMatch: meta.etag }), 'NotModified');
  expect((await getBuffer(store, key, { ifNoneMatch: 'other' })).toString()).toBe('data');
};

// ---------------------------------------------------------------------------------------------
// Listing

export const listPrefixAndDelimiter: ConformanceCase = async ({ store, prefix }) => {
  const names = ['a', 'b/1', 'b/2', 'b/c/3', 'b0', 'c/x', 'd'];
  await putMany(store, names.map((n) => `${prefix}${n}`));
  const flat = await listAll(store, { prefix });
  expect(flat.map(itemName)).toEqual(names.map((n) => `${prefix}${n}`));
  for (const item of flat) {
    expect(item.type).toBe('object');
    if (item.type === 'object') {
      expect(item.size).toBe(item.key.length);
      expect(item.etag).toBeTruthy();
      expect(item.lastModified).toBeInstanceOf(Date);
    }
  }
  const top = await listAll(store, { prefix, delimiter: '/' });
  expect(top.map((i) => `${i.type}:${itemName(i)}`)).toEqual([
    `object:${prefix}a`, `prefix:${prefix}b/`, `object:${prefix}b0`, `prefix:${prefix}c/`, `object:${prefix}d`,
  ]);
  const sub = await listAll(store, { prefix: `${prefix}b/`, delimiter: '/' });
  expect(sub.map((i) => `${i.type}:${itemName(i)}`)).toEqual([`object:${prefix}b/1`, `object:${prefix}b/2`, `prefix:${prefix}b/c/`]);
  const partial = await listAll(store, { prefix: `${prefix}b` });
  expect(partial.map(itemName)).toEqual(['b/1', 'b/2', 'b/c/3', 'b0'].map((n) => `${prefix}${n}`));
  expect(await listAll(store, { prefix: `${prefix}zzz` })).toEqual([]);
};

export const listStartAfter: ConformanceCase = async ({ store, prefix }) => {
  const names = ['k1', 'k2', 'k3', 'k4', 'k5'].map((n) => `${prefix}${n}`);
  await putMany(store, names);
  expect((await listAll(store, { prefix, startAfter: `${prefix}k2` })).map(itemName)).toEqual(names.slice(2));
  expect((await listAll(store, { prefix, startAfter: `${prefix}k25` })).map(itemName)).toEqual(names.slice(2));
  expect((await listAll(store, { prefix, startAfter: `${prefix}k5` })).map(itemName)).toEqual([]);
  expect((await listAll(store, { prefix, startAfter: `${prefix}` })).map(itemName)).toEqual(names);
};

export const listPagination: ConformanceCase = async ({ store, prefix }) => {
  const names = Array.from({ length: 1500 }, (_, i) => `${prefix}p/${String(i).padStart(5, '0')}`);
  await putMany(store, names, 32);
  const seen: string[] = [];
  for await (const item of store.list({ prefix: `${prefix}p/`, pageSize: 100 })) seen.push(itemName(item));
  expect(seen.length).toBe(1500);
  expect(seen).toEqual(names);
  // Pages are fetched lazily: stopping early must not be an error.
  let n = 0;
  for await (const _ of store.list({ prefix: `${prefix}p/`, pageSize: 100 })) if (++n === 150) break;
  expect(n).toBe(150);
};

export const listByteOrder: ConformanceCase = async ({ store, prefix }) => {
  // UTF-16 order puts U+1F600 (surrogates D83D…) before U+FF5E; UTF-8 byte order puts it after.
  const names = ['A', 'a', 'z', '~', '\u00e9', '\uff5e', '\u{1f600}', '\u{10000}'].map((n) => `${prefix}${n}`);
  await putMany(store, names);
  const listed = (await listAll(store, { prefix })).map(itemName);
  const byteOrder = [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  expect(listed).toEqual(byteOrder);
  const after = (await listAll(store, { prefix, startAfter: `${prefix}\uff5e` })).map(itemName);
  expect(after).toEqual(byteOrder.slice(byteOrder.indexOf(`${prefix}\uff5e`) + 1));
};

// ---------------------------------------------------------------------------------------------
// Copy and metadata updates

export const copyKeepsBytesAndMetadata: ConformanceCase = async ({ store, prefix }) => {
  const data = pseudoRandomBytes(300_000, 'copy');
  const src = `${prefix}src`;
  await store.put(src, data, { contentType: 'application/x-test', metadata: { color: 'blue' } });
  const meta = await store.copy(src, `${prefix}dst/copy`);
  expect(meta.size).toBe(data.byteLength);
  const got = await store.get(`${prefix}dst/copy`);
  expect((await collect(got.body)).equals(data)).toBe(true);
  expect(got.meta.contentType).toBe('application/x-test');
  expect(got.meta.metadata.color).toBe('blue');
  expect(got.meta.checksums.sha256).toBe(sha256Hex(data));
  const replaced = await store.copy(src, `${prefix}dst/replaced`, { metadata: { color: 'red' }, contentType: 'text/plain' });
  expect(replaced.metadata.color).toBe('red');
  const head = await store.head(`${prefix}dst/replaced`);
  expect(head.metadata.color).toBe('red');
  expect(head.contentType).toBe('text/plain');
  expect(head.checksums.sha256).toBe(sha256Hex(data));
  // Source untouched.
  expect((await store.head(src)).metadata.color).toBe('blue');
};

export const copyConditions: ConformanceCase = async ({ store, prefix }) => {
  const src = `${prefix}src`;
  const dst = `${prefix}dst`;
  const meta = await store.put(src, 'source');
  await expectCode(store.copy(src, dst, { sourceIfMatch: 'wrong-etag' }), 'PreconditionFailed');
  await store.copy(src, dst, { sourceIfMatch: meta.etag });
  if (store.capabilities.conditionalPut) {
    await expectCode(store.copy(src, dst, { ifNoneMatch: '*' }), 'AlreadyExists');
    await store.copy(src, `${prefix}fresh`, { ifNoneMatch: '*' });
  } else {
    await expectCode(store.copy(src, `${prefix}fresh`, { ifNoneMatch: '*' }), 'NotSupported');
  }
};

export const updateMetadataKeepsBytes: ConformanceCase = async ({ store, prefix }) => {
  const key = `${prefix}um`;
  const data = pseudoRandomBytes(50_000, 'um');
  const first = await store.put(key, data, { contentType: 'application/x-a', metadata: { a: '1', b: '2' } });
  const updated = await store.updateMetadata(key, { metadata: { c: '3' } });
  expect(updated.metadata.c).toBe('3');
  const head = await store.head(key);
  expect(head.metadata.c).toBe('3');
  expect(head.metadata.a).toBeUndefined();
  expect(head.checksums.sha256).toBe(sha256Hex(data));
  expect(head.contentType).toBe('application/x-a');
  expect((await getBuffer(store, key)).equals(data)).toBe(true);
  await expectCode(store.updateMetadata(key, { metadata: { d: '4' }, ifMatch: first.etag === head.etag ? 'stale-etag' : first.etag }), 'PreconditionFailed');
  await expectCode(store.updateMetadata(key, { metadata: { 'bad-name': 'x' } }), 'InvalidArgument');
};

// ---------------------------------------------------------------------------------------------
// Failures leave nothing half-done

export const abortedPutLeavesNothing: ConformanceCase = async ({ store, prefix }) => {
  const key = `${prefix}aborted`;
  const ac = new AbortController();
  const gen = generatedStream(24 * 1024 * 1024, { seed: 'abort', onChunk: (done) => { if (done >= 12 * 1024 * 1024) ac.abort(); } });
  await expectCode(store.put(key, gen.stream, { signal: ac.signal }), 'Aborted');
  await expectCode(store.head(key), 'NotFound');
  // Overwrite aborted: the old object stays whole.
  await store.put(key, 'old');
  const ac2 = new AbortController();
  const gen2 = generatedStream(24 * 1024 * 1024, { seed: 'abort2', onChunk: (done) => { if (done >= 12 * 1024 * 1024) ac2.abort(); } });
  await expectCode(store.put(key, gen2.stream, { signal: ac2.signal }), 'Aborted');
  expect((await getBuffer(store, key)).toString()).toBe('old');
  // Already aborted: nothing is sent.
  await expectCode(store.put(`${prefix}pre`, 'x', { signal: AbortSignal.abort() }), 'Aborted');
  await expectCode(store.head(`${prefix}pre`), 'NotFound');
};

export const failingBodyLeavesNothing: ConformanceCase = async ({ store, prefix }) => {
  const key = `${prefix}failing`;
  async function* failing(): AsyncGenerator<Buffer> {
    yield pseudoRandomBytes(1024 * 1024, 'f1');
    throw new Error('source went away');
  }
  await expect(store.put(key, failing())).rejects.toThrow();
  await expectCode(store.head(key), 'NotFound');
};

export const expectedChecksumMismatch: ConformanceCase = async ({ store, prefix }) => {
  const key = `${prefix}expect`;
  await expectCode(store.put(key, 'payload', { expect: { sha256: sha256Hex('something else') } }), 'IntegrityError');
  await expectCode(store.head(key), 'NotFound');
  const ok = await store.put(key, 'payload', { expect: { sha256: sha256Hex('payload') } });
  expect(ok.checksums.sha256).toBe(sha256Hex('payload'));
};

export const overwriteWhileReading: ConformanceCase = async ({ store, prefix }) => {
  const key = `${prefix}ow`;
  const v1 = pseudoRandomBytes(4 * 1024 * 1024, 'v1');
  const v2 = pseudoRandomBytes(4 * 1024 * 1024, 'v2');
  await store.put(key, v1);
  const { body } = await store.get(key);
  const chunks: Buffer[] = [];
  let overwritten = false;
  for await (const c of body) {
    chunks.push(Buffer.from(c as Buffer));
    if (!overwritten) {
      overwritten = true;
      await store.put(key, v2);
    }
  }
  const read = Buffer.concat(chunks);
  expect(read.equals(v1) || read.equals(v2), 'a read must see one whole version').toBe(true);
  expect((await getBuffer(store, key)).equals(v2)).toBe(true);
};

// ---------------------------------------------------------------------------------------------
// Integrity

export const verifiedReads: ConformanceCase = async ({ store, prefix, corrupt, skip }) => {
  const key = `${prefix}v`;
  const data = pseudoRandomBytes(300_000, 'verify');
  await store.put(key, data);
  expect((await getBuffer(store, key, { verify: true })).equals(data)).toBe(true);
  if (!corrupt) {
    skip('corruption not checked: the harness has no way to flip a stored byte behind this store');
    return;
  }
  await corrupt(store, key);
  await expectCode(getBuffer(store, key, { verify: true }), 'IntegrityError');
};

export const presignedUrls: ConformanceCase = async ({ store, prefix }) => {
  const key = `${prefix}presigned`;
  if (!store.capabilities.presign) {
    await expectCode(store.presign(key, { method: 'GET', expiresIn: 60 }), 'NotSupported');
    return;
  }
  const putUrl = await store.presign(key, { method: 'PUT', expiresIn: 300, contentType: 'text/plain' });
  const put = await fetch(putUrl, { method: 'PUT', body: 'via url', headers: { 'content-type': 'text/plain', 'x-ms-blob-type': 'BlockBlob' } });
  expect(put.ok, `PUT ${put.status} ${await put.text()}`).toBe(true);
  const getUrl = await store.presign(key, { method: 'GET', expiresIn: 300 });
  const got = await fetch(getUrl);
  expect(got.status).toBe(200);
  expect(await got.text()).toBe('via url');
  expect(putUrl).not.toMatch(/secret/i);
};

export const toStringSafe: ConformanceCase = async ({ store }) => {
  const s = store.toString();
  expect(typeof s).toBe('string');
  expect(s.length).toBeGreaterThan(0);
  for (const env of ['AWS_SECRET_ACCESS_KEY', 'AZURE_STORAGE_CONNECTION_STRING']) {
    const v = process.env[env];
    if (v && v.length > 8) expect(s).not.toContain(v);
  }
};

/** A streamed multi-part put with one part reset mid-send succeeds without re-sending the other parts (`multipartPut` stores). */
export const partResetMidSend: ConformanceCase = ({ store, prefix, partFaults }) => partReset(store, prefix, partFaults);

/** Every case, by name. Harnesses refer to these names in `deviations`. */
export const conformanceCases = {
  roundTripSizes,
  bodyKinds,
  streamedLargePut,
  oddKeys,
  invalidKeysRejected,
  metadataRoundTrip,
  invalidMetadataRejected,
  reservedMetadataRefused,
  etagChangesOnOverwrite,
  ranges,
  suffixRanges,
  missingKeys,
  deleteRemoves,
  conditionalDelete,
  deleteManyMix,
  conditionalPut,
  conditionalPutRace,
  conditionalPutCounter,
  getConditions,
  listPrefixAndDelimiter,
  listStartAfter,
  listPagination,
  listByteOrder,
  copyKeepsBytesAndMetadata,
  copyConditions,
  updateMetadataKeepsBytes,
  abortedPutLeavesNothing,
  failingBodyLeavesNothing,
  partResetMidSend,
  expectedChecksumMismatch,
  overwriteWhileReading,
  verifiedReads,
  presignedUrls,
  toStringSafe,
} satisfies Record<string, ConformanceCase>;

export type CaseName = keyof typeof conformanceCases;
