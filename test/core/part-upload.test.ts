import { createHash } from 'node:crypto';
import { getEventListeners } from 'node:events';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Backoff } from '../../src/core/backoff.js';
import { MultiHasher } from '../../src/core/checksums.js';
import { CloudmuxError, TransientError } from '../../src/core/errors.js';
import { PartSource, uploadParts, type PartToSend } from '../../src/core/part-upload.js';
import { seededRandom } from '../faults/random.js';

async function* chunksOf(input: Buffer[]): AsyncGenerator<Buffer> {
  for (const c of input) {
    await Promise.resolve();
    yield c;
  }
}

/** Resolves when the signal has fired (at once if it already has). */
const untilAborted = (signal: AbortSignal): Promise<void> =>
  signal.aborted ? Promise.resolve() : new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));

const fast = (attempts: number): Backoff => new Backoff({ baseMs: 0, capMs: 0, attempts });

describe('PartSource', () => {
  it('cuts any chunking into parts of the requested (growing) sizes, hashing every byte in order, reusing recycled buffers', async () => {
    await fc.assert(fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 23 }), { maxLength: 30 }), async (sizes) => {
      const input = sizes.map((n, i) => Buffer.alloc(n, i + 1));
      const hasher = new MultiHasher();
      const source = new PartSource(chunksOf(input), { partSize: (i) => (i < 2 ? 4 : 7), hasher, provider: 'test' });
      const out: Buffer[] = [];
      const seen = new Set<ArrayBufferLike>();
      for (let p = await source.next(); p; p = await source.next()) {
        out.push(Buffer.from(p));
        seen.add(p.buffer);
        source.recycle(p);
      }
      const all = Buffer.concat(input);
      const expectedSizes: number[] = [];
      for (let left = all.length, i = 0; left > 0; i++) {
        const size = i < 2 ? 4 : 7;
        expectedSizes.push(Math.min(size, left));
        left -= size;
      }
      expect(out.map((b) => b.length)).toEqual(expectedSizes);
      expect(Buffer.concat(out).equals(all)).toBe(true);
      expect(hasher.digest().sha256).toBe(createHash('sha256').update(all).digest('hex'));
      expect(seen.size).toBeLessThanOrEqual(2); // one buffer per size, reused
    }), { numRuns: 200 });
  });

  it('turns a failing body into ProviderError "reading the body failed", keeping a CloudmuxError as is', async () => {
    const broken = new PartSource((async function* () {
      yield Buffer.alloc(3);
      throw new Error('disk on fire');
    })(), { partSize: 8, provider: 'test', key: 'k' });
    await expect(broken.next()).rejects.toMatchObject({ code: 'ProviderError', message: 'reading the body failed: disk on fire' });
    const typed = new PartSource((async function* () {
      yield Buffer.alloc(0);
      throw new TransientError('upstream reset');
    })(), { partSize: 8, provider: 'test' });
    await expect(typed.next()).rejects.toMatchObject({ code: 'Transient', message: 'upstream reset' });
  });
});

