import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { getBuffer } from '../../src/core/helpers.js';
import { FsStore } from '../../providers/fs/index.js';
import { ChunkedStore } from '../../src/layers/chunked/index.js';
import { seededBytes } from '../chunked/helpers.js';
import { runCli } from './run-cli.js';

const roots: string[] = [];
afterAll(() => Promise.all(roots.map((r) => rm(r, { recursive: true, force: true }))));

describe('cloudmux gc', () => {
  it('reports with --dry-run, then deletes only unreferenced chunks past the grace period', async () => {
    const root = await mkdtemp(join(tmpdir(), 'cloudmux-gc-cli-'));
    roots.push(root);
    const store = new ChunkedStore(new FsStore({ root }), { sizes: { min: 1024, target: 4096, max: 16384 }, threshold: 8192 });
    const keep = seededBytes(100_000, 1);
    await store.put('keep', keep);
    await store.put('drop', seededBytes(80_000, 2));
    await store.delete('drop');
    const url = pathToFileURL(root).href;

    const young = await runCli(['gc', url, '--json']);
    expect(young.code, young.err).toBe(0);
    const y = JSON.parse(young.out.toString());
    expect(y.deleted).toBe(0);
    expect(y.keptYoung).toBeGreaterThan(5);

    const dry = await runCli(['gc', url, '--dry-run', '--grace', '0s', '--json']);
    expect(dry.code, dry.err).toBe(0);
    const d = JSON.parse(dry.out.toString());
    expect(d).toMatchObject({ dryRun: true, manifests: 1, missing: 0 });
    expect(d.deleted).toBe(y.keptYoung);

    const real = await runCli(['gc', url, '--grace', '0s']);
    expect(real.code, real.err).toBe(0);
    expect(real.err).toContain('shorter than an hour');
    expect(real.out.toString()).toContain(`deleted ${d.deleted} unreferenced chunks`);
    expect((await getBuffer(store, 'keep', { verify: true })).equals(keep)).toBe(true);
    const again = JSON.parse((await runCli(['gc', url, '--grace', '0s', '--json'])).out.toString());
    expect(again.deleted).toBe(0);
    await store.close();
  });

  it('refuses a bad --grace with exit 2', async () => {
    const r = await runCli(['gc', 'memory://', '--grace', 'soon']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('--grace');
  });
});
