import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import { abortedError, getBuffer, type UploadHandle, type UploadPartOptions, type UploadedPart } from '../../src/core/index.js';
import { claimOverlaps } from '../../src/jobs/claim-overlaps.js';
import { readJobClaims, readJobStatus } from '../../src/jobs/job-report.js';
import { JobStore, type ObjectClaim } from '../../src/jobs/job-store.js';
import { runJobWorker } from '../../src/jobs/job-worker.js';
import { FakeResumableStore } from '../replication/fake-resumable.js';
import { PgSchemas, requirePostgres } from '../state/postgres-fixture.js';

const schemas = new PgSchemas();
beforeAll(requirePostgres);
afterAll(() => schemas.dropAll());
const names = { src: 'memory://src', dst: 'fake://dst' };

/** A destination whose upload of part `stopAt` never returns: the worker is killed there (its signal aborted). */
class StopAtPart extends FakeResumableStore {
  constructor(memory: MemoryStore, uploads: ConstructorParameters<typeof FakeResumableStore>[1], private readonly stopAt: number, private readonly onStop: () => void) {
    super(memory, uploads);
  }

  override async uploadPart(handle: UploadHandle, partNumber: number, bytes: Uint8Array, opts?: UploadPartOptions): Promise<UploadedPart> {
    if (partNumber !== this.stopAt) return super.uploadPart(handle, partNumber, bytes, opts);
    this.onStop();
    await new Promise<void>((ok) => {
      if (opts?.signal?.aborted) ok();
      opts?.signal?.addEventListener('abort', () => ok(), { once: true });
    });
    throw abortedError(opts?.signal);
  }
}

describe('large objects in a PostgreSQL job', () => {
  it('a worker killed mid-upload: the worker taking the object over resumes its upload, sending only the missing parts', async () => {
    const state = await schemas.open();
    const src = new MemoryStore();
    const big = randomBytes(40); // 8 parts of 5 bytes
    await src.put('big', big);
    await src.put('small-1', 'abc');
    await src.put('small-2', 'de');
    const provider = new FakeResumableStore();
    const kill = new AbortController();
    const a = new StopAtPart(provider.memory, provider.uploads, 4, () => kill.abort());
    const ra = await runJobWorker(src, a, {
      state, job: 'big', worker: 'a', names, preflight: false, leaseMs: 1500, pollMs: 50, partConcurrency: 1, signal: kill.signal,
    });
    expect(ra.summary.incomplete).toBe('aborted');
    expect(a.partsSent()).toEqual([1, 2, 3]);

    const b = new FakeResumableStore(provider.memory, provider.uploads);
    const resumed: { kept: number; parts: number }[] = [];
    const rb = await runJobWorker(src, b, {
      state, job: 'big', worker: 'b', names, preflight: false, leaseMs: 1500, pollMs: 50, partConcurrency: 1,
      onEvent: (e) => {
        if (e.type === 'upload-resumed') resumed.push({ kept: e.kept, parts: e.parts });
      },
    });
    expect(rb.summary).toMatchObject({ copied: 3, failed: 0 });
    expect(rb.summary.incomplete).toBeUndefined();
    // The parts worker a finished were not sent again; b opened no upload of its own.
    expect(b.partsSent()).toEqual([4, 5, 6, 7, 8]);
    expect(b.calls.filter((c) => c.op === 'startUpload')).toEqual([]);
    expect(resumed).toEqual([{ kept: 3, parts: 8 }]);
    expect(Buffer.compare(await getBuffer(provider.memory, 'big'), big)).toBe(0);

    const schema = state.toString().match(/schema (\S+)\)/)![1]!;
    expect(await schemas.sql(`SELECT state, resumes, worker FROM ${schema}.migration_uploads WHERE job = 'big'`)).toEqual([{ state: 'completed', resumes: 1, worker: 'b' }]);
    const parts = await schemas.sql<{ part_number: number; uploads: number }>(`SELECT part_number, uploads FROM ${schema}.migration_upload_parts WHERE job = 'big' ORDER BY part_number`);
    expect(parts.map((p) => [p.part_number, p.uploads])).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((n) => [n, 1]));
    const claims = await readJobClaims(state, 'big');
    expect(claimOverlaps(claims)).toEqual([]);

    // Worker a's claim is gone: a late record of its upload is refused, nothing changes.
    const aClaim = claims.find((c) => c.worker === 'a' && c.key === 'big')!;
    const aId = (await schemas.sql<{ id: number }>(`SELECT id FROM ${schema}.migration_claims WHERE job = 'big' AND key = 'big' AND worker = 'a'`))[0]!.id;
    expect(aClaim).toBeDefined();
    const late = new JobStore(state, 'big', 'a').uploads({ claimId: Number(aId), key: 'big' } as ObjectClaim, () => {
      throw new Error('refused');
    });
    await expect(late.partUploaded('big', { partNumber: 2, size: 5, crc32c: '00000000' })).rejects.toThrow('refused');
    await expect(late.uploadStarted('big', { handle: 'h', srcEtag: 'e', size: 40, partSize: 5 })).rejects.toThrow('refused');
    expect((await schemas.sql(`SELECT count(*)::int AS n FROM ${schema}.migration_upload_parts WHERE job = 'big' AND uploads > 1`))[0]).toEqual({ n: 0 });
    expect((await readJobStatus(state, 'big')).summary.copied).toBe(3);
  });
});
