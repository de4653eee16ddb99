import { spawn } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../../src/registry.js';
import { isRetryable, type BlobStore } from '../../src/core/index.js';
import { claimOverlaps } from '../../src/jobs/claim-overlaps.js';
import { readJobClaims } from '../../src/jobs/job-report.js';
import { PG_URL, PgSchemas, requirePostgres } from '../state/postgres-fixture.js';
import { payload } from '../replication/helpers.js';
import { tempDir } from '../harness/emulator.js';

/**
 * Issue 17, "Proof", first bullet: three `cloudmux migrate … --state postgres://… --job J`
 * processes on one dataset (s3rver → Azurite, a couple of thousand objects and a few large ones);
 * one is killed with SIGKILL mid-run (once it has settled objects, so it dies holding leases); the
 * other two finish; `cloudmux verify` finds no difference; the claim history shows no object held
 * by two workers at once; the final summary is the same from both survivors and `migrate status`.
 */
const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'src/cli/bin.ts');
const SMALL = Number(process.env.CLOUDMUX_JOB_OBJECTS ?? 1500);
const LARGE = 3;
const LARGE_SIZE = 12 * 1024 * 1024;

interface Run { code: number | null; signal: NodeJS.Signals | null; lines: Record<string, unknown>[]; stderr: string }

/**
 * Runs the CLI with stdout and stderr going to files, not pipes: a child writing JSON lines to a
 * pipe blocks (stdout to a pipe is synchronous on Linux) whenever the busy test process falls behind
 * reading, which would stall its lease renewals for no reason of its own.
 */
function cli(args: string[], dir: string, name: string): { pid: number; done: Promise<Run> } {
  const out = join(dir, `${name}.out`);
  const err = join(dir, `${name}.err`);
  const child = spawn(process.execPath, ['--import', 'tsx', BIN, ...args], {
    cwd: ROOT, stdio: ['ignore', openSync(out, 'w'), openSync(err, 'w')], env: { ...process.env, NODE_NO_WARNINGS: '1' },
  });
  return {
    pid: child.pid!,
    done: new Promise((ok, fail) => {
      child.on('error', fail);
      child.on('exit', (code, signal) => {
        const lines = readFileSync(out, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)
          .filter((j) => j.event !== 'object');
        ok({ code, signal, lines, stderr: readFileSync(err, 'utf8') });
      });
    }),
  };
}

async function inParallel<T>(items: T[], n: number, fn: (t: T) => Promise<unknown>): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (i < items.length) await fn(items[i++]!);
  }));
}

/** Seeding through the bare driver (no retry layer): s3rver on a loaded box drops a connection now and then. */
async function patiently<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (attempt >= 5 || !isRetryable(e)) throw e;
    }
  }
}

const haveEmulators = Boolean(process.env.S3_ENDPOINT && process.env.AZURE_STORAGE_CONNECTION_STRING);
const schemas = new PgSchemas();
beforeAll(requirePostgres);
afterAll(() => schemas.dropAll());

