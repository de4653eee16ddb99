import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * `npm run demo` tells the same story every time (issue 16 item 11): its key lines appear, in this
 * order, with these numbers. Timings and ports are the only things allowed to differ between runs.
 * Opt-in (CLOUDMUX_DEMO_TEST=1): it starts three emulators of its own and takes 30 s on an idle
 * machine but 4–6 minutes on a loaded one; and 1 run in 6 showed one owed Azure delete reported done
 * by the worker while the blob was still there after Azurite's restart — under investigation.
 */
const ROOT = resolve(import.meta.dirname, '..');
const STORY: RegExp[] = [
  /cheapest to store, in order: gcs, azure \(then s3\)/,
  /wrote 121 objects \(0 failed\)/,
  /finished the second replicas: 121 of 121 objects on 2 providers, outbox 0/,
  /photos\/obj-0000\.bin lives on: azure \+ gcs/,
  /20 verified reads served by: azure ×20/,
  /azurite process stopped/,
  /health: azure is down/,
  /60 puts during the outage: all succeeded; 40 verified reads: all correct/,
  /reads served by: gcs ×40/,
  /deleted 20 photos, 20 of them held by azure/,
  /outbox: 20 deletes owed to azure/,
  /azurite process restarted/,
  /health: azure is healthy/,
  /outbox drained to 0 in [\d.]+ s \(dead-lettered: 0\)/,
  /the owed deletes reached azure: all 20 deleted photos are gone from it/,
  /322 replicas of 161 objects checked: all identical/,
  /listed 60, copied 60, identical 0, failed 0/,
  /verify s3 ⇄ \S+: 60 matching, 0 differing, 0 missing/,
  /running the migration again copies nothing: copied 0, identical 60/,
  /demo finished: nothing lost, nothing stale, every byte verified/,
];

describe.runIf(process.env.CLOUDMUX_DEMO_TEST === '1')('npm run demo', () => {
  it('tells its story: every key line, in order', async () => {
    const out = await new Promise<{ code: number | null; text: string }>((done, fail) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/demo.ts'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString('utf8')));
      child.stderr.on('data', (d: Buffer) => (text += d.toString('utf8')));
      child.on('error', fail);
      child.on('close', (code) => done({ code, text }));
    });
    expect(out.code, out.text).toBe(0);
    let at = 0;
    for (const line of STORY) {
      const rest = out.text.slice(at);
      const m = line.exec(rest);
      expect(m, `${String(line)} after position ${at} in:\n${out.text}`).not.toBeNull();
      at += m!.index + m![0].length;
    }
  }, 900_000);
});
