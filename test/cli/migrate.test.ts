import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore } from '../../src/registry.js';
import { MigrationJournal } from '../../src/replication/journal.js';
import { treesMatch, verifyTrees } from '../../src/replication/verify.js';
import { seedDataset } from '../replication/dataset.js';
import { expectNoVerifiedRecopy } from '../replication/helpers.js';

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'src/cli/bin.ts');
const work = mkdtempSync(join(tmpdir(), 'cloudmux-cli-migrate-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  objects: number;
}

/** Runs the CLI; with `killAfter`, SIGKILLs it once it has reported that many settled objects. */
function cli(args: string[], opts: { killAfter?: number } = {}): Promise<Run> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--import', 'tsx', BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_NO_WARNINGS: '1' } });
    let stdout = '';
    let stderr = '';
    let objects = 0;
    child.stdout.on('data', (d: Buffer) => {
      const text = d.toString('utf8');
      stdout += text;
      objects += text.split('\n').filter((l) => l.includes('"event":"object"')).length;
      if (opts.killAfter !== undefined && objects >= opts.killAfter && child.exitCode === null) child.kill('SIGKILL');
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString('utf8');
    });
    child.on('error', fail);
    child.on('close', (code, signal) => done({ code, signal, stdout, stderr, objects }));
  });
}

describe('cloudmux migrate (CLI)', () => {
  it('exits 2 naming the flag on usage errors, before touching anything', async () => {
    const src = join(work, 'usage-src');
    const cases: [string[], RegExp][] = [
      [['migrate', src, join(work, 'x'), '--concurrency', '0'], /--concurrency/],
      [['migrate', src, join(work, 'x'), '--checksum', 'md5'], /--checksum: expected one of auto\|sha256\|native\|size-only/],
      [['migrate', src, 'nope://x'], /<dst> nope:\/\/x: unknown store scheme/],
      [['migrate', join(work, 'missing-dir'), join(work, 'x')], /<src> .*missing-dir: no such directory/],
      [['migrate', src, join(work, 'x'), '--bwlimit', 'fast'], /--bwlimit/],
    ];
    rmSync(src, { recursive: true, force: true });
    const { mkdirSync } = await import('node:fs');
    mkdirSync(src, { recursive: true });
    const runs = await Promise.all(cases.map(([args]) => cli([...args, '--no-journal'])));
    for (const [i, r] of runs.entries()) {
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(cases[i]![1]);
    }
  });

  it('survives kill -9 at random points: the rerun completes, verifies, and no verified object was copied twice', async () => {
    const srcDir = join(work, 'kill-src');
    const dstDir = join(work, 'kill-dst');
    const journal = join(work, 'kill-journal.sqlite');
    const src = await openStore(pathToFileURL(srcDir));
    const keys = await seedDataset(src, { small: 60, large: 3, largeSize: 1_500_000 });
    const args = ['migrate', srcDir, dstDir, '--journal', journal, '--json', '--concurrency', '4', '--bwlimit', '3M'];
    let seed = 99;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return 1 + (seed % n);
    };
    const kills: number[] = [];
    let killed = 0;
    for (let round = 0; round < 3; round++) {
      const killAfter = rand(15);
      const r = await cli(args, { killAfter });
      kills.push(r.objects);
      if (r.signal === 'SIGKILL') killed++;
      else break; // finished before the kill point: nothing left to interrupt
    }
    const final = await cli(args);
    expect(final.code, final.stderr).toBe(0);
    const summary = JSON.parse(final.stdout.trim().split('\n').at(-1)!) as { event: string; failed: number };
    expect(summary).toMatchObject({ event: 'summary', failed: 0 });
    expect(killed, `objects settled before each kill: ${kills.join(', ')}`).toBeGreaterThanOrEqual(2);

    const dst = await openStore(pathToFileURL(dstDir));
    const report = await verifyTrees(src, dst, { download: true });
    expect(report.matching).toBe(keys.length);
    expect(treesMatch(report)).toBe(true);
    const j = MigrationJournal.open(journal, { src: pathToFileURL(srcDir).href, dst: pathToFileURL(dstDir).href }, JSON.stringify({ include: [], exclude: [] }));
    try {
      expectNoVerifiedRecopy(j);
      expect(j.counts().verified).toBe(keys.length);
    } finally {
      j.close();
    }
    // verify from the CLI agrees and exits 0.
    const v = await cli(['verify', srcDir, dstDir]);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stderr).toMatch(/^no differences: \d+ matching/);
  });

  it('verify exits 1 and marks each difference like rclone check', async () => {
    const a = join(work, 'va');
    const b = join(work, 'vb');
    const sa = await openStore(pathToFileURL(a));
    const sb = await openStore(pathToFileURL(b));
    await sa.put('same', 'x');
    await sb.put('same', 'x');
    await sa.put('changed', 'one');
    await sb.put('changed', 'two');
    await sa.put('gone', 'a');
    await sb.put('new', 'b');
    const v = await cli(['verify', a, b]);
    expect(v.code).toBe(1);
    expect(v.stdout.trim().split('\n').sort()).toEqual(['* changed  (sha256 differs)', '+ new', '- gone'].sort());
  });
});