describe('uploadParts', () => {
  const body = (n: number, size: number): Buffer[] => Array.from({ length: n }, (_, i) => Buffer.alloc(size, i + 1));

  it('re-sends only the part that failed retryably; the others are sent once', async () => {
    const calls: number[] = [];
    const source = new PartSource(chunksOf(body(5, 10)), { partSize: 10, provider: 'test' });
    const { sent } = await uploadParts(source, async (p: PartToSend<undefined>) => {
      calls.push(p.number);
      if (p.number === 3 && p.attempt === 1) throw new TransientError('connection reset');
      return p.bytes[0];
    }, { concurrency: 2, backoff: fast(3) });
    expect(calls.filter((n) => n === 3)).toHaveLength(2);
    expect(calls.filter((n) => n !== 3).sort()).toEqual([1, 2, 4, 5]);
    expect([...sent.entries()].sort(([a], [b]) => a - b)).toEqual([[1, 1], [2, 2], [3, 3], [4, 4], [5, 5]]);
  });

  it('stops at the first part that fails for good: the others are aborted and awaited, the error is thrown', async () => {
    let running = 0;
    let outlived = 0;
    let afterReturn = false;
    const source = new PartSource(chunksOf(body(20, 4)), { partSize: 4, provider: 'test' });
    const p = uploadParts(source, async (part: PartToSend<undefined>) => {
      running++;
      try {
        if (part.number === 2) throw new CloudmuxError('AccessDenied', 'no');
        await untilAborted(part.signal);
        throw new CloudmuxError('Aborted', 'aborted');
      } finally {
        running--;
        if (afterReturn) outlived++;
      }
    }, { concurrency: 4, backoff: fast(5) });
    await expect(p).rejects.toMatchObject({ code: 'AccessDenied' });
    afterReturn = true;
    expect(running).toBe(0);
    await new Promise((r) => setImmediate(r));
    expect(outlived).toBe(0);
  });

  it('leaves no listener on the caller\'s signal, after success, failure and abort', async () => {
    const ac = new AbortController();
    const ok = new PartSource(chunksOf(body(8, 3)), { partSize: 3, provider: 'test' });
    await uploadParts(ok, async () => undefined, { concurrency: 3, backoff: fast(2), signal: ac.signal });
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    const bad = new PartSource(chunksOf(body(8, 3)), { partSize: 3, provider: 'test' });
    await expect(uploadParts(bad, async () => {
      throw new CloudmuxError('InvalidArgument', 'no');
    }, { concurrency: 3, backoff: fast(2), signal: ac.signal })).rejects.toMatchObject({ code: 'InvalidArgument' });
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    const aborted = new PartSource(chunksOf(body(8, 3)), { partSize: 3, provider: 'test' });
    await expect(uploadParts(aborted, async (p: PartToSend<undefined>) => {
      if (p.number === 2) ac.abort();
      await untilAborted(p.signal);
      throw new TransientError('cut');
    }, { concurrency: 3, backoff: fast(5), signal: ac.signal })).rejects.toMatchObject({ code: 'Aborted' });
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  });

  it('holds the last part back, skips prepared-null parts, numbers from firstNumber, and refuses too many parts', async () => {
    const sentNumbers: number[] = [];
    const source = new PartSource(chunksOf(body(4, 5)), { partSize: 5, provider: 'test' });
    const r = await uploadParts(source, async (p: PartToSend<string>) => {
      sentNumbers.push(p.number);
      expect(p.prepared).toBe(`p${p.number}`);
    }, { concurrency: 1, holdLast: true, firstNumber: 7, backoff: fast(1), prepare: ({ number }) => (number === 8 ? null : `p${number}`) });
    expect(sentNumbers).toEqual([7, 9]);
    expect(r.held?.number).toBe(10);
    expect(r.held?.bytes.equals(Buffer.alloc(5, 4))).toBe(true);
    const many = new PartSource(chunksOf(body(4, 5)), { partSize: 5, provider: 'test' });
    await expect(uploadParts(many, async () => undefined, {
      concurrency: 2, backoff: fast(1), maxParts: 3, tooManyParts: () => new CloudmuxError('InvalidArgument', 'too many parts'),
    })).rejects.toMatchObject({ message: 'too many parts' });
  });
});

/** What an adversarial run of uploadParts looked like from the sender's side. */
interface UploadHistory {
  input: Buffer;
  partSize: number;
  concurrency: number;
  attempts: number;
  /** Every send call: part, attempt, bytes, outcome. */
  sends: { part: number; attempt: number; bytes: Buffer; outcome: 'ok' | CloudmuxError }[];
  maxRunning: number;
  runningAfterReturn: number;
  result: 'ok' | CloudmuxError;
}

/**
 * The engine's promises: a resolved run sent every part exactly once successfully with the right
 * bytes; no more than `concurrency` sends at once; none running after it returns; a part retried
 * only after a retryable failure, at most `attempts` times; a rejected run rejects with the error
 * of a part that failed for good (or its attempts ran out).
 */
function checkUploadHistory(h: UploadHistory): string[] {
  const v: string[] = [];
  const parts = Math.max(0, Math.ceil(h.input.length / h.partSize));
  if (h.maxRunning > h.concurrency) v.push(`${h.maxRunning} sends at once, concurrency ${h.concurrency}`);
  if (h.runningAfterReturn !== 0) v.push(`${h.runningAfterReturn} sends still running after uploadParts returned`);
  const byPart = new Map<number, UploadHistory['sends']>();
  for (const s of h.sends) byPart.set(s.part, [...(byPart.get(s.part) ?? []), s]);
  for (const [n, sends] of byPart) {
    const want = h.input.subarray((n - 1) * h.partSize, n * h.partSize);
    sends.forEach((s, i) => {
      if (!s.bytes.equals(want)) v.push(`part ${n} attempt ${s.attempt} sent the wrong bytes`);
      if (s.attempt !== i + 1) v.push(`part ${n}: attempt ${s.attempt} out of order`);
      if (i > 0) {
        const prev = sends[i - 1]!.outcome;
        if (prev === 'ok') v.push(`part ${n} sent again after it succeeded`);
        else if (!prev.retryable) v.push(`part ${n} sent again after a ${prev.code}`);
      }
    });
    if (sends.length > h.attempts) v.push(`part ${n} sent ${sends.length} times, attempts ${h.attempts}`);
  }
  if (h.result === 'ok') {
    for (let n = 1; n <= parts; n++) {
      const ok = (byPart.get(n) ?? []).filter((s) => s.outcome === 'ok').length;
      if (ok !== 1) v.push(`part ${n} succeeded ${ok} times in a run that resolved`);
    }
  } else {
    const failedForGood = h.sends.some((s) => s.outcome !== 'ok' && s.outcome === h.result && (!s.outcome.retryable || s.attempt >= h.attempts));
    if (!failedForGood) v.push(`rejected with ${h.result.code}, which no part failed with for good`);
  }
  return v;
}

