import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Backoff } from '../../src/core/backoff.js';
import { Crc32c, MultiHasher } from '../../src/core/checksums.js';
import { isCloudmuxError } from '../../src/core/errors.js';
import { PartDigestPool, type PartDigests } from '../../src/core/part-digests.js';
import { PartSource, uploadParts } from '../../src/core/part-upload.js';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
const hex = (alg: string, b: Uint8Array): string => createHash(alg).update(b).digest('hex');
const crc = (b: Uint8Array): string => new Crc32c().update(b).hex();

async function* chunksOf(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let at = 0; at < data.byteLength; at += size) {
    await Promise.resolve();
    yield data.subarray(at, at + size);
  }
}

describe('PartDigestPool: digests of an upload on worker threads', () => {
  it('gives each part its digests and the whole object its own, for parts in shared and in ordinary memory, with jobs interleaved on one worker', async () => {
    const pool = new PartDigestPool(1);
    try {
      const objects = [randomBytes(3 * 1024 * 1024 + 17), randomBytes(2 * 1024 * 1024 + 5), Buffer.alloc(0)];
      const jobs = objects.map(() => pool.job(['sha256', 'md5', 'crc32c'], { provider: 'test' }));
      expect(pool.alive).toBe(1);
      const partSize = 1024 * 1024 + 3;
      const perPart: Promise<void>[] = [];
      // Round-robin over the objects, one part each turn: the worker sees the jobs interleaved.
      for (let at = 0; at < 4 * partSize; at += partSize) {
        objects.forEach((data, i) => {
          if (at >= data.byteLength) return;
          const bytes = data.subarray(at, at + partSize);
          // Even parts in shared memory (hashed where they lie), odd ones copied into the message.
          const part = (at / partSize) % 2 === 0 ? Buffer.from(new SharedArrayBuffer(bytes.byteLength)) : Buffer.from(bytes);
          bytes.copy(part);
          perPart.push(jobs[i]!.part(part, { md5: true, sha256: true, crc32c: true }).then((d) => {
            expect(d).toEqual({ md5: hex('md5', bytes), sha256: hex('sha256', bytes), crc32c: crc(bytes) });
          }));
        });
      }
      await Promise.all(perPart);
      for (const [i, data] of objects.entries()) {
        const whole = new MultiHasher(['md5', 'crc32c']);
        whole.update(data);
        expect(await jobs[i]!.digest()).toEqual({ ...whole.digest(), bytes: data.byteLength });
      }
      // Only what was asked for.
      const job = pool.job([], { provider: 'test' });
      expect(await job.part(Buffer.from('abc'), { crc32c: true })).toEqual({ crc32c: crc(Buffer.from('abc')) });
      expect(await job.digest()).toEqual({ bytes: 3 });
    } finally {
      await pool.close();
    }
  });

  it('a worker that dies fails its jobs with Transient (nothing was written); the next job gets a new worker', async () => {
    const pool = new PartDigestPool(1);
    try {
      const job = pool.job(['sha256'], { provider: 'test', key: 'k' });
      const pending = job.part(Buffer.from(new SharedArrayBuffer(8 * 1024 * 1024)), { md5: true });
      const done = job.digest();
      await (pool as unknown as { workers: { worker: { terminate(): Promise<number> } }[] }).workers[0]!.worker.terminate();
      for (const p of [pending, done]) {
        const e = await p.then(() => undefined, (x: unknown) => x);
        expect(isCloudmuxError(e, 'Transient'), String(e)).toBe(true);
      }
      const again = pool.job(['sha256'], { provider: 'test' });
      await again.part(Buffer.from('x'));
      expect((await again.digest()).sha256).toBe(hex('sha256', Buffer.from('x')));
    } finally {
      await pool.close();
    }
  });

  it("the job's signal fails what is pending with Aborted; a dropped job answers nothing more", async () => {
    const pool = new PartDigestPool(1);
    try {
      const ac = new AbortController();
      const job = pool.job(['sha256'], { provider: 'test' }, ac.signal);
      const pending = job.part(Buffer.alloc(16 * 1024 * 1024));
      ac.abort();
      const e = await pending.then(() => undefined, (x: unknown) => x);
      expect(isCloudmuxError(e, 'Aborted'), String(e)).toBe(true);
      await expect(job.digest()).rejects.toMatchObject({ code: 'Aborted' });
      const dropped = pool.job(['sha256'], { provider: 'test' });
      dropped.abort();
      await expect(dropped.part(Buffer.from('x'))).rejects.toMatchObject({ code: 'Transient' });
    } finally {
      await pool.close();
    }
  });

  it('feeds the part engine: parts cut into shared memory are hashed off the main thread while the next is read', async () => {
    const pool = new PartDigestPool(2);
    try {
      const data = randomBytes(5 * 1024 * 1024 + 99);
      const job = pool.job(['sha256'], { provider: 'test' });
      const source = new PartSource(chunksOf(data, 64 * 1024), { partSize: 1024 * 1024 + 1, provider: 'test', shared: true });
      const seen: { n: number; md5: string; shared: boolean }[] = [];
      await uploadParts<PartDigests, number>(source, async ({ number, bytes, prepared }) => {
        expect(prepared.md5).toBe(hex('md5', bytes));
        seen.push({ n: number, md5: prepared.md5!, shared: bytes.buffer instanceof SharedArrayBuffer });
        return number;
      }, { concurrency: 3, backoff: new Backoff({ baseMs: 0, capMs: 0, attempts: 1 }), prepare: ({ bytes }) => job.part(bytes, { md5: true }) });
      expect(seen.map((s) => s.n).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(seen.filter((s) => s.n < 6).every((s) => s.shared)).toBe(true);
      expect(await job.digest()).toEqual({ sha256: hex('sha256', data), bytes: data.byteLength });
    } finally {
      await pool.close();
    }
  });

  it("a finished upload's shared part buffers are reused by the next upload's parts", async () => {
    const partSize = 2 * 1024 * 1024 + 7; // a size no other test uses
    const cut = async (): Promise<Set<ArrayBufferLike>> => {
      const source = new PartSource(chunksOf(randomBytes(3 * partSize), 256 * 1024), { partSize, provider: 'test', shared: true });
      const seen = new Set<ArrayBufferLike>();
      for (let p = await source.next(); p; p = await source.next()) {
        seen.add(p.buffer);
        source.recycle(p);
      }
      await source.close();
      return seen;
    };
    const first = await cut();
    const second = await cut();
    expect(first.size).toBe(1); // one part at a time, recycled
    expect([...second].every((b) => first.has(b))).toBe(true);
  });

  it('an idle worker never holds the process open', () => {
    const script = `import { sharedPartDigestPool } from ${JSON.stringify(resolve(ROOT, 'src/core/part-digests.ts'))};
const job = sharedPartDigestPool().job(['sha256'], { provider: 'test' });
await job.part(Buffer.from('abc'));
console.log((await job.digest()).sha256);`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(r.error, 'the child did not exit by itself').toBeUndefined();
    expect(r.stdout.trim()).toBe(hex('sha256', Buffer.from('abc')));
    expect(r.status).toBe(0);
  });
});
