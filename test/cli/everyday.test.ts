import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './run-cli.js';
import { openStore } from '../../src/registry.js';
import { pseudoRandomBytes } from '../../src/testing/data.js';
import { tempDir } from '../harness/emulator.js';

const run = (args: string[], stdin?: Buffer): ReturnType<typeof runCli> => runCli(args, { stdin });

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('cloudmux ls / cat / cp / rm', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  const data = pseudoRandomBytes(300_000, 'cli');

  beforeAll(async () => {
    dir = await tempDir('cli');
    await writeFile(join(dir.path, 'local.bin'), data);
  });
  afterAll(async () => {
    await dir.remove();
  });

  it('cp local → store → local round-trips bytes and reports the SHA-256', async () => {
    const up = await run(['cp', join(dir.path, 'local.bin'), 'memory://cli1/in/', '--json']);
    expect(up.code, up.err).toBe(0);
    const res = JSON.parse(up.out.toString()) as { bytes: number; sha256: string; target: string };
    expect(res).toMatchObject({ bytes: data.length, sha256: sha(data), target: 'in/local.bin' });
    const down = await run(['cp', 'memory://cli1/in/local.bin', join(dir.path, 'out', 'copy.bin')]);
    expect(down.code, down.err).toBe(0);
    expect(sha(await readFile(join(dir.path, 'out', 'copy.bin')))).toBe(sha(data));
    // No partial file is left next to the target.
    expect((await readdir(join(dir.path, 'out'))).filter((f) => f.includes('partial'))).toEqual([]);
  });

  it('cp - reads stdin and cat writes stdout, with ranges', async () => {
    const up = await run(['cp', '-', 'memory://cli2/piped.txt'], Buffer.from('hello from stdin'));
    expect(up.code, up.err).toBe(0);
    expect((await run(['cat', 'memory://cli2/piped.txt'])).out.toString()).toBe('hello from stdin');
    expect((await run(['cat', 'memory://cli2/piped.txt', '--offset', '6', '--count', '4'])).out.toString()).toBe('from');
    expect((await run(['cat', 'memory://cli2/piped.txt', '--tail', '5'])).out.toString()).toBe('stdin');
    expect((await run(['cp', 'memory://cli2/piped.txt', '-'])).out.toString()).toBe('hello from stdin');
    expect((await run(['cat', join(dir.path, 'local.bin'), '--tail', '10'])).out.equals(data.subarray(data.length - 10))).toBe(true);
  });

  it('cp between stores copies verified, server-side within one store', async () => {
    await run(['cp', join(dir.path, 'local.bin'), 'memory://cli3/a.bin']);
    const same = await run(['cp', 'memory://cli3/a.bin', 'memory://cli3/b.bin', '--json']);
    expect(same.code, same.err).toBe(0);
    const fsDir = join(dir.path, 'fs-store');
    await mkdir(fsDir);
    const cross = await run(['cp', 'memory://cli3/b.bin', `file://${fsDir}/`, '--json']);
    expect(cross.code, cross.err).toBe(0);
    const fsStore = await openStore(`file://${fsDir}`);
    const meta = await fsStore.head('b.bin');
    expect(meta.checksums.sha256).toBe(sha(data));
    await fsStore.close();
  });

  it('ls lists one level, -R everything, --json for scripts', async () => {
    for (const k of ['top.txt', 'dir/one.txt', 'dir/sub/two.txt']) await run(['cp', '-', `memory://cli4/${k}`], Buffer.from(k));
    const one = (await run(['ls', 'memory://cli4'])).out.toString();
    expect(one).toMatch(/DIR\s+dir\//);
    expect(one).toMatch(/7 \S+ top\.txt/);
    expect(one).not.toContain('one.txt');
    const all = (await run(['ls', '-R', 'memory://cli4', '--json'])).out.toString().trim().split('\n').map((l) => JSON.parse(l) as { key: string; size: number });
    expect(all.map((e) => e.key)).toEqual(['dir/one.txt', 'dir/sub/two.txt', 'top.txt']);
    const sub = (await run(['ls', 'memory://cli4/dir', '--json'])).out.toString().trim().split('\n').map((l) => JSON.parse(l) as Record<string, string>);
    expect(sub).toEqual([expect.objectContaining({ key: 'dir/one.txt' }), { prefix: 'dir/sub/' }]);
  });

  it('rm deletes (missing keys are fine), -r deletes a prefix, --dry-run deletes nothing', async () => {
    for (const k of ['x/1', 'x/2', 'x/3', 'y']) await run(['cp', '-', `memory://cli5/${k}`], Buffer.from(k));
    expect((await run(['rm', 'memory://cli5/y', 'memory://cli5/never-existed'])).code).toBe(0);
    const dry = await run(['rm', '-r', '--dry-run', 'memory://cli5/x/']);
    expect(dry.out.toString().trim().split('\n')).toHaveLength(3);
    expect((await run(['ls', '-R', 'memory://cli5'])).out.toString().trim().split('\n')).toHaveLength(3);
    expect((await run(['rm', '-r', 'memory://cli5/x/'])).code).toBe(0);
    expect((await run(['ls', '-R', 'memory://cli5'])).out.toString()).toBe('');
  });

  it('exit codes: 1 for a failed operation, 2 for usage and configuration errors, one line each', async () => {
    const missing = await run(['cat', 'memory://cli6/nope']);
    expect(missing.code).toBe(1);
    expect(missing.err.trim().split('\n')).toHaveLength(1);
    expect(missing.err).toMatch(/NotFound/);
    expect((await run(['cat', 'ftp://host/x'])).code).toBe(2);
    expect((await run(['cat', 'memory://cli6/a', '--offset', '-3'])).code).toBe(2);
    expect((await run(['frobnicate'])).code).toBe(2);
    const badKey = await run(['cp', '-', 'memory://cli6/a//b'], Buffer.from('x'));
    expect(badKey.code).toBe(2);
    expect(badKey.err).toMatch(/InvalidKey/);
  });

  it('cp to an S3 URL and back against the emulator', async (ctx) => {
    const endpoint = process.env.S3_ENDPOINT;
    const bucket = process.env.S3_BUCKET;
    if (!endpoint || !bucket) return ctx.skip('no S3 emulator in this run (CLOUDMUX_EMULATORS excludes s3)');
    const url = (k: string): string => `s3://${bucket}/cli-${process.pid}/${k}?endpoint=${encodeURIComponent(endpoint)}&forcePathStyle=true&region=us-east-1`;
    expect((await run(['cp', join(dir.path, 'local.bin'), url('x.bin')])).code).toBe(0);
    const back = await run(['cat', url('x.bin')]);
    expect(back.code, back.err).toBe(0);
    expect(sha(back.out)).toBe(sha(data));
    expect((await run(['rm', url('x.bin')])).code).toBe(0);
    expect((await run(['cat', url('x.bin')])).code).toBe(1);
  });
});
