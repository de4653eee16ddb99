import { randomBytes, createHash } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import { collect, listAll, type GetResult, type SignalOptions } from '../../src/core/index.js';
import { InstrumentedStore, RateLimitStore, RetryStore, TimeoutStore, TokenBucket, reopenable } from '../../src/layers/index.js';
import { FaultyStore } from '../faults/faulty-store.js';

/** A memory store whose head never answers (until aborted) and whose `stall` object stops mid-body. */
class HangingStore extends MemoryStore {
  abortsSeen = 0;
  stalledBody: PassThrough | undefined;
  override head(key: string, opts: SignalOptions = {}): ReturnType<MemoryStore['head']> {
    return new Promise((_, reject) => opts.signal?.addEventListener('abort', () => {
      this.abortsSeen++;
      reject(opts.signal!.reason);
    }, { once: true }));
  }
  override async get(key: string, opts: Parameters<MemoryStore['get']>[1] = {}): Promise<GetResult> {
    const r = await super.get(key, opts);
    if (!key.startsWith('stall')) return r;
    const body = new PassThrough();
    body.write(Buffer.alloc(1000));
    this.stalledBody = body;
    opts.signal?.addEventListener('abort', () => this.abortsSeen++, { once: true });
    return { ...r, body };
  }
}

describe('TimeoutStore', () => {
  it('aborts the inner request at the deadline and fails with a retryable Transient error', async () => {
    const inner = new HangingStore();
    const store = new TimeoutStore(inner, { timeoutMs: 20 });
    await expect(store.head('k')).rejects.toMatchObject({ code: 'Transient', retryable: true });
    expect(inner.abortsSeen).toBe(1);
  });

  it('times a put from its last progress: a long upload that keeps moving succeeds, a stalled one fails', async () => {
    const inner = new MemoryStore();
    const store = new TimeoutStore(inner, { timeoutMs: 60 });
    const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
    async function* steady(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 12; i++) {
        await sleep(15);
        yield Buffer.alloc(1000, i);
      }
    }
    // 12 chunks 15 ms apart: about three times the deadline in all, never 60 ms without progress.
    expect((await store.put('steady', steady())).size).toBe(12_000);
    async function* stalls(): AsyncGenerator<Buffer> {
      yield Buffer.alloc(1000);
      await sleep(300);
      yield Buffer.alloc(1000);
    }
    await expect(store.put('stalls', stalls())).rejects.toMatchObject({ code: 'Transient', message: expect.stringMatching(/no progress/) });
    await expect(inner.head('stalls')).rejects.toMatchObject({ code: 'NotFound' });
    // A large in-memory body is handed on in slices, so it shows progress as well.
    expect((await store.put('big', Buffer.alloc(5 * 1024 * 1024))).size).toBe(5 * 1024 * 1024);
  });

  it('reports the caller\'s own abort as Aborted', async () => {
    const store = new TimeoutStore(new HangingStore(), { timeoutMs: 10_000 });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 5);
    await expect(store.head('k', { signal: ac.signal })).rejects.toMatchObject({ code: 'Aborted' });
  });

  it('fails a stalled body as Transient and cancels its request, but never a slow reader', async () => {
    const inner = new HangingStore();
    await inner.put('stall', randomBytes(5000));
    await inner.put('fine', randomBytes(300_000));
    const store = new TimeoutStore(inner, { stallMs: 30 });
    const { body } = await store.get('stall');
    await expect(collect(body)).rejects.toMatchObject({ code: 'Transient', message: expect.stringMatching(/stalled/) });
    expect(inner.abortsSeen).toBe(1);
    // A reader that pauses longer than stallMs between chunks is not a stall.
    const slow = await store.get('fine');
    let n = 0;
    for await (const chunk of slow.body) {
      n += (chunk as Buffer).byteLength;
      await new Promise((r) => setTimeout(r, 40));
    }
    expect(n).toBe(300_000);
  });

  it('Retry over Timeout retries an attempt that timed out', async () => {
    const memory = new MemoryStore();
    await memory.put('k', 'v');
    const faulty = new FaultyStore(memory, { ops: ['head'], latencyMs: 10_000, maxFaults: 0 });
    let calls = 0;
    const slowFirst = new (class extends TimeoutStore {
      override head(key: string, opts?: SignalOptions) {
        if (++calls > 1) faulty.setPlan({});
        return super.head(key, opts);
      }
    })(faulty, { timeoutMs: 20 });
    const store = new RetryStore(slowFirst, { baseDelayMs: 1 });
    expect((await store.head('k')).size).toBe(1);
    expect(calls).toBe(2);
  });
});

