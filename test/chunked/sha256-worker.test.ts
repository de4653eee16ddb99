import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { collect } from '../../src/core/body.js';
import { isCloudmuxError, type ErrorCode } from '../../src/core/errors.js';
import { MemoryStore } from '../../providers/memory/index.js';
import { ChunkedStore, type ChunkedStoreOptions } from '../../src/layers/chunked/index.js';
import { Sha256WorkerPool } from '../../src/layers/chunked/sha256-worker.js';
import { ForwardingStore } from '../../src/layers/forwarding-store.js';
import { seededBytes } from './helpers.js';

const MiB = 1024 * 1024;
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function code(p: Promise<unknown>): Promise<ErrorCode | string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return isCloudmuxError(e) ? e.code : String(e);
  }
}

/** `data` in pieces of `size` bytes, each a copy (as a stream hands them over). */
async function* pieces(data: Uint8Array, size: number, after?: (sent: number) => void): AsyncGenerator<Buffer> {
  for (let at = 0; at < data.byteLength; at += size) {
    yield Buffer.from(data.subarray(at, at + size));
    after?.(Math.min(data.byteLength, at + size));
  }
}

/** Keeps the inner store usable after the ChunkedStore above it is closed. */
class Unclosable extends ForwardingStore {
  protected readonly layerName = 'Unclosable';
  override async close(): Promise<void> {}
}

// 40 MiB: more than twice the 16 MiB ring, so it wraps and the writer waits for the worker.
const data = seededBytes(40 * MiB + 12_345, 20);
const want = sha(data);

describe('ChunkedStore: the whole-object SHA-256 on a worker', () => {
  it('is the flat SHA-256 of the bytes, and the chunks are those of hashing on this thread, whatever the pieces', async () => {
    const here = new ChunkedStore(new MemoryStore(), { hashOffThread: false });
    const off = new ChunkedStore(new MemoryStore());
    const ref = await here.put('a', pieces(data, 65_536));
    expect(ref.checksums.sha256).toBe(want);
    const refChunks = (await here.manifest('a'))!.chunks;
    for (const body of [data, pieces(data, 65_536 + 7), pieces(data, 5 * MiB + 3)]) {
      const meta = await off.put('a', body);
      expect(meta.checksums.sha256).toBe(want);
      const m = (await off.manifest('a'))!;
      expect(m.sha256).toBe(want);
      expect(m.chunks).toEqual(refChunks);
    }
    expect(sha(await collect((await off.get('a', { verify: true })).body))).toBe(want);
    await here.close();
    await off.close();
  });

  it('keyed ids, and chunks too big for the worker to hold (ids then in the thread pool), are those of hashing on this thread', async () => {
    const cases: ChunkedStoreOptions[] = [
      { idKey: Buffer.alloc(32, 7) },
      { sizes: { min: MiB, target: 4 * MiB, max: 16 * MiB } },
    ];
    for (const opts of cases) {
      const here = new ChunkedStore(new MemoryStore(), { ...opts, hashOffThread: false });
      const off = new ChunkedStore(new MemoryStore(), opts);
      await here.put('a', pieces(data, 65_536));
      const meta = await off.put('a', pieces(data, 3 * MiB + 1));
      expect(meta.checksums.sha256).toBe(want);
      expect((await off.manifest('a'))!.chunks).toEqual((await here.manifest('a'))!.chunks);
      expect(sha(await collect((await off.get('a', { verify: true })).body))).toBe(want);
      await here.close();
      await off.close();
    }
  });

  it('a worker that fails fails the put with Transient, and nothing is committed', async () => {
    const mem = new MemoryStore();
    const store = new ChunkedStore(new Unclosable(mem));
    // Closing the store terminates its workers, as a crash of one would end it.
    const body = pieces(data, MiB, (sent) => {
      if (sent === 8 * MiB) void store.close();
    });
    expect(await code(store.put('k', body))).toBe('Transient');
    expect(await code(mem.head('k'))).toBe('NotFound');
  });

  it('an aborted put stops the hashing and keeps no worker', async () => {
    const pool = new Sha256WorkerPool();
    const ac = new AbortController();
    const job = pool.job(ac.signal, { provider: 'test', key: 'k' });
    // More than the ring holds: the copy waits for room, and the abort ends the wait.
    const copying = job.update(data);
    expect(copying).toBeInstanceOf(Promise);
    ac.abort();
    expect(await code(copying!)).toBe('Aborted');
    job.abort();
    expect(pool.size).toBe(0);
    await pool.close();

    const mem = new MemoryStore();
    const store = new ChunkedStore(mem);
    const put = new AbortController();
    const body = pieces(data, MiB, (sent) => {
      if (sent === 8 * MiB) put.abort();
    });
    expect(await code(store.put('k', body, { signal: put.signal }))).toBe('Aborted');
    expect(await code(mem.head('k'))).toBe('NotFound');
    await store.close();
  });

  it('keeps one idle worker for the next put, and close stops every worker', async () => {
    const pool = new Sha256WorkerPool();
    const jobs = [pool.job(undefined, {}), pool.job(undefined, {})];
    expect(pool.size).toBe(2);
    for (const j of jobs) j.update(data.subarray(0, MiB));
    expect(await Promise.all(jobs.map((j) => j.digest()))).toEqual([sha(data.subarray(0, MiB)), sha(data.subarray(0, MiB))]);
    expect(pool.size).toBe(1);
    const again = pool.job(undefined, {});
    expect(await again.digest()).toBe(sha(new Uint8Array(0)));
    await pool.close();
    expect(pool.size).toBe(0);
    expect(await code(Promise.resolve().then(() => pool.job(undefined, {})))).toBe('Transient');
  });

  it('an idle worker never holds the process open', async () => {
    const script = `
      import { ChunkedStore } from './src/layers/chunked/index.js';
      import { MemoryStore } from './providers/memory/index.js';
      const store = new ChunkedStore(new MemoryStore());
      async function* body() { for (let i = 0; i < 12; i++) yield Buffer.alloc(1024 * 1024, i); }
      const meta = await store.put('k', body());
      console.log(meta.checksums.sha256);
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exitCode = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(exitCode).toBe(0);
    const h = createHash('sha256');
    for (let i = 0; i < 12; i++) h.update(Buffer.alloc(1024 * 1024, i));
    expect(out.trim()).toBe(h.digest('hex'));
  }, 60_000);
});
