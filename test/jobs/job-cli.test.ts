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

  it('takes --priority, --metered, --concurrency auto and a --bwlimit timetable: a metered worker copies the critical objects and exits 1, a later run the rest', async () => {
    const src = join(work, 'classes-src');
    mkdirSync(join(src, 'db'), { recursive: true });
    mkdirSync(join(src, 'media'), { recursive: true });
    for (let i = 0; i < 3; i++) writeFileSync(join(src, 'db', `t${i}`), `row ${i}`);
    for (let i = 0; i < 5; i++) writeFileSync(join(src, 'media', `m${i}`), `frame ${i}`);
    const dst = join(work, 'classes-dst');
    const job = ['--state', PG_URL, '--state-schema', schemas.name(), '--job', 'classes'];
    const paced = ['--concurrency', 'auto:1-4', '--bwlimit', '00:00,100M 12:00,50M:off'];
    const metered = await runCli(['migrate', src, dst, ...job, ...paced, '--priority', 'critical=db/**', '--metered', '--json']);
    expect(metered.code, metered.err).toBe(1);
    const first = JSON.parse(metered.out.toString().trim().split('\n').at(-1)!) as Record<string, unknown>;
    expect(first).toMatchObject({ event: 'summary', listed: 8, copied: 3, incomplete: 'metered: 5 non-critical objects deferred' });

    const rest = await runCli(['migrate', src, dst, ...job, ...paced, '--json']);
    expect(rest.code, rest.err).toBe(0);
    expect(JSON.parse(rest.out.toString().trim().split('\n').at(-1)!)).toMatchObject({ event: 'summary', listed: 8, copied: 8, failed: 0 });
  });
});
