import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import { checkJobFlags } from '../../src/cli/commands/migrate-job.js';
import { readJobStatus } from '../../src/jobs/job-report.js';
import { runJobWorker } from '../../src/jobs/job-worker.js';
import { SharedTokenBucket } from '../../src/jobs/shared-token-bucket.js';
import { PgSchemas, requirePostgres } from '../state/postgres-fixture.js';

const schemas = new PgSchemas();
beforeAll(requirePostgres);
afterAll(() => schemas.dropAll());

/** The database's clock, in seconds. */
async function dbNow(): Promise<number> {
  const r = await schemas.sql<{ t: number }>('SELECT extract(epoch FROM clock_timestamp())::float8 AS t');
  return r[0]!.t;
}

describe('rate limits shared through PostgreSQL', () => {
  it('three processes sharing a 50 ops/s bucket are granted at most 50/s together (counted against database time)', async () => {
    const schema = schemas.name();
    // Three "processes": each its own connection pool and bucket object, sharing only the row.
    const states = await Promise.all([1, 2, 3].map(() => schemas.open({ schema, maxConnections: 2 })));
    const buckets = await Promise.all(states.map((s) => SharedTokenBucket.open(s, 'ops:test', { ratePerSec: 50 })));
    const t0 = await dbNow();
    const counts = [0, 0, 0];
    const target = 150; // about 3 s at the limit
    await Promise.all(buckets.map(async (b, i) => {
      // Four callers per process, like a worker's concurrent copies.
      await Promise.all([1, 2, 3, 4].map(async () => {
        while (counts.reduce((a, c) => a + c, 0) < target) {
          await b.take(1);
          counts[i]!++;
        }
      }));
    }));
    const t1 = await dbNow();
    const total = counts.reduce((a, c) => a + c, 0);
    const row = (await schemas.sql<{ granted: number; capacity: number }>(`SELECT granted, capacity FROM ${schema}.rate_buckets WHERE name = 'ops:test'`))[0]!;
    // Every process got some; together never more than the rate over the database time plus one
    // burst (the bucket starts full); the tolerance covers only float rounding.
    expect(counts.every((c) => c > 0)).toBe(true);
    expect(total).toBeLessThanOrEqual(row.granted);
    expect(row.granted).toBeLessThanOrEqual(50 * (t1 - t0) + row.capacity + 0.5);
    // Three unshared 50/s buckets would have taken about a third of the time.
    expect(t1 - t0).toBeGreaterThan((target - row.capacity) / 50 - 0.5);
  });

  it('a job whose workers share a provider limit: the migration completes and the source bucket counts its requests', async () => {
    const schema = schemas.name();
    const src = new MemoryStore();
    for (let i = 0; i < 20; i++) await src.put(`k${i}`, `v${i}`);
    const dst = new MemoryStore();
    const states = await Promise.all([1, 2].map(() => schemas.open({ schema, maxConnections: 4 })));
    const names = { src: 'memory://src', dst: 'memory://dst' };
    const results = await Promise.all(states.map((state, w) => runJobWorker(src, dst, {
      state, job: 'limited', worker: `w${w}`, names, preflight: false, pollMs: 20, sharedOpsPerSecond: 200,
    })));
    expect(results[0]!.summary).toMatchObject({ copied: 20, failed: 0 });
    const rows = await schemas.sql<{ name: string; rate: number; granted: number }>(`SELECT name, rate, granted FROM ${schema}.rate_buckets ORDER BY name`);
    expect(rows.map((r) => [r.name, r.rate])).toEqual([['ops:memory://dst', 200], ['ops:memory://src', 200]]);
    expect(rows.every((r) => r.granted >= 20)).toBe(true);
    expect((await readJobStatus(states[0]!, 'limited')).summary.copied).toBe(20);
  });

  it('--shared-tpslimit needs --state and --job and a positive rate', () => {
    expect(() => checkJobFlags({ sharedTpslimit: '50' })).toThrow(/--shared-tpslimit needs --state/);
    expect(() => checkJobFlags({ state: 'postgres://h/db', job: 'j', sharedTpslimit: '0' })).toThrow(/--shared-tpslimit: expected a positive number/);
    expect(checkJobFlags({ state: 'postgres://h/db', job: 'j', sharedTpslimit: '50' })).toEqual({ leaseMs: 30_000, sharedOpsPerSecond: 50 });
    expect(checkJobFlags({ state: 'postgres://h/db', job: 'j' })).toEqual({ leaseMs: 30_000 });
  });
});
