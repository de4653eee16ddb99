import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanupDirs, localTree, readFile, removeFile, tempDir, writeFile } from '../sync/helpers.js';
import { runCli } from './run-cli.js';

afterEach(cleanupDirs);

function lines(out: Buffer): Record<string, unknown>[] {
  return out.toString().trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('cloudmux sync', () => {
  it('syncs two directories through a file:// remote; status and restore work; exit 0', async () => {
    const a = tempDir('cli-sync-a');
    const b = tempDir('cli-sync-b');
    const remoteDir = tempDir('cli-sync-remote');
    const remote = pathToFileURL(remoteDir).href;
    writeFile(a, 'notes/todo.txt', 'buy milk');
    let r = await runCli(['sync', a, remote, '--device', 'laptop']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out.toString()).toContain('uploaded: notes/todo.txt');
    r = await runCli(['sync', b, remote, '--device', 'desk', '--json']);
    expect(r.code).toBe(0);
    const events = lines(r.out);
    expect(events).toContainEqual(expect.objectContaining({ event: 'action', path: 'notes/todo.txt', action: 'download', result: 'done' }));
    expect(events.at(-1)).toMatchObject({ event: 'summary', online: true, done: 1, failed: 0, pending: 0 });
    expect(localTree(b)).toEqual(localTree(a));

    // b deletes; a's copy goes, and is kept in the versions area; restore brings it back.
    removeFile(b, 'notes/todo.txt');
    expect((await runCli(['sync', b, remote])).code).toBe(0);
    expect((await runCli(['sync', a, remote])).code).toBe(0);
    expect(readFile(a, 'notes/todo.txt')).toBeUndefined();
    r = await runCli(['sync', 'restore', 'notes/todo.txt', '--local', a, '--list', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out.toString())).toHaveLength(1);
    r = await runCli(['sync', 'restore', 'notes/todo.txt', '--local', a]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(readFile(a, 'notes/todo.txt')).toBe('buy milk');

    writeFile(a, 'new.txt', 'pending');
    r = await runCli(['sync', 'status', a, '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out.toString())).toMatchObject({ device: 'laptop', files: 1, pending: [] });
  });

  it('conflicts show the conflict copy; --dry-run writes nothing', async () => {
    const a = tempDir('cli-sync-a');
    const b = tempDir('cli-sync-b');
    const remote = pathToFileURL(tempDir('cli-sync-remote')).href;
    writeFile(a, 'x.txt', '0');
    await runCli(['sync', a, remote, '--device', 'a']);
    await runCli(['sync', b, remote, '--device', 'b']);
    writeFile(a, 'x.txt', 'a');
    writeFile(b, 'x.txt', 'b');
    await runCli(['sync', a, remote]);
    let r = await runCli(['sync', b, remote, '--dry-run', '--json']);
    expect(r.code).toBe(0);
    expect(lines(r.out)).toContainEqual(expect.objectContaining({ event: 'summary', dryRun: true, planned: 1, done: 0 }));
    expect(readFile(b, 'x.txt')).toBe('b');
    r = await runCli(['sync', b, remote]);
    expect(r.code).toBe(0);
    expect(r.out.toString()).toMatch(/conflict, kept both: x\.txt \(local version kept as x\.conflict-b-\d{8}-\d{6}\.txt\)/);
    expect(readFile(b, 'x.txt')).toBe('a');
  });

  it('usage errors exit 2 and write nothing', async () => {
    const a = tempDir('cli-sync-a');
    const remote = pathToFileURL(tempDir('cli-sync-remote')).href;
    const cases: [string[], RegExp][] = [
      [['sync', join(a, 'missing'), remote], /no such directory/],
      [['sync', a, remote, '--conflict', 'sometimes'], /expected one of keep-both, newest, local, remote, merge:<merger>/],
      [['sync', a, remote, '--conflict', '*.md=merge:nope'], /unknown merger "nope"/],
      [['sync', a, remote, '--device', 'has space'], /device id/],
      [['sync', a, remote, '--watch', '--dry-run'], /--watch cannot be combined with --dry-run/],
      [['sync', 'status', a], /no sync state/],
    ];
    for (const [args, msg] of cases) {
      const r = await runCli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toMatch(msg);
    }
    mkdirSync(join(a, 'x'));
    expect(localTree(a).size).toBe(0);
  });

  it('an unreachable remote exits 1 with the changes queued', async () => {
    const a = tempDir('cli-sync-a');
    writeFile(a, 'x.txt', 'offline edit');
    const dead = 's3://bucket/p?endpoint=http%3A%2F%2F127.0.0.1%3A9&forcePathStyle=true&region=us-east-1&conditionalPut=true';
    const r = await runCli(['sync', a, dead, '--json'], { env: { AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y' } });
    expect(r.code).toBe(1);
    expect(lines(r.out).at(-1)).toMatchObject({ event: 'summary', online: false, pending: 1 });
  });
});
