import { describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { MemoryStore } from '../../providers/memory/index.js';
import { collect, getText, listAll } from '../../src/core/index.js';
import type { BlobStore, GetResult, ListItem } from '../../src/core/index.js';
import { BreakerStore, InstrumentedStore, RateLimitStore, RetryStore, TimeoutStore } from '../../src/layers/index.js';
import { FaultyStore } from '../faults/faulty-store.js';

/** Every member of the contract; the type check below fails the build if BlobStore grows one. */
const _MEMBERS = ['provider', 'capabilities', 'put', 'get', 'head', 'delete', 'deleteMany', 'list', 'copy', 'updateMetadata', 'presign', 'close', 'toString'] as const;
type Missing = Exclude<keyof BlobStore, (typeof _MEMBERS)[number]>;
const covered: [Missing] extends [never] ? true : Missing = true;

/** A store that records each call and its arguments and answers with canned values. */
class RecordingStore implements BlobStore {
  readonly provider = 'rec';
  readonly capabilities = { conditionalPut: true, versioning: false, nativeChecksums: [], presign: true, streaming: true };
  readonly calls: { method: string; args: unknown[] }[] = [];
  private readonly meta = { key: 'k', size: 3, etag: 'e', lastModified: new Date(0), metadata: {}, checksums: {} };
  private note(method: string, args: unknown[]): void {
    this.calls.push({ method, args });
  }
  async put(...args: unknown[]) { this.note('put', args); for await (const _ of args[1] as AsyncIterable<unknown>) { /* drain */ } return this.meta; }
  async get(...args: unknown[]): Promise<GetResult> { this.note('get', args); return { meta: this.meta, body: Readable.from([Buffer.from('abc')]) }; }
  async head(...args: unknown[]) { this.note('head', args); return this.meta; }
  async delete(...args: unknown[]) { this.note('delete', args); }
  async deleteMany(...args: unknown[]) { this.note('deleteMany', args); return { deleted: [...(args[0] as Iterable<string>)], errors: [] }; }
  async *list(...args: unknown[]): AsyncGenerator<ListItem> { this.note('list', args); yield { type: 'object', key: 'k', size: 3, etag: 'e', lastModified: new Date(0) }; }
  async copy(...args: unknown[]) { this.note('copy', args); return this.meta; }
  async updateMetadata(...args: unknown[]) { this.note('updateMetadata', args); return this.meta; }
  async presign(...args: unknown[]) { this.note('presign', args); return 'https://signed'; }
  async close() { this.note('close', []); }
  toString() { return 'rec://'; }
}

const LAYERS: Record<string, (inner: BlobStore) => BlobStore> = {
  Retry: (s) => new RetryStore(s),
  Breaker: (s) => new BreakerStore(s),
  Timeout: (s) => new TimeoutStore(s, { timeoutMs: 10_000, stallMs: 10_000 }),
  RateLimit: (s) => new RateLimitStore(s, { opsPerSec: 1e6, bytesPerSec: 1e12 }),
  Instrumented: (s) => new InstrumentedStore(s),
  Faulty: (s) => new FaultyStore(s),
};

describe('every layer forwards every BlobStore method', () => {
  it('covers the whole interface', () => {
    expect(covered).toBe(true);
  });

  for (const [name, wrap] of Object.entries(LAYERS)) {
    it(name, async () => {
      const inner = new RecordingStore();
      const store = wrap(inner);
      const signal = new AbortController().signal;
      expect(store.provider).toBe('rec');
      expect(store.capabilities).toBe(inner.capabilities);
      expect(store.toString()).toMatch(new RegExp(`^${name}\\(.*rec://\\)$`));

      await store.put('k', 'abc', { contentType: 'text/plain', signal });
      expect((await collect((await store.get('k', { range: { offset: 1 }, signal })).body)).toString()).toBe('abc');
      await store.head('k', { signal });
      await store.delete('k', { signal });
      await store.deleteMany(['a', 'b'], { signal });
      expect(await listAll(store, { prefix: 'p/', signal })).toHaveLength(1);
      await store.copy('k', 'k2', { ifNoneMatch: '*', signal });
      await store.updateMetadata('k', { metadata: { a: '1' }, signal });
      expect(await store.presign('k', { method: 'GET', expiresIn: 60 })).toBe('https://signed');
      await store.close();

      expect(inner.calls.map((c) => c.method)).toEqual(['put', 'get', 'head', 'delete', 'deleteMany', 'list', 'copy', 'updateMetadata', 'presign', 'close']);
      const arg = (method: string, i: number): unknown => inner.calls.find((c) => c.method === method)!.args[i];
      expect(arg('put', 0)).toBe('k');
      expect(arg('put', 2)).toMatchObject({ contentType: 'text/plain' });
      expect(arg('get', 1)).toMatchObject({ range: { offset: 1 } });
      expect([...(arg('deleteMany', 0) as Iterable<string>)]).toEqual(['a', 'b']);
      expect(arg('list', 0)).toMatchObject({ prefix: 'p/' });
      expect(arg('copy', 0)).toBe('k');
      expect(arg('copy', 1)).toBe('k2');
      expect(arg('copy', 2)).toMatchObject({ ifNoneMatch: '*' });
      expect(arg('updateMetadata', 1)).toMatchObject({ metadata: { a: '1' } });
      // Every layer passes the caller's signal on (or one that follows it).
      for (const c of inner.calls.filter((x) => x.method !== 'presign' && x.method !== 'close' && x.method !== 'deleteMany')) {
        const opts = c.args[c.method === 'copy' ? 2 : c.method === 'list' ? 0 : c.method === 'put' ? 2 : 1] as { signal?: AbortSignal };
        expect(opts.signal, `${name}.${c.method} signal`).toBeInstanceOf(AbortSignal);
      }
    });
  }
});

function permutations<T>(xs: T[]): T[][] {
  if (xs.length <= 1) return [xs];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p]));
}

describe('layers compose in any order', () => {
  const names = ['Retry', 'Breaker', 'Timeout', 'RateLimit', 'Instrumented'];
  it(`all ${permutations(names).length} orders round-trip and nest their names`, async () => {
    for (const order of permutations(names)) {
      const store = order.reduceRight<BlobStore>((inner, n) => LAYERS[n]!(inner), new MemoryStore());
      expect(store.toString().replace(/\((?:[^(),]+, )+/g, '(')).toBe(`${order.join('(')}(memory://${')'.repeat(order.length)}`);
      await store.put('a/1', 'one');
      await store.put('a/2', Readable.from([Buffer.from('two')]));
      expect(await getText(store, 'a/2', { verify: true })).toBe('two');
      expect((await listAll(store, { prefix: 'a/' })).map((i) => (i.type === 'object' ? i.key : i.prefix))).toEqual(['a/1', 'a/2']);
      await store.delete('a/1');
      await expect(store.head('a/1')).rejects.toMatchObject({ code: 'NotFound' });
    }
  });
});
