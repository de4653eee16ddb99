import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../harness/emulator.js';

/**
 * A command loads only what it uses: start-up CPU is wall time lost on every `cloudmux` run
 * (migrations are benchmarked against a Go binary). These cases check the module graph of a few
 * commands, not their speed: a static import of a cloud SDK, zod, yaml or the replication code in
 * a command module would put it back on every command.
 */
const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'src/cli/bin.ts');

/** Packages and source folders no command below may load. */
const HEAVY = [
  /node_modules\/@aws-sdk\//, /node_modules\/@azure\//, /node_modules\/@google-cloud\//,
  /node_modules\/zod\//, /node_modules\/yaml\//, /node_modules\/cli-progress\//, /node_modules\/pino\//,
  /node_modules\/prom-client\//, /node_modules\/better-sqlite3\//,
  /\/src\/config\//, /\/src\/replication\//, /\/src\/router\//, /\/src\/daemon\//, /\/src\/layers\/encryption\/store\./,
];

let dir: Awaited<ReturnType<typeof tempDir>>;
let hook: string;

beforeAll(async () => {
  dir = await tempDir('cli-startup');
  mkdirSync(join(dir.path, 'tree'));
  writeFileSync(join(dir.path, 'tree', 'a.txt'), 'a');
  // ESM imports are seen by a resolve hook, CommonJS ones (createRequire) in the require cache at exit.
  writeFileSync(join(dir.path, 'hooks.mjs'), `import { appendFileSync } from 'node:fs';
export async function resolve(spec, ctx, next) {
  const r = await next(spec, ctx);
  appendFileSync(process.env.CLOUDMUX_MODULE_LOG, r.url + '\\n');
  return r;
}\n`);
  hook = join(dir.path, 'register.mjs');
  writeFileSync(hook, `import { register, createRequire } from 'node:module';
import { appendFileSync } from 'node:fs';
register(${JSON.stringify(pathToFileURL(join(dir.path, 'hooks.mjs')).href)});
process.on('exit', () => appendFileSync(process.env.CLOUDMUX_MODULE_LOG, Object.keys(createRequire(import.meta.url).cache).join('\\n') + '\\n'));\n`);
});
afterAll(async () => {
  await dir.remove();
});

async function modulesLoadedBy(args: string[], entry = BIN): Promise<{ code: number | null; stderr: string; modules: string[] }> {
  const log = join(dir.path, `modules-${Math.random().toString(36).slice(2)}.log`);
  writeFileSync(log, '');
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', pathToFileURL(hook).href, entry, ...args], {
    cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_NO_WARNINGS: '1', CLOUDMUX_MODULE_LOG: log },
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  const code = await new Promise<number | null>((ok, fail) => {
    child.on('error', fail);
    child.on('close', ok);
  });
  const modules = readFileSync(log, 'utf8').split('\n').filter(Boolean).map((m) => m.replace(/^file:\/\//, ''));
  return { code, stderr, modules };
}

/** The heavy packages and source folders among `modules`, by name (`zod`, `@aws-sdk/client-s3`, `src/config`). */
function heavy(modules: string[]): string[] {
  const name = (m: string): string => /.*node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(m)?.[1] ?? /\/((?:src|providers)\/[^/]+)\//.exec(m)?.[1] ?? m;
  return [...new Set(modules.filter((m) => HEAVY.some((re) => re.test(m))).map(name))].sort();
}

describe('import \'cloudmux\'', () => {
  it('loads no pino, prom-client or cloud SDK (the daemon is cloudmux/daemon, drivers are loaded by openStore)', async () => {
    const entry = join(dir.path, 'import-cloudmux.mjs');
    writeFileSync(entry, `import * as cloudmux from ${JSON.stringify(pathToFileURL(join(ROOT, 'src/index.ts')).href)};\nif (typeof cloudmux.openStore !== 'function') process.exit(3);\n`);
    const r = await modulesLoadedBy([], entry);
    expect(r.code, r.stderr).toBe(0);
    const loaded = heavy(r.modules).filter((m) => /^(pino|prom-client|@aws-sdk\/|@azure\/|@google-cloud\/)/.test(m) || m === 'src/daemon');
    expect(loaded).toEqual([]);
  });
});

describe('cloudmux start-up', () => {
  it('--version, ls of a local directory and an unknown scheme load no SDK, config or replication code', async () => {
    const runs = await Promise.all([
      modulesLoadedBy(['--version']),
      modulesLoadedBy(['ls', join(dir.path, 'tree')]),
      modulesLoadedBy(['ls', 'nope://x']),
    ]);
    expect(runs.map((r) => r.code)).toEqual([0, 0, 2]);
    expect(runs[2]!.stderr).toMatch(/unknown store scheme nope:/);
    for (const r of runs) {
      expect(r.modules.some((m) => m.endsWith('/src/cli/main.ts'))).toBe(true);
      expect(heavy(r.modules)).toEqual([]);
    }
  });

  it('a file-to-file migration without a journal loads the replication code but no cloud SDK, zod or yaml', async () => {
    const r = await modulesLoadedBy(['migrate', join(dir.path, 'tree'), join(dir.path, 'copy'), '--no-journal', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.modules.some((m) => m.includes('/src/replication/migrate.'))).toBe(true);
    expect(heavy(r.modules).filter((m) => m !== 'src/replication' && m !== 'better-sqlite3')).toEqual([]);
  });
});