describe('RateLimitStore', () => {
  it('a token bucket serves in order and lets a big request go into debt', async () => {
    const bucket = new TokenBucket({ ratePerSec: 1000, capacity: 100 });
    await bucket.take(500);
    expect(bucket.available()).toBeLessThan(-350);
    const order: number[] = [];
    await Promise.all([1, 2, 3].map((i) => bucket.take(10).then(() => order.push(i))));
    expect(order).toEqual([1, 2, 3]);
  });

  it('waiting for a token is abortable', async () => {
    const store = new RateLimitStore(new MemoryStore(), { opsPerSec: 0.001 });
    await store.head('x').catch(() => {}); // spends the only token
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 5);
    await expect(store.head('x', { signal: ac.signal })).rejects.toMatchObject({ code: 'Aborted' });
  });

  it('passes bytes through intact both ways and keeps re-openable bodies re-openable', async () => {
    const memory = new MemoryStore();
    const faulty = new FaultyStore(memory, { ops: ['put'], failCalls: { 1: 'Transient' } });
    const store = new RetryStore(new RateLimitStore(faulty, { bytesPerSec: 50e6, opsPerSec: 1000 }), { baseDelayMs: 1 });
    const data = randomBytes(1_000_000);
    let opened = 0;
    await store.put('k', reopenable(() => {
      opened++;
      return Readable.from([data]);
    }));
    expect(opened).toBe(1);
    const got = await collect((await store.get('k')).body);
    expect(got.equals(data)).toBe(true);
    expect(await listAll(store)).toHaveLength(1);
  });
});

describe('InstrumentedStore', () => {
  it('counts outcomes by code, latency buckets and body bytes, and exports them to Prometheus', async () => {
    const memory = new MemoryStore();
    const a = new InstrumentedStore(memory, { name: 'a' });
    const b = new InstrumentedStore(new MemoryStore(), { name: 'b' });
    const registry = new Registry();
    a.bindPrometheus(registry);
    b.bindPrometheus(registry);
    const samples: string[] = [];
    a.on('sample', (s) => samples.push(`${s.op}:${s.outcome}`));
    const data = randomBytes(100_000);
    await a.put('k', data);
    await a.put('s', Readable.from([data, data]));
    const got = await collect((await a.get('k')).body);
    expect(createHash('sha256').update(got).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
    await a.head('missing').catch(() => {});
    await listAll(a);
    await b.head('missing').catch(() => {});
    const snap = a.snapshot();
    expect(snap).toMatchObject({ store: 'a', provider: 'memory', bytesOut: 300_000, bytesIn: 100_000 });
    expect(snap.ops.head!.outcomes).toEqual({ NotFound: 1 });
    expect(snap.ops.put!.calls).toBe(2);
    expect(snap.ops.getBody).toMatchObject({ calls: 1, bytes: 100_000, outcomes: { ok: 1 } });
    expect(snap.ops.put!.latencyCounts.reduce((x, y) => x + y, 0)).toBe(2);
    expect(samples).toEqual(['put:ok', 'put:ok', 'get:ok', 'getBody:ok', 'head:NotFound', 'list:ok']);
    const text = await registry.metrics();
    expect(text).toMatch(/cloudmux_operation_duration_seconds_count\{store="a",provider="memory",op="head",outcome="NotFound"\} 1/);
    expect(text).toMatch(/cloudmux_operation_duration_seconds_count\{store="b",provider="memory",op="head",outcome="NotFound"\} 1/);
    expect(text).toMatch(/cloudmux_body_bytes_total\{store="a",provider="memory",direction="out"\} 300000/);
  });
});
