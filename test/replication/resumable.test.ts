import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { Readable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import { SHA256_KEY, getBuffer, resumableUploads } from '../../src/core/index.js';
import type { BlobStore, GetOptions, ObjectMeta } from '../../src/core/index.js';
import { RateLimitStore, RetryStore, resilient } from '../../src/layers/index.js';
import { MigrationJournal, type JournalUpload } from '../../src/replication/journal.js';
import { migrate, type MigrationEvent } from '../../src/replication/migrate.js';
import { trustedParts } from '../../src/replication/resumable-copy.js';
import { sharedPartDigestPool } from '../../src/core/part-digests.js';
import { stack } from '../encryption/helpers.js';
import { FakeResumableStore } from './fake-resumable.js';
import { overrideStore, payload } from './helpers.js';

const dirs: string[] = [];
function journalPath(): string {
  const d = mkdtempSync(join(tmpdir(), 'cloudmux-resumable-test-'));
  dirs.push(d);
  return join(d, 'journal.sqlite');
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** The destination as a second process sees it: same provider state, fresh call log. */
function reopened(dst: FakeResumableStore): FakeResumableStore {
  return new FakeResumableStore(dst.memory, dst.uploads);
}

function inJournal<T>(path: string, fn: (j: MigrationJournal) => T): T {
  const j = MigrationJournal.open(path, { src: 'src', dst: 'dst' });
  try {
    return fn(j);
  } finally {
    j.close();
  }
}

const names = { src: 'src', dst: 'dst' };
const BIG = payload(23, 7); // 5 parts of 5 bytes, the last of 3

describe('migrate: resumable uploads of large objects', () => {
  it('sends objects above the threshold through resumable uploads, journals each part, and verifies', async () => {
    const src = new MemoryStore();
    const dst = new FakeResumableStore();
    await src.put('big', BIG, { contentType: 'application/x-test', metadata: { owner: 'me' } });
    await src.put('small', 'abc');
    const path = journalPath();
    const s = await migrate(src, dst, { journal: path, names, partConcurrency: 2 });
    expect(s).toMatchObject({ copied: 2, verified: 2, failed: 0 });
    expect(dst.calls.filter((c) => c.op === 'startUpload').map((c) => c.key)).toEqual(['big']);
    expect([...dst.partsSent()].sort()).toEqual([1, 2, 3, 4, 5]);
    expect(await getBuffer(dst, 'big')).toEqual(BIG);
    const head = await dst.head('big');
    expect(head.contentType).toBe('application/x-test');
    expect(head.metadata.owner).toBe('me');
    expect(head.checksums.sha256).toBe((await src.head('big')).checksums.sha256);
    const u = inJournal(path, (j) => j.upload('big'))!;
    expect(u.state).toBe('completed');
    expect(u.parts.map((p) => [p.partNumber, p.size, p.uploads])).toEqual([[1, 5, 1], [2, 5, 1], [3, 5, 1], [4, 5, 1], [5, 3, 1]]);
  });

  it('a run that died mid-object resumes from the finished parts: they are not uploaded again', async () => {
    const src = new MemoryStore();
    await src.put('big', BIG);
    const reads: GetOptions[] = [];
    const countingSrc = overrideStore(src, { get: (k: string, o?: GetOptions) => (reads.push(o ?? {}), src.get(k, o)) });
    const dst = new FakeResumableStore();
    dst.failParts.set(4, { retryable: false });
    const path = journalPath();
    const first = await migrate(countingSrc, dst, { journal: path, names, partConcurrency: 1, retries: 0 });
    expect(first.failed).toBe(1);
    expect(dst.partsSent()).toEqual([1, 2, 3, 4]);

    const again = reopened(dst);
    const events: MigrationEvent[] = [];
    reads.length = 0;
    const second = await migrate(countingSrc, again, { journal: path, names, partConcurrency: 1, onEvent: (e) => events.push(e) });
    expect(second).toMatchObject({ copied: 1, verified: 1, failed: 0 });
    expect(again.partsSent()).toEqual([4, 5]);
    expect(again.calls.some((c) => c.op === 'startUpload')).toBe(false);
    expect(events).toContainEqual({ type: 'upload-resumed', key: 'big', kept: 3, parts: 5 });
    const done = events.find((e) => e.type === 'object' && e.key === 'big');
    // The source records its SHA-256, so only the missing parts were read; the copy was proven by reading it back.
    expect(done).toMatchObject({ outcome: 'copied', verifiedBy: 'reread-sha256', bytes: 8 });
    expect(reads.filter((o) => o.range !== undefined)).toEqual([expect.objectContaining({ range: { offset: 15 }, ifMatch: expect.any(String) })]);
    expect(await getBuffer(again, 'big')).toEqual(BIG);
    const u = inJournal(path, (j) => j.upload('big'))!;
    expect(u.parts.map((p) => p.uploads)).toEqual([1, 1, 1, 1, 1]); // part 4 failed the first time: recorded once, on success
    expect(u.parts.slice(0, 3).every((p) => p.run === u.run)).toBe(true);
  });

  it('without a recorded source SHA-256 the kept prefix is re-read and hashed, but not sent again', async () => {
    const mem = new MemoryStore();
    await mem.put('big', BIG);
    const stripped = async (m: ObjectMeta): Promise<ObjectMeta> => {
      const { [SHA256_KEY]: _s, ...metadata } = m.metadata;
      return { ...m, metadata, checksums: {} };
    };
    const reads: GetOptions[] = [];
    const src: BlobStore = overrideStore(mem, {
      head: async (k: string) => stripped(await mem.head(k)),
      get: async (k: string, o?: GetOptions) => {
        reads.push(o ?? {});
        const r = await mem.get(k, o);
        return { ...r, meta: await stripped(r.meta) };
      },
    });
    const dst = new FakeResumableStore();
    dst.failParts.set(3, { retryable: false });
    const path = journalPath();
    expect((await migrate(src, dst, { journal: path, names, partConcurrency: 1, retries: 0 })).failed).toBe(1);
    const again = reopened(dst);
    reads.length = 0;
    const s = await migrate(src, again, { journal: path, names, partConcurrency: 1 });
    expect(s).toMatchObject({ copied: 1, failed: 0 });
    expect(again.partsSent()).toEqual([3, 4, 5]);
    expect(reads.map((o) => [o.range, typeof o.ifMatch])).toEqual([[undefined, 'string']]); // one pinned read from byte 0
    expect(await getBuffer(again, 'big')).toEqual(BIG);
    expect((await again.head('big')).checksums.sha256).toBe((await mem.head('big')).checksums.sha256);
  });

  it('a source that changed since the upload started: the upload is aborted and started over', async () => {
    const src = new MemoryStore();
    await src.put('big', BIG);
    const dst = new FakeResumableStore();
    dst.failParts.set(3, { retryable: false });
    const path = journalPath();
    await migrate(src, dst, { journal: path, names, partConcurrency: 1, retries: 0 });
    const changed = payload(23, 99);
    await src.put('big', changed);
    const again = reopened(dst);
    const s = await migrate(src, again, { journal: path, names, partConcurrency: 1 });
    expect(s).toMatchObject({ copied: 1, failed: 0 });
    expect(again.calls.map((c) => c.op).slice(0, 2)).toEqual(['abortUpload', 'startUpload']);
    expect(again.partsSent()).toEqual([1, 2, 3, 4, 5]);
    expect(await getBuffer(again, 'big')).toEqual(changed);
    expect(dst.uploads.size).toBe(0);
    expect(inJournal(path, (j) => j.events('big').map((e) => e.event))).toContain('upload-abort');
  });

  it('a source whose bytes do not match its recorded SHA-256: nothing is completed and the upload is aborted', async () => {
    const mem = new MemoryStore();
    await mem.put('big', BIG);
    const rotten = payload(23, 3);
    const src = overrideStore(mem, {
      get: async (k: string, o?: GetOptions) => {
        const r = await mem.get(k, o);
        r.body.destroy();
        const from = o?.range && 'offset' in o.range ? o.range.offset : 0;
        return { ...r, body: Readable.from([rotten.subarray(from)]) };
      },
    });
    const dst = new FakeResumableStore();
    const path = journalPath();
    const s = await migrate(src, dst, { journal: path, names, retries: 0 });
    expect(s.failed).toBe(1);
    expect(s.failures[0]!.reason).toMatch(/IntegrityError.*sha256/);
    expect(dst.calls.map((c) => c.op)).not.toContain('completeUpload');
    expect(dst.calls.at(-1)?.op).toBe('abortUpload');
    expect(await dst.memory.head('big').catch((e: { code: string }) => e.code)).toBe('NotFound');
    expect(inJournal(path, (j) => j.upload('big')?.state)).toBe('aborted');
  });

  it('an upload the destination no longer has (expired, aborted) starts over', async () => {
    const src = new MemoryStore();
    await src.put('big', BIG);
    const dst = new FakeResumableStore();
    dst.failParts.set(2, { retryable: false });
    const path = journalPath();
    await migrate(src, dst, { journal: path, names, partConcurrency: 1, retries: 0 });
    dst.uploads.clear();
    const again = reopened(dst);
    expect(await migrate(src, again, { journal: path, names, partConcurrency: 1 })).toMatchObject({ copied: 1, failed: 0 });
    expect(again.partsSent()).toEqual([1, 2, 3, 4, 5]);
    expect(await getBuffer(again, 'big')).toEqual(BIG);
  });

  it('a part the destination lost is sent again, the others are kept', async () => {
    const src = new MemoryStore();
    await src.put('big', BIG);
    const dst = new FakeResumableStore();
    dst.failParts.set(5, { retryable: false });
    const path = journalPath();
    await migrate(src, dst, { journal: path, names, partConcurrency: 1, retries: 0 });
    [...dst.uploads.values()][0]!.parts.delete(2);
    const again = reopened(dst);
    expect(await migrate(src, again, { journal: path, names, partConcurrency: 1 })).toMatchObject({ copied: 1, failed: 0 });
    expect(again.partsSent()).toEqual([2, 5]);
    expect(await getBuffer(again, 'big')).toEqual(BIG);
  });

  it('an abort or a refused part mid-object, with parts hashed on the digest workers, lets every job go; the next run resumes and verifies', async () => {
    const MiB = 1024 * 1024;
    const data = payload(5 * 2 * MiB + 11, 3); // 6 parts of 2 MiB + 1: cut into shared memory
    const src = new MemoryStore();
    await src.put('big', data);
    const dst = new FakeResumableStore();
    dst.partSize = 2 * MiB + 1;
    const ac = new AbortController();
    const send = dst.uploadPart.bind(dst);
    const sentBytes: boolean[] = [];
    dst.uploadPart = async (h, n, bytes, o) => {
      sentBytes.push(bytes.buffer instanceof SharedArrayBuffer);
      if (n === 4) ac.abort(); // while parts 4-6 are being hashed or sent
      return send(h, n, bytes, o);
    };
    const path = journalPath();
    const first = await migrate(src, dst, { journal: path, names, partConcurrency: 3, signal: ac.signal });
    expect(first).toMatchObject({ copied: 0, verified: 0 });
    expect(sentBytes.slice(0, 3).every(Boolean)).toBe(true);
    expect(sharedPartDigestPool().running).toBe(0); // no worker left holding the process open

    // A part refused for good (no abort): the job is let go too.
    const failing = reopened(dst);
    failing.failParts.set(6, { retryable: false });
    expect(await migrate(src, failing, { journal: path, names, partConcurrency: 3, retries: 0 })).toMatchObject({ copied: 0, failed: 1 });
    expect(sharedPartDigestPool().running).toBe(0);

    const again = reopened(dst);
    const second = await migrate(src, again, { journal: path, names, partConcurrency: 3 });
    expect(second).toMatchObject({ copied: 1, verified: 1, failed: 0 });
    expect(again.partsSent().length).toBeLessThan(6); // what the first run finished was kept
    expect(createHash('sha256').update(await getBuffer(again, 'big')).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
    expect(sharedPartDigestPool().running).toBe(0);
  });

  it('retries a failed part in place (it is in memory) without restarting the object', async () => {
    const src = new MemoryStore();
    await src.put('big', BIG);
    const dst = new FakeResumableStore();
    dst.failParts.set(2, { retryable: true });
    const events: MigrationEvent[] = [];
    const s = await migrate(src, dst, { journal: journalPath(), names, partConcurrency: 1, onEvent: (e) => events.push(e) });
    expect(s).toMatchObject({ copied: 1, failed: 0 });
    expect(dst.partsSent()).toEqual([1, 2, 2, 3, 4, 5]);
    expect(events.some((e) => e.type === 'retry')).toBe(false);
  });

  it('without a journal, a failed upload is aborted (nothing could resume it)', async () => {
    const src = new MemoryStore();
    await src.put('big', BIG);
    const dst = new FakeResumableStore();
    dst.failParts.set(3, { retryable: false });
    expect((await migrate(src, dst, { partConcurrency: 1, retries: 0 })).failed).toBe(1);
    expect(dst.calls.at(-1)?.op).toBe('abortUpload');
    expect(dst.uploads.size).toBe(0);
  });

  it('goes through rate limiting (--bwlimit wraps the destination) and can be turned off', async () => {
    const src = new MemoryStore();
    await src.put('big', BIG);
    const dst = new FakeResumableStore();
    await migrate(src, dst, { names, bytesPerSecond: 1e9, opsPerSecond: 1e6 });
    expect(dst.partsSent()).toHaveLength(5);
    const other = new FakeResumableStore();
    await migrate(src, other, { names, resumableThreshold: false });
    expect(other.partsSent()).toHaveLength(0);
    expect(await getBuffer(other, 'big')).toEqual(BIG);
  });
});

describe('resumableUploads(store)', () => {
  it('is found on the driver and through forwarding layers; not on stores without it; never through encryption', () => {
    const fake = new FakeResumableStore();
    expect(resumableUploads(fake)).toBe(fake);
    expect(resumableUploads(new RetryStore(fake))).toBeDefined();
    expect(resumableUploads(new RateLimitStore(new RetryStore(fake), { opsPerSec: 10 }))).toBeDefined();
    expect(resumableUploads(new MemoryStore())).toBeUndefined();
    expect(resumableUploads(new RetryStore(new MemoryStore()))).toBeUndefined();
    const enc = stack({}, fake.memory).store;
    const encOverFake = stack({}, fake as unknown as MemoryStore).store;
    expect(resumableUploads(enc)).toBeUndefined();
    expect(encOverFake.capabilities.resumableUpload).toBe(false);
    expect(resumableUploads(encOverFake)).toBeUndefined();
  });

  it('the whole resilient stack passes every call through to the driver', async () => {
    const fake = new FakeResumableStore();
    const stacked = resumableUploads(resilient(fake, { attemptTimeout: { timeoutMs: 10_000 }, operationTimeoutMs: 60_000, rateLimit: { opsPerSec: 1e6 } }).store)!;
    expect(stacked).toBeDefined();
    expect(stacked.uploadPartSize(23)).toBe(5);
    expect(stacked.multipartThreshold).toBe(5);
    const handle = await stacked.startUpload('k', { size: 7, partSize: 5 });
    const parts = [await stacked.uploadPart(handle, 1, BIG.subarray(0, 5)), await stacked.uploadPart(handle, 2, BIG.subarray(5, 7))];
    expect(await stacked.listParts(handle)).toEqual(parts);
    const meta = await stacked.completeUpload(handle, parts, { checksums: { sha256: createHash('sha256').update(BIG.subarray(0, 7)).digest('hex') } });
    expect(meta.size).toBe(7);
    await stacked.abortUpload(handle);
    expect(fake.calls.map((c) => c.op)).toEqual(['startUpload', 'uploadPart', 'uploadPart', 'listParts', 'completeUpload', 'abortUpload']);
  });

  it('a layer over a store without them refuses with NotSupported', async () => {
    const layer = new RetryStore(new MemoryStore());
    await expect(layer.startUpload('k', { size: 10, partSize: 5 })).rejects.toMatchObject({ code: 'NotSupported' });
  });
});

describe('trustedParts', () => {
  const prior: JournalUpload = {
    key: 'k', handle: 'h', srcEtag: 'e', size: 23, partSize: 5, state: 'open', run: 1,
    parts: [1, 2, 3, 4].map((n) => ({ partNumber: n, size: 5, crc32c: '00000000', etag: `"e${n}"`, sha256: n === 4 ? 'aa' : null, run: 1, uploads: 1 })),
  };
  it('keeps only parts both the provider and the journal have, with the same size, etag and checksum', () => {
    const listed = [
      { partNumber: 1, size: 5, etag: '"e1"' },
      { partNumber: 2, size: 5, etag: '"other"' }, // replaced by someone else
      { partNumber: 3, size: 4, etag: '"e3"' }, // wrong size
      { partNumber: 4, size: 5, etag: '"e4"', checksums: { sha256: 'bb' } }, // checksum differs
      { partNumber: 5, size: 3, etag: '"e5"' }, // the journal never saw it
    ];
    expect([...trustedParts(prior, listed).keys()]).toEqual([1]);
  });
  it('takes the etag from the journal when the provider lists none (Azure)', () => {
    expect(trustedParts(prior, [{ partNumber: 2, size: 5 }]).get(2)).toMatchObject({ etag: '"e2"' });
  });
});
