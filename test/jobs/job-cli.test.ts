import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../cli/run-cli.js';
import { PG_URL, PgSchemas, requirePostgres } from '../state/postgres-fixture.js';

const schemas = new PgSchemas();
const work = mkdtempSync(join(tmpdir(), 'cloudmux-job-cli-'));
beforeAll(requirePostgres);
afterAll(async () => {
  await schemas.dropAll();
  rmSync(work, { recursive: true, force: true });
});

describe('cloudmux migrate --state … --job (CLI)', () => {
  it('exits 2 on flag mistakes, naming the flag, before touching anything', async () => {
    const src = join(work, 'usage-src');
    mkdirSync(src, { recursive: true });
    const dst = join(work, 'usage-dst');
    const cases: [string[], RegExp][] = [
      [['--job', 'j'], /--job needs --state/],
      [['--state', PG_URL], /--state needs --job/],
      [['--state', PG_URL, '--job', 'j', '--dry-run'], /--dry-run cannot be combined with --state/],
      [['--state', PG_URL, '--job', 'j', '--journal', join(work, 'j.sqlite')], /--journal cannot be combined with --state/],
      [['--state', PG_URL, '--job', 'a b'], /--job: expected/],
      [['--state', 'mysql://x', '--job', 'j'], /--state: expected a postgres:\/\/ URL/],
      [['--state', PG_URL, '--job', 'j', '--lease', '0'], /--lease/],
    ];
    for (const [flags, message] of cases) {
      const r = await runCli(['migrate', src, dst, ...flags]);
      expect(r.code, r.err).toBe(2);
      expect(r.err).toMatch(message);
    }
    const status = await runCli(['migrate', 'status', '--job', 'j']);
    expect(status.code).toBe(2);
  });

  it('runs a job, refuses a joiner with another destination (exit 2), and status reports it from another process', async () => {
    const src = join(work, 'src');
    mkdirSync(join(src, 'a'), { recursive: true });
    for (let i = 0; i < 20; i++) writeFileSync(join(src, 'a', `k${i}`), `value ${i}`);
    const schema = schemas.name();
    const job = ['--state', PG_URL, '--state-schema', schema, '--job', 'cli'];
    const first = await runCli(['migrate', src, join(work, 'dst'), ...job, '--json']);
    expect(first.code, first.err).toBe(0);
    const summary = JSON.parse(first.out.toString().trim().split('\n').at(-1)!) as Record<string, unknown>;
    expect(summary).toMatchObject({ event: 'summary', listed: 20, copied: 20, failed: 0 });

    const other = await runCli(['migrate', src, join(work, 'elsewhere'), ...job]);
    expect(other.code).toBe(2);
    expect(other.err).toMatch(/job cli is dst=.*this process asked for dst=.*elsewhere/);

    const status = await runCli(['migrate', 'status', ...job, '--json']);
    expect(status.code, status.err).toBe(0);
    const s = JSON.parse(status.out.toString()) as { state: string; summary: Record<string, unknown> };
    expect(s.state).toBe('complete');
    expect({ event: 'summary', ...s.summary }).toEqual(summary);
    const text = await runCli(['migrate', 'status', ...job]);
    expect(text.out.toString()).toMatch(/job cli: complete/);
    expect(text.out.toString()).toMatch(/20 listed .* 20 copied/);
    const missing = await runCli(['migrate', 'status', '--state', PG_URL, '--state-schema', schema, '--job', 'nope']);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/NotFound: no migration job named nope/);
  });
});
