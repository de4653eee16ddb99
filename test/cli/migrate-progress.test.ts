import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { MigrationStats, createProgressReporter, formatBytes, formatSummary } from '../../src/cli/progress.js';
import type { MigrationSummary } from '../../src/replication/migrate.js';
import { parseSize } from '../../src/cli/commands/migrate.js';

const summary: MigrationSummary = {
  listed: 3, listedBytes: 3072, identical: 1, copied: 1, verified: 2, failed: 1, failures: [{ key: 'bad', reason: 'AccessDenied: no' }],
  wouldCopy: 0, vanished: 0, extraAtDestination: 0, sourceDeleted: 0, bytes: 1024, durationMs: 2000,
};

describe('migrate progress', () => {
  it('counts objects and bytes from events, including objects settled without streaming', () => {
    const s = new MigrationStats();
    s.add({ type: 'listed', key: 'a', size: 100 });
    s.add({ type: 'listed', key: 'b', size: 50 });
    s.add({ type: 'listing-done', objects: 2, bytes: 150 });
    s.add({ type: 'progress', bytes: 100 });
    s.add({ type: 'object', key: 'a', outcome: 'copied', size: 100, bytes: 100 });
    s.add({ type: 'object', key: 'b', outcome: 'identical', size: 50, bytes: 0 });
    expect(s.snapshot()).toMatchObject({ objects: 2, totalObjects: 2, bytes: 150, totalBytes: 150, copied: 1, identical: 1, errors: 0 });
    expect(s.eta(10)).toBe(0);
  });

  it('--json writes one JSON object per line: objects, then the summary', () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (d: Buffer) => { text += d.toString(); });
    const r = createProgressReporter({ json: true, out, err: new PassThrough() });
    r.onEvent({ type: 'object', key: 'k', outcome: 'copied', size: 1, bytes: 1, verifiedBy: 'sha256' });
    r.finish(summary);
    const lines = text.trim().split('\n').map((l) => JSON.parse(l) as { event: string });
    expect(lines.map((l) => l.event)).toEqual(['object', 'summary']);
    expect(lines[1]).toMatchObject({ failed: 1, copied: 1 });
  });

  it('the text summary names every failure with its reason', () => {
    const text = formatSummary(summary);
    expect(text).toMatch(/failed:\s+1/);
    expect(text).toContain('failed bad: AccessDenied: no');
  });

  it('parses sizes in binary units and formats them back', () => {
    expect(parseSize('50M', '--bwlimit')).toBe(50 * 1024 * 1024);
    expect(parseSize('512k', '--bwlimit')).toBe(512 * 1024);
    expect(parseSize('1.5G', '--bwlimit')).toBe(1.5 * 1024 ** 3);
    expect(() => parseSize('fast', '--bwlimit')).toThrow(/--bwlimit/);
    expect(formatBytes(1536)).toBe('1.50 KiB');
  });
});
