import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { MemoryStore } from '../../providers/memory/index.js';
import { SyncProfile } from '../../src/sync/profiles.js';
import { SyncEngine } from '../../src/sync/sync-engine.js';
import { SyncMetrics } from '../../src/sync/sync-metrics.js';
import { FaultyStore } from '../faults/faulty-store.js';
import { cleanupDirs, tempDir, writeFile } from './helpers.js';

// Sync's priority backlog, per class, in a prom-client registry (as the outbox's per-class series).

afterEach(cleanupDirs);
const engines: SyncEngine[] = [];
afterEach(() => {
  for (const e of engines.splice(0)) e.close();
});

const spec = { metered: true, priority: { rules: [{ class: 'critical' as const, match: '**/*.md' }, { class: 'bulk' as const, minSize: 1000 }] } };

function phone(remote: FaultyStore | MemoryStore, extra: { metered?: boolean } = {}, dir = tempDir('sync-metrics')): SyncEngine & { dir: string } {
  const e = SyncEngine.open({ local: dir, remote, device: 'phone', pair: 'memory://m', fsync: false, profile: new SyncProfile('p', spec), ...extra });
  engines.push(e);
  return Object.assign(e, { dir });
}

function value(text: string, line: string): number | undefined {
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
}

describe('sync priority backlog metrics', () => {
  it('reports files and bytes still to move per class after each round, per pair', async () => {
    const remote = new MemoryStore();
    const p = phone(remote);
    writeFile(p.dir, 'note.md', 'hi');
    writeFile(p.dir, 'photo.jpg', 'x'.repeat(500));
    writeFile(p.dir, 'clip.mov', 'v'.repeat(3000));
    writeFile(p.dir, 'album/2.jpg', 'y'.repeat(200));
    const registry = new Registry();
    const metrics = new SyncMetrics(registry, { pair: 'phone' });

    // A dry run moves nothing: everything decided is still owed.
    let r = await p.round({ dryRun: true });
    expect(r.backlog).toEqual({ critical: { files: 1, bytes: 2 }, normal: { files: 2, bytes: 700 }, bulk: { files: 1, bytes: 3000 } });

    // On the metered link the critical note goes; normal and bulk wait.
    r = await p.round();
    metrics.observe(r);
    expect(r.backlog).toEqual({ critical: { files: 0, bytes: 0 }, normal: { files: 2, bytes: 700 }, bulk: { files: 1, bytes: 3000 } });
    let text = await registry.metrics();
    expect(value(text, 'cloudmux_sync_class_backlog_files{pair="phone",class="critical"}')).toBe(0);
    expect(value(text, 'cloudmux_sync_class_backlog_files{pair="phone",class="normal"}')).toBe(2);
    expect(value(text, 'cloudmux_sync_class_backlog_bytes{pair="phone",class="normal"}')).toBe(700);
    expect(value(text, 'cloudmux_sync_class_backlog_files{pair="phone",class="bulk"}')).toBe(1);
    expect(value(text, 'cloudmux_sync_class_backlog_bytes{pair="phone",class="bulk"}')).toBe(3000);
    expect(value(text, 'cloudmux_sync_pending_changes{pair="phone"}')).toBe(3);
    expect(value(text, 'cloudmux_sync_rounds_total{pair="phone",online="true"}')).toBe(1);

    // Unmetered: the backlog drains to zero.
    p.close();
    engines.splice(engines.indexOf(p), 1);
    const q = phone(remote, { metered: false }, p.dir);
    metrics.observe(await q.round());
    text = await registry.metrics();
    for (const c of ['critical', 'normal', 'bulk']) {
      expect(value(text, `cloudmux_sync_class_backlog_files{pair="phone",class="${c}"}`)).toBe(0);
      expect(value(text, `cloudmux_sync_class_backlog_bytes{pair="phone",class="${c}"}`)).toBe(0);
    }
    expect(value(text, 'cloudmux_sync_pending_changes{pair="phone"}')).toBe(0);
    // A second pair shares the registry under its own label.
    new SyncMetrics(registry, { pair: 'laptop' }).observe(await q.round());
    expect(value(await registry.metrics(), 'cloudmux_sync_rounds_total{pair="laptop",online="true"}')).toBe(1);
  });

  it('offline, the backlog is the queued local changes by class', async () => {
    const remote = new FaultyStore(new MemoryStore());
    const p = phone(remote);
    remote.outage(true, 'ProviderUnavailable');
    writeFile(p.dir, 'a.md', 'abc');
    writeFile(p.dir, 'b.bin', 'z'.repeat(1500));
    const registry = new Registry();
    const r = await p.round();
    expect(r.online).toBe(false);
    expect(r.backlog).toEqual({ critical: { files: 1, bytes: 3 }, normal: { files: 0, bytes: 0 }, bulk: { files: 1, bytes: 1500 } });
    new SyncMetrics(registry).observe(r);
    const text = await registry.metrics();
    expect(value(text, 'cloudmux_sync_class_backlog_bytes{pair="default",class="bulk"}')).toBe(1500);
    expect(value(text, 'cloudmux_sync_rounds_total{pair="default",online="false"}')).toBe(1);
  });
});
