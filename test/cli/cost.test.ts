import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../harness/emulator.js';
import { runCli } from './run-cli.js';

let dir: Awaited<ReturnType<typeof tempDir>>;
let config: string;

beforeAll(async () => {
  dir = await tempDir('cli-cost');
  config = join(dir.path, 'sim.yaml');
  writeFileSync(config, [
    'providers:',
    '  - { name: use, url: "memory://use", location: "aws:us-east-1", prices: { use: s3-standard } }',
    '  - { name: euw, url: "memory://euw", location: "gcp:europe-west1", prices: { use: gcs-standard } }',
    '',
  ].join('\n'));
});
afterAll(async () => dir.remove());

describe('cloudmux cost', () => {
  it('generate | simulate: a table with every policy, and --json', async () => {
    const gen = await runCli(['cost', 'generate', '--shape', 'regional', '--seed', '5', '--requests', '3000', '--objects', '200', '--days', '3', '--locations', 'aws:us-east-1,gcp:europe-west1']);
    expect(gen.code, gen.err).toBe(0);
    const text = gen.out.toString();
    expect(text.split('\n')[0]).toBe('time,op,key,size,location');
    expect(text.trim().split('\n')).toHaveLength(3001);
    const again = await runCli(['cost', 'generate', '--shape', 'regional', '--seed', '5', '--requests', '3000', '--objects', '200', '--days', '3', '--locations', 'aws:us-east-1,gcp:europe-west1']);
    expect(again.out.equals(gen.out)).toBe(true);
    const trace = join(dir.path, 'regional.csv');
    writeFileSync(trace, gen.out);

    const table = await runCli(['cost', 'simulate', '--trace', trace, '--config', config]);
    expect(table.code, table.err).toBe(0);
    const out = table.out.toString();
    expect(out).toMatch(/^3000 requests over 3\.0 days/);
    for (const p of ['single', 'replicate-all', 'static', 'write-local', 'always-store', 'fixed-ttl', 't-even', 'adaptive', 'optimum']) expect(out).toMatch(new RegExp(`^${p} .*\\$`, 'm'));
    expect(out).toMatch(/^optimum .* 1\.000×/m);

    const json = await runCli(['cost', 'simulate', '--trace', trace, '--config', config, '--json', '--policies', 'static,optimum']);
    expect(json.code, json.err).toBe(0);
    const report = JSON.parse(json.out.toString());
    expect(report.requests).toBe(3000);
    expect(report.policies.map((p: { name: string }) => p.name)).toEqual(['static', 'optimum']);
    expect(report.policies[1].cost.total).toBeLessThanOrEqual(report.policies[0].cost.total);
    expect(Object.keys(report.policies[0].byProvider)).toEqual(['use', 'euw']);
  });

  it('a malformed trace exits 2 naming the line, and prints no table', async () => {
    const bad = join(dir.path, 'bad.csv');
    writeFileSync(bad, 'time,op,key,size,location\n0,put,k,10,aws:us-east-1\n1,get,k,ten,aws:us-east-1\n');
    const r = await runCli(['cost', 'simulate', '--trace', bad, '--config', config]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/InvalidArgument: trace line 3: size must be a whole number/);
    expect(r.out.length).toBe(0);
  });

  it('usage mistakes exit 2 and say what was expected', async () => {
    const cases: [string[], RegExp][] = [
      [['cost', 'simulate', '--trace', join(dir.path, 'missing.csv'), '--config', config], /--trace: cannot read .*ENOENT/],
      [['cost', 'simulate', '--trace', '-', '--config', config, '--policies', 'cheapest'], /unknown policy "cheapest"/],
      [['cost', 'simulate', '--trace', '-', '--config', config, '--fixed-ttl', 'soon'], /--fixed-ttl: expected a duration/],
      [['cost', 'generate', '--shape', 'spiky'], /unknown shape "spiky"/],
      [['cost', 'generate', '--shape', 'zipf', '--requests', 'many'], /--requests: expected a number/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toMatch(message);
    }
  });
});
