import { spawn, execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../harness/emulator.js';

/**
 * Every command in README.md's shell blocks either runs here, as written, in a fresh copy of the
 * checkout (the files git tracks, no dist/, no build), or is listed in NOT_HERE with the reason it
 * cannot. A command added to README without either fails this test, and so does a stale entry.
 *
 * The copy stands for `git clone && npm ci`: its node_modules is a link to this checkout's
 * install (same lockfile); `npm ci` itself would fetch the whole tree from the registry. npx runs
 * with a private npm cache, so its link of the local package is made afresh as in a new clone.
 */

const ROOT = resolve(import.meta.dirname, '../..');

/** Commands of README's ```sh blocks, one per line, `a && b` as two, comments dropped. */
export function readmeCommands(markdown: string): string[] {
  const out: string[] = [];
  for (const m of markdown.matchAll(/^```(?:sh|bash|shell)\n([\s\S]*?)^```/gm)) {
    for (const raw of m[1]!.replace(/\\\n/g, ' ').split('\n')) {
      const line = raw.replace(/\s+#\s.*$/, '').trim();
      if (!line || line.startsWith('#')) continue;
      out.push(...line.split(/\s+&&\s+/).map((s) => s.trim()));
    }
  }
  return out;
}

/**
 * The checkout's files: what git tracks, or, in a copy without .git (CI's Node 24 run, an unpacked
 * tarball), every file but node_modules, dist and other build output.
 */
function sourceFiles(root: string): string[] {
  try {
    return execFileSync('git', ['ls-files', '-z'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\0')
      .filter(Boolean);
  } catch {
    const skip = new Set(['node_modules', '.git', 'dist', 'coverage', '.cloudmux']);
    const out: string[] = [];
    const walk = (rel: string): void => {
      for (const e of readdirSync(join(root, rel), { withFileTypes: true })) {
        if (skip.has(e.name)) continue;
        const p = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) walk(p);
        else if (e.isFile()) out.push(p);
      }
    };
    walk('');
    return out;
  }
}

/** Commands that cannot run here, each with its reason. */
const NOT_HERE: Record<string, string> = {
  'npm ci': 'installs from the registry; the copy links this checkout\'s install of the same lockfile instead',
  'npm test': 'is this suite',
  'npm run demo': 'starts its own s3rver, Azurite and GCS server beside the suite\'s (on this 2-core box they miss their 30 s start-up deadline while the suite runs); scripts/demo.ts, run by hand',
  'npx cloudmux ls s3://bucket/dir/': 'names your bucket on AWS; the same command against the S3 emulator is in test/cli/everyday.test.ts',
  'npx cloudmux cp ./big.iso s3://bucket/isos/': 'names your bucket on AWS; cp to s3:// against the emulator is in test/cli/everyday.test.ts and first-hour.test.ts',
  'npx cloudmux cat gs://bucket/log.txt --tail 1000': 'names your bucket on GCS; cat with ranges is in test/cli/everyday.test.ts',
  'npx cloudmux rm -r --dry-run az://acct/container/tmp/': 'names your Azure account; rm -r --dry-run is in test/cli/everyday.test.ts',
  'npx cloudmux migrate s3://old-bucket/data \'az://acct/new-container/data\' --concurrency 16 --bwlimit 200M': 'names your clouds; migrate S3 → Azure against the emulators is in test/replication and test/cli/migrate.test.ts',
  'npx cloudmux verify  s3://old-bucket/data \'az://acct/new-container/data\'': 'names your clouds; verify is in test/cli/encrypt.test.ts and test/replication',
  'npx cloudmux keys rotate s3://bucket/secret/ --to k2 --keyring keyring.json': 'names your bucket on AWS; rotation is in test/cli and test/layers',
  'npx cloudmux daemon --config cloudmux.yaml': 'runs until stopped; the daemon is tested in test/daemon',
  'npx cloudmux sync ~/Notes \'az://acct/container/notes\' --device laptop --watch': 'names your Azure account and runs until stopped; sync through the CLI is in test/cli/sync.test.ts, over Azurite in test/sync/e2e.test.ts',
  'npx cloudmux sync restore todo.md --local ~/Notes --list': 'needs a directory synced before; restore --list is in test/cli/sync.test.ts',
  'npx cloudmux keys vault init s3://bucket/ --identity laptop.id.json': 'names your bucket on AWS; vault commands are in test/encryption/vault-cli.test.ts',
  'npx cloudmux keys device approve s3://bucket/ --identity laptop.id.json --device phone.id.pub.json --fingerprint 7QK2-M9ZD-0H4R-XW3B': 'names your bucket and another device\'s key; approval is in test/encryption/vault-cli.test.ts',
  'npx cloudmux keys device approve s3://bucket/ --identity laptop.id.json --device backup.id.pub.json --fingerprint 1D8F-KQ2N-V7XC-40TA --write-only': 'names your bucket and another device\'s key; write-only approval is in test/encryption/vault-cli.test.ts',
  'npx cloudmux keys device revoke s3://bucket/ --identity laptop.id.json --device 7QK2-M9ZD-0H4R-XW3B': 'names your bucket; revocation with rotation is in test/encryption/vault-cli.test.ts',
};

/** What each runnable command must leave behind, beyond exit code 0. */
const CHECKS: Record<string, (cwd: string, run: CommandRun) => void> = {
  'npx cloudmux keys device new --name laptop --out laptop.id.json': (cwd, run) => {
    expect(JSON.parse(readFileSync(join(cwd, 'laptop.id.json'), 'utf8'))).toMatchObject({ format: 'cloudmux-device-identity', protection: { type: 'scrypt' } });
    expect(JSON.parse(readFileSync(join(cwd, 'laptop.id.pub.json'), 'utf8'))).toMatchObject({ format: 'cloudmux-device', name: 'laptop' });
    expect(run.stdout).toMatch(/fingerprint: [0-9A-Z]{4}(-[0-9A-Z]{4}){3}/);
  },
  'npx cloudmux keys generate --id k1 > keyring.json': (cwd) => {
    const keyring = JSON.parse(readFileSync(join(cwd, 'keyring.json'), 'utf8')) as Record<string, string>;
    expect(Object.keys(keyring)).toEqual(['k1']);
    expect(Buffer.from(keyring.k1!, 'base64')).toHaveLength(32);
  },
  // README: "every problem with its path; exit 2". The example config names an Azure account
  // whose connection string this environment lacks: one problem, named by its path.
  'npx cloudmux config check cloudmux.yaml': (_cwd, run) => {
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/cloudmux\.yaml: 1 problem:\n\s+providers\[\d+\]\.options\.connectionString: environment variable AZURE_STORAGE_CONNECTION_STRING is not set/);
  },
};

/** Exit codes other than 0 that README documents for a command. */
const EXIT_CODE: Record<string, number> = { 'npx cloudmux config check cloudmux.yaml': 2 };

/** Environment a command runs with on top of the suite's (unset with undefined). */
const ENV: Record<string, NodeJS.ProcessEnv> = {
  'npx cloudmux config check cloudmux.yaml': { AZURE_STORAGE_CONNECTION_STRING: undefined },
  'npx cloudmux keys device new --name laptop --out laptop.id.json': { CLOUDMUX_PASSPHRASE: 'a readme passphrase' },
};

/** Files a command's set-up needs in the copy (README's own words say where they come from). */
const SETUP: Record<string, (cwd: string) => void> = {
  // "A complete example config ... in docs/daemon.md"; the README's example is config/cloudmux.example.yaml.
  'npx cloudmux config check cloudmux.yaml': (cwd) => copyFileSync(join(cwd, 'config/cloudmux.example.yaml'), join(cwd, 'cloudmux.yaml')),
};

interface CommandRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

function sh(command: string, cwd: string, env: NodeJS.ProcessEnv): Promise<CommandRun> {
  return new Promise((done, fail) => {
    const child = spawn('sh', ['-c', command], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

const commands = readmeCommands(readFileSync(join(ROOT, 'README.md'), 'utf8'));
const runnable = commands.filter((c) => !(c in NOT_HERE));

describe('README.md shell commands, as written, in a fresh checkout', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let copy = '';
  let env: NodeJS.ProcessEnv = {};

  beforeAll(async () => {
    dir = await tempDir('readme');
    copy = join(dir.path, 'cloudmux');
    const tracked = sourceFiles(ROOT);
    for (const f of tracked) {
      mkdirSync(dirname(join(copy, f)), { recursive: true });
      try {
        copyFileSync(join(ROOT, f), join(copy, f));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; // deleted in the working tree, not yet committed
      }
    }
    symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'));
    env = {
      ...process.env,
      npm_config_cache: join(dir.path, 'npm-cache'),
      npm_config_update_notifier: 'false',
      npm_config_fund: 'false',
      npm_config_audit: 'false',
      npm_config_yes: 'true',
      NODE_NO_WARNINGS: '1',
    };
  }, 120_000);
  afterAll(async () => {
    await dir?.remove();
  });

  it('every command is run below or listed with the reason it cannot run here', () => {
    expect(commands.length).toBeGreaterThan(5);
    const stale = Object.keys(NOT_HERE).filter((c) => !commands.includes(c));
    expect(stale, 'NOT_HERE names commands README no longer has').toEqual([]);
    expect(runnable.filter((c) => !(c in CHECKS)), 'runnable commands without a check of what they do').toEqual([]);
  });

  for (const command of runnable) {
    it(`runs: ${command}`, async () => {
      SETUP[command]?.(copy);
      const cmdEnv = { ...env, ...ENV[command] };
      for (const [k, v] of Object.entries(cmdEnv)) if (v === undefined) delete cmdEnv[k];
      const run = await sh(command, copy, cmdEnv);
      expect(run.code, `${command}\n${run.stdout.slice(-2000)}\n${run.stderr.slice(-2000)}`).toBe(EXIT_CODE[command] ?? 0);
      CHECKS[command]?.(copy, run);
    }, 600_000);
  }
});
