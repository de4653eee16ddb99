import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { seededBytes } from '../chunked/helpers.js';
import { runCli } from './run-cli.js';

const MiB = 1024 * 1024;
const roots: string[] = [];
afterAll(() => Promise.all(roots.map((r) => rm(r, { recursive: true, force: true }))));

async function tmp(name: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `cloudmux-chunked-cli-${name}-`));
  roots.push(d);
  return d;
}

const lines = (out: Buffer): Record<string, unknown>[] => out.toString().trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

describe('--chunked', () => {
  it('cp --chunked sends only the chunks the destination lacks, and reads chunked objects back', async () => {
    const dir = await tmp('cp');
    const file = join(dir, 'disk.img');
    const data = seededBytes(12 * MiB, 1);
    await writeFile(file, data);
    const dst = `${pathToFileURL(join(dir, 'store')).href}/disk.img`;
    await mkdir(join(dir, 'store'));
    const first = await runCli(['cp', '--chunked', '--json', file, dst]);
    expect(first.code, first.err).toBe(0);
    const a = JSON.parse(first.out.toString()) as { bytes: number; chunked: { bytesRead: number; bytesSent: number; bytesDeduplicated: number } };
    expect(a.bytes).toBe(12 * MiB);
    expect(a.chunked.bytesRead).toBe(12 * MiB);
    expect(a.chunked.bytesSent).toBeGreaterThanOrEqual(12 * MiB);

    seededBytes(1024, 2).copy(data, 6 * MiB);
    await writeFile(file, data);
    const second = await runCli(['cp', '--chunked', '--json', file, dst]);
    expect(second.code, second.err).toBe(0);
    const b = JSON.parse(second.out.toString()) as typeof a;
    expect(b.chunked.bytesSent).toBeLessThanOrEqual(2 * 4 * MiB + 64 * 1024);
    expect(b.chunked.bytesDeduplicated).toBeGreaterThanOrEqual(12 * MiB - 8 * MiB);

    const back = join(dir, 'back.img');
    const got = await runCli(['cp', '--chunked', dst, back]);
    expect(got.code, got.err).toBe(0);
    expect((await readFile(back)).equals(data)).toBe(true);
  }, 120_000);

  it('migrate --chunked moves only missing chunks on a rerun after an edit; verify --chunked compares the objects manifests describe', async () => {
    const dir = await tmp('migrate');
    const src = join(dir, 'src');
    await mkdir(src);
    const big = seededBytes(10 * MiB, 3);
    await writeFile(join(src, 'big.bin'), big);
    await writeFile(join(src, 'small.txt'), 'hello');
    const srcUrl = pathToFileURL(src).href;
    const dstUrl = pathToFileURL(join(dir, 'dst')).href;
    const run1 = await runCli(['migrate', '--chunked', '--no-journal', '--json', srcUrl, dstUrl]);
    expect(run1.code, run1.err).toBe(0);
    const c1 = lines(run1.out).find((l) => l.event === 'chunked')!;
    expect(c1.bytesRead).toBe(10 * MiB + 5);

    seededBytes(1024, 4).copy(big, 3 * MiB);
    await writeFile(join(src, 'big.bin'), big);
    const run2 = await runCli(['migrate', '--chunked', '--no-journal', '--json', srcUrl, dstUrl]);
    expect(run2.code, run2.err).toBe(0);
    const c2 = lines(run2.out).find((l) => l.event === 'chunked')!;
    expect(c2.bytesRead).toBe(10 * MiB);
    expect(c2.bytesSent as number).toBeLessThanOrEqual(2 * 4 * MiB + 64 * 1024);
    expect(c2.bytesDeduplicated as number).toBeGreaterThanOrEqual(2 * MiB);

    const ok = await runCli(['verify', '--chunked', srcUrl, dstUrl]);
    expect(ok.code, ok.out.toString() + ok.err).toBe(0);
    // Without --chunked the chunked side is recognised (it holds .cmx-chunks/) and read as one, and the user is told.
    const auto = await runCli(['verify', srcUrl, dstUrl]);
    expect(auto.code, auto.out.toString() + auto.err).toBe(0);
    expect(auto.err).toContain('holds a chunked tree');
    // --no-chunked compares the manifest as it is stored: it differs.
    const raw = await runCli(['verify', '--no-chunked', srcUrl, dstUrl]);
    expect(raw.code).toBe(1);
  }, 180_000);
});
