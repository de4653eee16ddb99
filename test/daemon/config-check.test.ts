import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkConfigFile } from '../../src/cli/commands/config.js';

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'src/cli/bin.ts');
const work = mkdtempSync(join(tmpdir(), 'cloudmux-config-check-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = join(work, name);
  writeFileSync(p, text);
  return p;
}

function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--import', 'tsx', BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_NO_WARNINGS: '1', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

const BROKEN = `
providers:
  - name: s3
    url: s3://bucket
    options:
      credentials: { accessKeyId: AKIA, secretAccessKey: plain-text-secret }
  - name: Bad Name
    url: memory://
  - name: az
    url: az://acct/container
    options: { connectionString: "\${MISSING_CONN_STRING}" }
policies:
  - { prefix: "", replicas: 2, writeQuorum: 3, pin: [gcs] }
daemon:
  listen: { port: 70000 }
  scan: { compare: bytes }
  surprise: true
`;

describe('cloudmux config check', () => {
  it('reports every problem at once, each with its path', async () => {
    const { problems } = await checkConfigFile(file('broken.yaml', BROKEN), {});
    const paths = problems.map((p) => p.path);
    expect(paths).toEqual(expect.arrayContaining([
      'providers[1].name', 'daemon.listen.port', 'daemon.scan.compare', 'daemon',
    ]));
    expect(problems.find((p) => p.path === 'daemon')!.message).toContain('"surprise"');
  });

  it('after the schema: literal secrets, missing env vars and bad policies, each at its path', async () => {
    const text = BROKEN.replace('  - name: Bad Name\n    url: memory://\n', '').replace(/daemon:[\s\S]*$/, '');
    const { problems } = await checkConfigFile(file('semantic.yaml', text), {});
    expect(problems.map((p) => p.path).sort()).toEqual([
      'policies[0].pin[0]', 'policies[0].writeQuorum',
    ]);
    const secrets = await checkConfigFile(file('secrets.yaml', text.replace(/policies:[\s\S]*$/, '')), {});
    expect(secrets.problems).toEqual([
      { path: 'providers[0].options.credentials.secretAccessKey', message: expect.stringContaining('environment reference') },
      { path: 'providers[1].options.connectionString', message: 'environment variable MISSING_CONN_STRING is not set' },
    ]);
    const missing = await checkConfigFile(file('env.yaml', text.replace(/policies:[\s\S]*$/, '').replace('plain-text-secret', '"${S3_SECRET}"')), { S3_SECRET: 'x' });
    expect(missing.problems).toEqual([{ path: 'providers[1].options.connectionString', message: 'environment variable MISSING_CONN_STRING is not set' }]);
  });

  it('catches driver option errors without sending a request, and YAML syntax errors with their line', async () => {
    const driver = await checkConfigFile(file('driver.yaml', 'providers:\n  - { name: s3, url: "s3://bucket?endpoint=ftp://nope" }\n'), {});
    expect(driver.problems).toEqual([{ path: 'providers[0]', message: expect.stringContaining('s3: ') }]);
    const syntax = await checkConfigFile(file('syntax.yaml', 'providers:\n  - { name: a, url: memory:// \n'), {});
    expect(syntax.problems[0]!.path).toMatch(/^line \d+, column \d+$/);
  });

  it('exits 2 printing the problems, or 0 with a summary; --json for scripts; never echoes a secret', async () => {
    const bad = await cli(['config', 'check', file('cli-broken.yaml', BROKEN)]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/cli-broken\.yaml: \d+ problems:\n/);
    expect(bad.stderr).toContain('  providers[1].name: ');
    expect(bad.stderr).toContain('  daemon.listen.port: ');
    expect(bad.stderr).not.toContain('plain-text-secret');
    const json = await cli(['config', 'check', '--json', file('cli-broken.yaml', BROKEN)]);
    expect(json.code).toBe(2);
    const parsed = JSON.parse(json.stdout) as { ok: boolean; errors: { path: string }[] };
    expect(parsed.ok).toBe(false);
    expect(parsed.errors.map((e) => e.path)).toContain('daemon.scan.compare');
    const secretFile = file('token', 'sv=2024&sig=abc\n');
    const good = await cli(['config', 'check', file('good.yaml', `
providers:
  - { name: a, url: "file://${work}/a" }
  - { name: b, url: "az://devstoreaccount1/cont", options: { sasToken: "\${file:${secretFile}}" } }
policies: [{ replicas: 2, writeQuorum: 1 }]
state: { sqlite: { path: "${work}/state.db" } }
`)]);
    expect(good.stderr).toBe('');
    expect(good.code).toBe(0);
    expect(good.stdout).toMatch(/good\.yaml: ok: 2 providers \(a, b\), 1 policy, state sqlite .*state\.db, daemon on 127\.0\.0\.1:9464\n/);
  });

  it('the complete example in docs/daemon.md is a valid config', async () => {
    const doc = readFileSync(join(ROOT, 'docs/daemon.md'), 'utf8');
    const example = /## Complete example config[\s\S]*?```yaml\n([\s\S]*?)```/.exec(doc)?.[1];
    expect(example).toBeDefined();
    const secret = file('azure-account-key', 'c2VjcmV0\n');
    const local = example!
      .replace('/run/credentials/cloudmux.service/azure-account-key', secret)
      .replace('/var/lib/cloudmux/state.db', join(work, 'example-state.db'));
    const { config, problems } = await checkConfigFile(file('example.yaml', local), { AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE', AWS_SECRET_ACCESS_KEY: 'example' });
    expect(problems).toEqual([]);
    expect(config!.providers.map((p) => p.name)).toEqual(['aws', 'gcp', 'azure']);
    expect(config!.daemon.scan).toEqual({ intervalMs: 60_000, batchSize: 500, compare: 'metadata', settleMs: 60_000, ranges: 16, leaseMs: 300_000 });
    expect(config!.daemon.tombstones).toEqual({ pruneIntervalMs: 3_600_000, retainMs: 604_800_000, leaderCheckMs: 5_000 });
    expect(config!.providers[2]!.options).toEqual({ accountKey: 'c2VjcmV0' });
  });
});
