import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * Issue 16 item 10: the package as a user installs it. The packed tarball is unpacked into a fresh
 * consumer whose node_modules holds cloudmux's dependencies but none of its dev dependencies (no
 * vitest, no @types/opossum), exactly as `npm install cloudmux` leaves it; then a strict `tsc`
 * (no skipLibCheck) type-checks a small program against every subpath export, and Node imports them.
 */
const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
  scripts: Record<string, string>; files: string[]; exports: Record<string, unknown>;
  dependencies: Record<string, string>; devDependencies: Record<string, string>;
  peerDependencies?: Record<string, string>; peerDependenciesMeta?: Record<string, { optional?: boolean }>;
};
const work = await mkdtemp(join(tmpdir(), 'cloudmux-pack-'));
afterAll(() => rm(work, { recursive: true, force: true }));

describe('package.json', () => {
  it('builds before packing, and declares vitest an optional peer', () => {
    expect(pkg.scripts.prepack).toBe('npm run build');
    expect(pkg.peerDependencies?.vitest).toBeDefined();
    expect(pkg.peerDependenciesMeta?.vitest?.optional).toBe(true);
  });

  it('agrees with package-lock.json\'s root entry (what `npm ci` checks)', async () => {
    const lock = JSON.parse(await readFile(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, Record<string, unknown>> };
    const root = lock.packages['']!;
    for (const field of ['dependencies', 'devDependencies', 'peerDependencies', 'peerDependenciesMeta'] as const) {
      expect(root[field], field).toEqual(pkg[field]);
    }
  });
});

describe('the packed package in a consumer project', () => {
  it('type-checks strictly without skipLibCheck, loads, and says clearly that cloudmux/testing needs vitest', async () => {
    // The build npm's prepack would run, into a staging copy of what `files` ships.
    const stage = join(work, 'stage');
    await mkdir(stage, { recursive: true });
    const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
    // --noCheck: the same emit as `npm run build`; type errors in our sources are lint's to report.
    await run(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', join(stage, 'dist'), '--noCheck'], { cwd: ROOT, maxBuffer: 16 << 20 });
    for (const f of ['package.json', 'README.md', ...pkg.files.filter((f) => f !== 'dist')]) await cp(join(ROOT, f), join(stage, f), { recursive: true });
    const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: stage, maxBuffer: 16 << 20 });
    const tarball = join(work, (JSON.parse(packed.stdout) as { filename: string }[])[0]!.filename);

    const consumer = join(work, 'consumer');
    const modules = join(consumer, 'node_modules');
    await mkdir(join(modules, 'cloudmux'), { recursive: true });
    await run('tar', ['-xzf', tarball, '-C', join(modules, 'cloudmux'), '--strip-components=1']);
    await linkInstalledDependencies(modules);

    await writeFile(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    await writeFile(join(consumer, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { strict: true, noEmit: true, target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext', types: ['node'], skipLibCheck: false },
      files: ['index.ts'],
    }));
    await writeFile(join(consumer, 'index.ts'), CONSUMER);
    const check = await run(process.execPath, [tsc, '-p', consumer], { cwd: consumer, maxBuffer: 16 << 20 }).then(() => '', (e: { stdout?: string; message: string }) => e.stdout || e.message);
    expect(check, 'strict tsc of a consumer of the packed types').toBe('');

    const load = async (spec: string): Promise<string> => (await run(process.execPath, ['--input-type=module', '-e',
      `import(${JSON.stringify(spec)}).then((m) => console.log('loaded', Object.keys(m).length), (e) => console.log('error', e.message))`,
    ], { cwd: consumer })).stdout.trim();
    for (const spec of Object.keys(pkg.exports).filter((s) => s !== './package.json' && s !== './testing')) {
      expect(await load(spec === '.' ? 'cloudmux' : `cloudmux/${spec.slice(2)}`), spec).toMatch(/^loaded [1-9]/);
    }
    expect(await load('cloudmux/testing')).toMatch(/^error cloudmux\/testing .*vitest.*optional peer dependency.*npm install --save-dev vitest/);
  }, 900_000);
});

/** What `npm install cloudmux` puts beside it: every installed package but cloudmux's dev dependencies (a consumer brings its own TypeScript and @types/node). */
async function linkInstalledDependencies(modules: string): Promise<void> {
  const installed = await realpath(join(ROOT, 'node_modules'));
  const excluded = new Set(Object.keys(pkg.devDependencies).filter((n) => n !== 'typescript' && n !== '@types/node'));
  for (const entry of await readdir(installed)) {
    if (entry.startsWith('.') || entry === 'cloudmux') continue;
    if (!entry.startsWith('@')) {
      if (!excluded.has(entry)) await symlink(join(installed, entry), join(modules, entry));
      continue;
    }
    await mkdir(join(modules, entry), { recursive: true });
    for (const sub of await readdir(join(installed, entry))) {
      if (!excluded.has(`${entry}/${sub}`)) await symlink(join(installed, entry, sub), join(modules, entry, sub));
    }
  }
}

const CONSUMER = `
import { BreakerStore, putIfAbsent, resilient, Router, SqliteStateStore, type BlobStore, type PutIfAbsentResult } from 'cloudmux';
import { AzureStore } from 'cloudmux/azure';
import { Daemon } from 'cloudmux/daemon';
import { FsStore } from 'cloudmux/fs';
import { GcsStore } from 'cloudmux/gcs';
import { MemoryStore } from 'cloudmux/memory';
import { S3Store } from 'cloudmux/s3';
import type { TestStoreOptions } from 'cloudmux/testing';

export async function demo(): Promise<string | undefined> {
  const stack = resilient(new MemoryStore());
  const store: BlobStore = stack.store;
  const r: PutIfAbsentResult = await putIfAbsent(store, 'k', 'v');
  const fails: number | undefined = (stack.breaker as BreakerStore | undefined)?.stats('write').failures;
  const opts: TestStoreOptions = { create: () => new MemoryStore() };
  void [AzureStore, Daemon, FsStore, GcsStore, S3Store, Router, SqliteStateStore, opts, fails];
  return r.created ? r.meta.etag : undefined;
}
`;