describe.skipIf(!haveEmulators)('migration job: three CLI processes on one PostgreSQL, one killed with -9', () => {
  it('the others finish, verify finds no difference, no object was held by two workers at once, every summary agrees', async () => {
    const run = randomBytes(4).toString('hex');
    const srcUrl = `s3://${process.env.S3_BUCKET ?? 'cloudmux-test'}/jobs-${run}/src?endpoint=${encodeURIComponent(process.env.S3_ENDPOINT!)}&forcePathStyle=true`;
    const dstUrl = `az://devstoreaccount1/${process.env.AZURE_CONTAINER ?? 'cloudmux-test'}/jobs-${run}/dst`;
    const src: BlobStore = await openStore(srcUrl);
    const keys = Array.from({ length: SMALL }, (_, i) => `d${i % 7}/obj-${String(i).padStart(5, '0')}`);
    await inParallel(keys, 16, (k) => patiently(() => src.put(k, payload(200 + (k.length * 37) % 3000, k.length))));
    for (let i = 0; i < LARGE; i++) await patiently(() => src.put(`large/${i}.bin`, payload(LARGE_SIZE, 100 + i)));
    await src.close();

    const schema = schemas.name();
    const job = ['--state', PG_URL, '--state-schema', schema, '--job', 'proof', '--lease', '6', '--json', '--concurrency', '8'];
    const args = ['migrate', srcUrl, dstUrl, ...job];
    const dir = await tempDir('job-proof');
    const workers = ['a', 'victim', 'b'].map((n) => cli(args, dir.path, n));
    // Kill the victim once it has settled some objects and holds leases on others (read from the job's
    // rows, not from its output): it dies mid-copy, owing work.
    const state = await schemas.open({ schema });
    const { pool, schema: s } = state.shared();
    const victim = workers[1]!;
    const settledBeforeKill = Math.min(150, Math.floor(SMALL / 8));
    let exited = false;
    void victim.done.then(() => (exited = true));
    for (;;) {
      const r = (await pool.query<{ settled: number; holding: number }>(`SELECT
          count(*) FILTER (WHERE c.released_at IS NOT NULL)::int AS settled, count(*) FILTER (WHERE c.released_at IS NULL)::int AS holding
        FROM ${s}.migration_claims c JOIN ${s}.migration_workers w ON w.job = c.job AND w.worker = c.worker WHERE c.job = 'proof' AND w.pid = $1`, [victim.pid])).rows[0];
      if (exited || (r && r.settled >= settledBeforeKill && r.holding > 0)) break;
      await new Promise((ok) => setTimeout(ok, 100));
    }
    process.kill(victim.pid, 'SIGKILL');
    const [a, killed, b] = await Promise.all(workers.map((w) => w.done));
    await dir.remove();
    expect(killed!.signal, killed!.stderr).toBe('SIGKILL');
    for (const r of [a!, b!]) expect(r.code, r.stderr).toBe(0);

    // The survivors print the job's summary, the same for both, and `migrate status` agrees.
    const summaries = [a!, b!].map((r) => r.lines.find((l) => l.event === 'summary'));
    const { event: _e, durationMs: _d, ...first } = summaries[0] as Record<string, unknown>;
    expect(first).toMatchObject({ listed: SMALL + LARGE, verified: SMALL + LARGE, failed: 0 });
    expect(summaries[1]).toEqual(summaries[0]);
    const st = await cli(['migrate', 'status', '--state', PG_URL, '--state-schema', schema, '--job', 'proof', '--json'], tmpdir(), `status-${run}`).done;
    expect(st.code, st.stderr).toBe(0);
    const shown = st.lines[0] as { state: string; summary: Record<string, unknown>; workers: { state: string; holding: number }[] };
    expect(shown.state).toBe('complete');
    expect({ event: 'summary', ...shown.summary }).toEqual(summaries[0]);
    // The killed one never said goodbye: `running` until it has not been seen for a while, then `lost`.
    expect(shown.workers.filter((w) => w.state === 'finished')).toHaveLength(2);
    expect(shown.workers.filter((w) => w.state !== 'finished').map((w) => ({ ...w, state: w.state === 'lost' ? 'running' : w.state }))).toMatchObject([{ state: 'running', holding: 0 }]);

    // Verify, as a user would: zero differences.
    const v = await cli(['verify', srcUrl, dstUrl, '--json'], tmpdir(), `verify-${run}`).done;
    expect(v.code, v.stderr).toBe(0);

    // The claim history: the killed worker's unreleased claims were taken over, never while it held them.
    const claims = await readJobClaims(state, 'proof');
    expect(claimOverlaps(claims)).toEqual([]);
    const orphaned = claims.filter((c) => c.outcome === null);
    expect(orphaned.length).toBeGreaterThan(0);
    // Each was claimed again after its lease ended (by a survivor; or by its own worker, when a loaded
    // box paused a survivor past its lease) and settled.
    for (const o of orphaned) expect(claims.some((c) => c !== o && c.key === o.key && c.from >= o.to && c.outcome !== null && c.outcome !== 'lost'), o.key).toBe(true);
    expect(new Set(claims.map((c) => c.worker)).size).toBe(3);
  }, 900_000);
});
