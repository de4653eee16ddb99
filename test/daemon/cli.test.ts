import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../harness/emulator.js';
import { waitFor } from './helpers.js';

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'src/cli/bin.ts');
const work = mkdtempSync(join(tmpdir(), 'cloudmux-daemon-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function run(args: string[]): { done: Promise<{ code: number | null; stdout: string; stderr: string }>; kill(sig: NodeJS.Signals): void } {
  const child = spawn(process.execPath, ['--import', 'tsx', BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_NO_WARNINGS: '1' } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  return {
    done: new Promise((ok, fail) => {
      child.on('error', fail);
      child.on('close', (code) => ok({ code, stdout, stderr }));
    }),
    kill: (sig) => child.kill(sig),
  };
}

function config(name: string, extra = ''): string {
  const p = join(work, name);
  writeFileSync(p, `providers:\n  - { name: a, url: "file://${work}/${name}-a" }\n  - { name: b, url: "file://${work}/${name}-b" }\n`
    + `policies: [{ replicas: 2, writeQuorum: 1 }]\nstate: { sqlite: { path: "${work}/${name}.db" } }\n${extra}`);
  return p;
}

describe('cloudmux daemon (CLI)', () => {
  it('exits 2 naming the problem when the config is missing or invalid, or --listen is malformed', async () => {
    const [missing, invalid, listen] = await Promise.all([
      run(['daemon', '--config', join(work, 'nope.yaml')]).done,
      run(['daemon', '--config', config('invalid.yaml', 'daemon: { scan: { batchSize: 0 } }\n')]).done,
      run(['daemon', '--config', config('listen.yaml'), '--listen', 'everywhere']).done,
    ]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read config file .*nope\.yaml: ENOENT/);
    expect(invalid.code).toBe(2);
    expect(invalid.stderr).toContain('daemon.scan.batchSize');
    expect(listen.code).toBe(2);
    expect(listen.stderr).toContain('--listen everywhere: expected host:port');
    for (const r of [missing, invalid, listen]) expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('runs on the --listen address, logs JSON lines, and exits 0 on SIGTERM after closing the state store', async () => {
    const port = await freePort();
    const proc = run(['daemon', '--config', config('ok.yaml', 'health: { probeIntervalMs: 200 }\n'), '--listen', `127.0.0.1:${port}`]);
    await waitFor('/healthz', async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.status === 200, 30_000, 100);
    await waitFor('/readyz', async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, 10_000, 50);
    proc.kill('SIGTERM');
    const { code, stdout } = await proc.done;
    expect(code).toBe(0);
    const events = stdout.trim().split('\n').map((l) => (JSON.parse(l) as { event?: string }).event);
    expect(events[0]).toBe('daemon.started');
    expect(events.slice(-3)).toEqual(['signal', 'daemon.stopping', 'daemon.stopped']);
  });
});
