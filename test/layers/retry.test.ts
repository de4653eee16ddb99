import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import { collect, listAll } from '../../src/core/index.js';
import { RetryStore, reopenable, type ResumeEvent, type RetryEvent } from '../../src/layers/index.js';
import { FaultyStore } from '../faults/faulty-store.js';
import { seededRandom } from '../faults/random.js';

const fast = { baseDelayMs: 1, maxDelayMs: 4, random: seededRandom(3) };
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function setup(plan: ConstructorParameters<typeof FaultyStore>[1] = {}, opts = {}) {
  const memory = new MemoryStore();
  const faulty = new FaultyStore(memory, plan);
  const store = new RetryStore(faulty, { ...fast, ...opts });
  const retries: RetryEvent[] = [];
  const resumes: ResumeEvent[] = [];
  store.on('retry', (e) => retries.push(e)).on('resume', (e) => resumes.push(e));
  return { memory, faulty, store, retries, resumes };
}

describe('RetryStore', () => {
  it('retries Transient and Throttled calls until they succeed', async () => {
    const { memory, faulty, store, retries } = setup({ failCalls: { 1: 'Transient', 2: 'Throttled' } });
    await memory.put('k', 'v');
    expect((await store.head('k')).size).toBe(1);
    expect(faulty.log.map((r) => r.fault)).toEqual(['Transient', 'Throttled', undefined]);
    expect(retries.map((r) => r.attempt)).toEqual([1, 2]);
  });

  it('never retries errors a retry cannot cure', async () => {
    const { faulty, store } = setup({ failCalls: { 1: 'AccessDenied' } });
    await expect(store.head('k')).rejects.toMatchObject({ code: 'AccessDenied' });
    await expect(store.head('k')).rejects.toMatchObject({ code: 'NotFound' });
    expect(faulty.log).toHaveLength(2);
  });

  it('gives up after `retries` and reports the last error', async () => {
    const { faulty, store } = setup({ errorRates: { Transient: 1 } }, { retries: 3 });
    let gaveUp = 0;
    store.on('giveUp', () => gaveUp++);
    await expect(store.delete('k')).rejects.toMatchObject({ code: 'Transient' });
    expect(faulty.log).toHaveLength(4);
    expect(gaveUp).toBe(1);
  });

  it('backs off with full jitter under a cap, and waits at least Retry-After', () => {
    const store = new RetryStore(new MemoryStore(), { baseDelayMs: 100, maxDelayMs: 1000, random: () => 0.999 });
    expect([1, 2, 3, 4, 5, 8].map((n) => store.delayFor(n, new Error('x')))).toEqual([99, 199, 399, 799, 999, 999]);
    const zero = new RetryStore(new MemoryStore(), { random: () => 0 });
    expect(zero.delayFor(5, new Error('x'))).toBe(0);
    const throttled = Object.assign(new Error('slow down'), { code: 'Throttled', retryAfterMs: 2500 });
    expect(zero.delayFor(1, throttled)).toBe(0); // not a CloudmuxError: no hint taken
  });

  it('honours retryAfterMs of Throttled, and fails at once when it exceeds the budget', async () => {
    const a = setup({ failCalls: { 1: 'Throttled' }, retryAfterMs: 30 });
    await a.memory.put('k', 'v');
    await a.store.head('k');
    expect(a.retries[0]!.delayMs).toBeGreaterThanOrEqual(30);
    const b = setup({ failCalls: { 1: 'Throttled' }, retryAfterMs: 60_000 }, { budgetMs: 1000 });
    await expect(b.store.head('k')).rejects.toMatchObject({ code: 'Throttled' });
    expect(b.faulty.log).toHaveLength(1);
  });

  it('stops at once with Aborted when the caller aborts during a backoff', async () => {
    const { store } = setup({ errorRates: { Transient: 1 } }, { baseDelayMs: 10_000, maxDelayMs: 10_000, random: () => 0.5 });
    const ac = new AbortController();
    store.on('retry', () => ac.abort());
    await expect(store.head('k', { signal: ac.signal })).rejects.toMatchObject({ code: 'Aborted' });
  });

  it('retries puts of in-memory and re-openable bodies, never of one-shot streams', async () => {
    const { faulty, store } = setup({ failCalls: { 1: 'Transient', 3: 'Transient', 5: 'Transient' } });
    expect((await store.put('a', 'bytes')).size).toBe(5);
    let opened = 0;
    const meta = await store.put('b', reopenable(() => {
      opened++;
      return Readable.from([Buffer.from('re'), Buffer.from('open')]);
    }));
    expect(meta.size).toBe(6);
    expect(opened).toBe(1); // the failed attempt never opened it; the retry did
    await expect(store.put('c', Readable.from([Buffer.from('once')]))).rejects.toMatchObject({ code: 'Transient' });
    expect(faulty.log.filter((r) => r.op === 'put').map((r) => r.fault ?? 'ok')).toEqual(['Transient', 'ok', 'Transient', 'ok', 'Transient']);
  });

  it('confirms a conditional put whose response was lost instead of reporting AlreadyExists', async () => {
    const { memory, faulty, store } = setup({ lostResponse: 1, maxFaults: 1 });
    const meta = await store.put('k', 'mine', { ifNoneMatch: '*' });
    expect(meta.checksums.sha256).toBe(sha(Buffer.from('mine')));
    expect(faulty.log.map((r) => r.fault)).toEqual(['lostResponse', undefined, undefined]);
    // A real conflict (someone else's bytes) is still reported.
    await memory.put('j', 'theirs');
    faulty.setPlan({ lostResponse: 1, maxFaults: 1 });
    await expect(store.put('j', 'mine', { ifNoneMatch: '*' })).rejects.toMatchObject({ code: 'AlreadyExists' });
  });

  it('resumes a reset get body with one ranged re-get pinned to the etag', async () => {
    const data = randomBytes(1024 * 1024);
    const { memory, faulty, store, resumes } = setup({ ops: ['get'], resetBody: 1, maxFaults: 1, seed: 9 });
    const written = await memory.put('big', data);
    const { body, meta } = await store.get('big', { verify: true });
    const got = await collect(body);
    expect(sha(got)).toBe(sha(data));
    expect(meta.etag).toBe(written.etag);
    const at = Number(faulty.log[0]!.fault!.split('@')[1]);
    expect(at).toBeGreaterThan(0);
    expect(faulty.log).toHaveLength(2);
    expect(faulty.log[1]).toMatchObject({ op: 'get', ifMatch: written.etag, range: { offset: at, length: data.byteLength - at } });
    expect(resumes).toMatchObject([{ op: 'get', offset: at }]);
  });

  it('resumes a ranged get within its range, and a silently truncated body', async () => {
    const data = randomBytes(300_000);
    const { memory, faulty, store } = setup({ ops: ['get'], truncateBody: 1, maxFaults: 2, seed: 4 });
    await memory.put('k', data);
    const r = await store.get('k', { range: { offset: 1000, length: 200_000 } });
    expect(sha(await collect(r.body))).toBe(sha(data.subarray(1000, 201_000)));
    const reGets = faulty.log.slice(1);
    expect(reGets.length).toBeGreaterThanOrEqual(1);
    for (const g of reGets) expect((g.range as { offset: number }).offset).toBeGreaterThan(1000);
  });

  it('never hands out a flipped byte as good data when verifying', async () => {
    const data = randomBytes(200_000);
    const { memory, store } = setup({ ops: ['get'], corruptBody: 1, maxFaults: 1 });
    await memory.put('k', data);
    const { body } = await store.get('k', { verify: true });
    await expect(collect(body)).rejects.toMatchObject({ code: 'IntegrityError' });
  });

  it('fails the stream, without mixing versions, when the object changed before the resume', async () => {
    const data = randomBytes(200_000);
    const { memory, store } = setup({ ops: ['get'], resetBody: 1, maxFaults: 1, seed: 9 });
    await memory.put('k', data);
    const { body } = await store.get('k');
    await memory.put('k', randomBytes(200_000));
    const err = await collect(body).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'Transient', retryable: false });
  });

  it('resumes a broken listing after the last item, without repeats or gaps', async () => {
    const { memory, store, resumes } = setup({ ops: ['list'], resetListing: 0.05, seed: 11 });
    const keys = Array.from({ length: 300 }, (_, i) => `p/${String(i).padStart(3, '0')}`);
    for (const k of keys) await memory.put(k, 'x');
    for (const k of ['p/d1/a', 'p/d1/b', 'p/d2/a']) await memory.put(k, 'x');
    const flat = (await listAll(store, { prefix: 'p/' })).map((i) => (i.type === 'object' ? i.key : i.prefix));
    expect(flat).toEqual([...keys, 'p/d1/a', 'p/d1/b', 'p/d2/a']);
    const rolled = (await listAll(store, { prefix: 'p/', delimiter: '/' })).map((i) => (i.type === 'object' ? i.key : i.prefix));
    expect(rolled).toEqual([...keys, 'p/d1/', 'p/d2/']);
    expect(resumes.length).toBeGreaterThan(3);
  });

  it('retries deleteMany and copy and updateMetadata', async () => {
    const { memory, store } = setup({ failCalls: { 1: 'Transient', 2: 'Transient', 3: 'Transient' } });
    await memory.put('a', '1');
    expect((await store.deleteMany(['x', 'y'])).deleted).toEqual(['x', 'y']);
    await store.copy('a', 'b');
    await store.updateMetadata('b', { metadata: { m: '1' } });
    expect((await memory.head('b')).metadata.m).toBe('1');
  });
});