describe('uploadParts under a seeded adversary', () => {
  const seed = Number(process.env.CLOUDMUX_PART_SEED ?? Math.floor(Math.random() * 2 ** 31));

  it(`keeps the engine's promises over 150 random uploads (seed ${seed}; replay with CLOUDMUX_PART_SEED=${seed})`, async () => {
    console.log(`part-upload adversary seed ${seed} (CLOUDMUX_PART_SEED=${seed} replays it)`);
    const random = seededRandom(seed);
    const int = (lo: number, hi: number): number => lo + Math.floor(random() * (hi - lo + 1));
    for (let run = 0; run < 150; run++) {
      const input = Buffer.from(Array.from({ length: int(0, 200) }, () => int(0, 255)));
      const chunks: Buffer[] = [];
      for (let at = 0; at < input.length;) {
        const n = int(0, 40);
        chunks.push(input.subarray(at, at + n));
        at += n;
      }
      const partSize = int(1, 32);
      const concurrency = int(1, 5);
      const attempts = int(1, 4);
      const failRate = random() * 0.4;
      const fatalRate = random() * 0.05;
      const sends: UploadHistory['sends'] = [];
      let running = 0;
      let maxRunning = 0;
      let result: 'ok' | CloudmuxError = 'ok';
      const source = new PartSource(chunksOf(chunks), { partSize, provider: 'test' });
      try {
        await uploadParts(source, async (p: PartToSend<undefined>) => {
          running++;
          maxRunning = Math.max(maxRunning, running);
          const entry = { part: p.number, attempt: p.attempt, bytes: Buffer.from(p.bytes), outcome: 'ok' as 'ok' | CloudmuxError };
          sends.push(entry);
          try {
            for (let i = int(0, 3); i > 0; i--) await Promise.resolve();
            const r = random();
            if (r < fatalRate) entry.outcome = new CloudmuxError('AccessDenied', `part ${p.number} denied`);
            else if (r < fatalRate + failRate) entry.outcome = new TransientError(`part ${p.number} reset`);
            if (entry.outcome !== 'ok') throw entry.outcome;
          } finally {
            running--;
          }
        }, { concurrency, backoff: fast(attempts) });
      } catch (e) {
        result = e as CloudmuxError;
      }
      const violations = checkUploadHistory({ input, partSize, concurrency, attempts, sends, maxRunning, runningAfterReturn: running, result });
      expect(violations, `run ${run} (seed ${seed})`).toEqual([]);
    }
  });

  it('the checker catches known-bad histories', () => {
    const input = Buffer.from('abcdefgh');
    const ok = (part: number, attempt: number, bytes: string) => ({ part, attempt, bytes: Buffer.from(bytes), outcome: 'ok' as const });
    const base = { input, partSize: 4, concurrency: 2, attempts: 2, maxRunning: 1, runningAfterReturn: 0, result: 'ok' as const };
    expect(checkUploadHistory({ ...base, sends: [ok(1, 1, 'abcd'), ok(2, 1, 'efgh')] })).toEqual([]);
    expect(checkUploadHistory({ ...base, sends: [ok(1, 1, 'abcd')] })).toEqual(['part 2 succeeded 0 times in a run that resolved']);
    expect(checkUploadHistory({ ...base, sends: [ok(1, 1, 'abcd'), ok(1, 2, 'abcd'), ok(2, 1, 'efgh')] })).toEqual([
      'part 1 sent again after it succeeded', 'part 1 succeeded 2 times in a run that resolved',
    ]);
    expect(checkUploadHistory({ ...base, sends: [ok(1, 1, 'abcd'), ok(2, 1, 'efgX')] })).toEqual(['part 2 attempt 1 sent the wrong bytes']);
    const denied = new CloudmuxError('AccessDenied', 'no');
    expect(checkUploadHistory({ ...base, sends: [{ ...ok(1, 1, 'abcd'), outcome: denied }, ok(1, 2, 'abcd'), ok(2, 1, 'efgh')] })).toEqual(['part 1 sent again after a AccessDenied']);
    expect(checkUploadHistory({ ...base, maxRunning: 3, runningAfterReturn: 1, sends: [ok(1, 1, 'abcd'), ok(2, 1, 'efgh')] })).toEqual([
      '3 sends at once, concurrency 2', '1 sends still running after uploadParts returned',
    ]);
    const reset = new TransientError('reset');
    expect(checkUploadHistory({ ...base, result: reset, sends: [{ ...ok(1, 1, 'abcd'), outcome: reset }] })).toEqual(['rejected with Transient, which no part failed with for good']);
  });
});
