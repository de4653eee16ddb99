import { afterAll, beforeAll, expect } from 'vitest';
import { runJobWorker } from '../../src/jobs/job-worker.js';
import { PgSchemas, requirePostgres } from '../state/postgres-fixture.js';
import { migrationCases } from './migration-cases.js';

const schemas = new PgSchemas();
beforeAll(requirePostgres);
afterAll(() => schemas.dropAll());

migrationCases('PostgreSQL job, three workers', async () => {
  const state = await schemas.open();
  let pass = 0;
  return {
    run: async (src, dst, opts = {}) => {
      const job = `pass-${++pass}`;
      const names = { src: 'memory://src', dst: 'memory://dst' };
      // Three workers in one process: the job's tables are all they share.
      const results = await Promise.all([1, 2, 3].map((n) => runJobWorker(src, dst, {
        ...opts, state, job, worker: `w${n}`, names, preflight: false, concurrency: 4, leaseMs: 10_000, pollMs: 20, listBatch: 7,
      })));
      // The summary is the job's, whoever reads it.
      for (const r of results.slice(1)) expect(r.summary).toEqual(results[0]!.summary);
      return results[0]!.summary;
    },
  };
});
