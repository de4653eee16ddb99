import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { getBuffer } from '../../src/core/index.js';
import { parseConfig } from '../../src/config/load.js';
import type { CloudmuxConfig } from '../../src/config/schema.js';
import { Daemon, createDaemonLogger, openRouter } from '../../src/daemon/index.js';
import type { Router } from '../../src/router/router.js';
import { SqliteStateStore } from '../../src/state/sqlite.js';
import { tempDir } from '../harness/emulator.js';
import { LogCapture, switchable, waitFor, type SwitchableStore } from './helpers.js';

const SECRET = `hunter2-${randomBytes(6).toString('hex')}`;

interface Setup {
  dir: string;
  a: SwitchableStore;
  b: SwitchableStore;
  raw: Record<string, unknown>;
  configFile: string;
  log: LogCapture;
  env: Record<string, string>;
}

let setup: Setup;
let cleanup: (() => Promise<void>)[] = [];

beforeEach(async () => {
  const dir = await tempDir('daemon-test');
  const id = randomBytes(4).toString('hex');
  const a = switchable(`a${id}`);
  const b = switchable(`b${id}`);
  writeFileSync(join(dir.path, 'secret.txt'), `${SECRET}-from-file\n`);
  const raw = {
    providers: [
      { name: 'a', url: `switch://a${id}`, options: { secretAccessKey: '${DMX_TEST_SECRET}' }, resilience: { retry: { retries: 1, baseDelayMs: 5 }, breaker: { volumeThreshold: 3, resetTimeoutMs: 200 } } },
      { name: 'b', url: `switch://b${id}`, options: { accountKey: `\${file:${join(dir.path, 'secret.txt')}}` }, resilience: { retry: { retries: 1, baseDelayMs: 5 }, breaker: { volumeThreshold: 3, resetTimeoutMs: 200 } } },
    ],
    policies: [{ prefix: '', replicas: 2, writeQuorum: 1, pin: ['a'] }, { prefix: 'critical/', replicas: 2, writeQuorum: 2 }],
    state: { sqlite: { path: join(dir.path, 'state.db') } },
    health: { probeIntervalMs: 100, recoverAfter: 1, windowMs: 2_000 },
    replication: { pollIntervalMs: 20, backoffBaseMs: 10, backoffMaxMs: 50, leaseMs: 2_000, maxAttempts: 3 },
    daemon: { listen: { port: 0 }, shutdownGraceMs: 200, probeTimeoutMs: 1_000, scan: { intervalMs: 0, settleMs: 0 } },
  };
  const configFile = join(dir.path, 'cloudmux.yaml');
  writeFileSync(configFile, stringify(raw));
  setup = { dir: dir.path, a, b, raw, configFile, log: new LogCapture(), env: { DMX_TEST_SECRET: SECRET } };
  cleanup = [() => dir.remove()];
});

afterEach(async () => {
  setup.a.down = setup.b.down = false;
  setup.a.holdPuts = setup.b.holdPuts = false;
  for (const c of cleanup.reverse()) await c();
});

function config(raw = setup.raw): CloudmuxConfig {
  return parseConfig(raw, { env: setup.env });
}

async function startDaemon(): Promise<Daemon> {
  const d = await Daemon.start({ configFile: setup.configFile, env: setup.env, logger: createDaemonLogger('debug', setup.log), processMetrics: false });
  cleanup.push(() => d.stop({ graceMs: 100 }));
  return d;
}

/** A Router in "another process": its own state store instance on the same file, the same providers. */
async function appRouter(): Promise<Router> {
  const r = await openRouter(config());
  cleanup.push(() => r.close());
  return r;
}

async function get(d: Daemon, path: string): Promise<{ status: number; text: string; json: () => unknown }> {
  const { host, port } = d.address();
  const res = await fetch(`http://${host}:${port}${path}`);
  const text = await res.text();
  return { status: res.status, text, json: () => JSON.parse(text) as unknown };
}

function metric(text: string, line: string): number | undefined {
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
}

describe('Daemon', () => {
  it('serves /healthz, /readyz, /metrics and /status; other paths 404, other methods 405', async () => {
    const d = await startDaemon();
    expect((await get(d, '/healthz')).status).toBe(200);
    const ready = await waitFor('ready', async () => ((await get(d, '/readyz')).status === 200 ? true : undefined));
    expect(ready).toBe(true);
    const status = (await get(d, '/status')).json() as { ready: boolean; providers: { name: string; state: string }[]; backlog: unknown; policies: unknown[] };
    expect(status.ready).toBe(true);
    expect(status.providers.map((p) => [p.name, p.state])).toEqual([['a', 'healthy'], ['b', 'healthy']]);
    expect(status.backlog).toMatchObject({ count: 0, dead: 0 });
    expect(status.policies).toHaveLength(2);
    const metrics = (await get(d, '/metrics')).text;
    for (const name of [
      'cloudmux_provider_requests_total', 'cloudmux_provider_errors_total', 'cloudmux_operation_duration_seconds', 'cloudmux_breaker_state',
      'cloudmux_provider_up', 'cloudmux_outbox_backlog_entries', 'cloudmux_outbox_oldest_age_seconds', 'cloudmux_replicated_bytes_total',
      'cloudmux_repairs_total', 'cloudmux_ready', 'cloudmux_outbox_dead_entries',
    ]) expect(metrics, name).toContain(`# TYPE ${name} `);
    expect(metric(metrics, 'cloudmux_breaker_state{provider="a",op_class="write"}')).toBe(0);
    expect(metric(metrics, 'cloudmux_provider_requests_total{provider="a",op="put",outcome="ok"}')).toBeGreaterThan(0);
    expect((await get(d, '/nope')).status).toBe(404);
    const { host, port } = d.address();
    expect((await fetch(`http://${host}:${port}/status`, { method: 'POST' })).status).toBe(405);
  });

  it('runs its replication worker at transfers.bwlimit and exports the limit in force', async () => {
    writeFileSync(setup.configFile, stringify({ ...setup.raw, transfers: { bwlimit: '100M:50M' } }));
    const d = await startDaemon();
    const metrics = (await get(d, '/metrics')).text;
    expect(metric(metrics, 'cloudmux_replication_bwlimit_bytes_per_second{direction="up"}')).toBe(100 * 1024 ** 2);
    expect(metric(metrics, 'cloudmux_replication_bwlimit_bytes_per_second{direction="down"}')).toBe(50 * 1024 ** 2);
  });

  it('shows modelled spend per provider and per prefix in /status and /metrics', async () => {
    // $0.02/GB-month everywhere; $5 per 1,000 writes and $0.4 per 1,000 reads, so requests show.
    const prices = { storageGbMonth: 0.02, egressInternetGb: 0.09, egressToGb: {}, classAPer1k: 5, classBPer1k: 0.4 };
    for (const p of setup.raw.providers as { prices?: unknown }[]) p.prices = prices;
    writeFileSync(setup.configFile, stringify(setup.raw));
    const d = await startDaemon();
    await waitFor('ready', async () => (await get(d, '/readyz')).status === 200);
    const app = await appRouter();
    setup.b.down = true;
    await app.put('critical-not/plain', Buffer.alloc(3000)); // policy '': on a now, owed to b
    setup.b.down = false;
    await app.put('critical/x', Buffer.alloc(1000)); // policy 'critical/': a and b at once
    await waitFor('backlog drained', async () => ((await get(d, '/status')).json() as { backlog: { count: number } }).backlog.count === 0, 10_000);
    type Line = { storagePerMonth: number; storedBytes: number; egress: number; requests: number };
    const st = (await get(d, '/status')).json() as { spend: unknown };
    const { spend } = st as { spend: { byProvider: Record<string, Line>; byPrefix: Record<string, Line>; total: Line } };
    const GB = 2 ** 30;
    expect(spend.byPrefix['critical/']).toMatchObject({ storedBytes: 2000, storagePerMonth: expect.closeTo((2000 / GB) * 0.02, 12) as unknown });
    expect(spend.byPrefix['']!.storedBytes).toBe(6000);
    // The daemon copied the '' object from a to b: a read at a ($0.0004) and a write at b ($0.005), egress a→b.
    expect(spend.byPrefix['']!.requests).toBeCloseTo(0.0004 + 0.005, 12);
    expect(spend.byPrefix['']!.egress).toBeCloseTo((3000 / GB) * 0.09, 12);
    expect(spend.byProvider.a!.storedBytes).toBe(4000);
    expect(spend.byProvider.b!.storedBytes).toBe(4000);
    expect(spend.total.storagePerMonth).toBeCloseTo((8000 / GB) * 0.02, 12);
    // Every provider operation the daemon made (probes, the copy) is priced per provider.
    expect(spend.byProvider.b!.requests).toBeGreaterThan(0);
    const metrics = (await get(d, '/metrics')).text;
    expect(metric(metrics, 'cloudmux_modelled_storage_dollars_per_month{provider="a"}')).toBeCloseTo((4000 / GB) * 0.02, 12);
    expect(metric(metrics, 'cloudmux_modelled_prefix_storage_dollars_per_month{prefix="critical/"}')).toBeCloseTo((2000 / GB) * 0.02, 12);
    expect(metric(metrics, 'cloudmux_modelled_prefix_spend_dollars{prefix="",kind="requests"}')).toBeCloseTo(0.0054, 12);
    expect(metric(metrics, 'cloudmux_modelled_spend_dollars{provider="b",kind="requests"}')).toBeGreaterThan(0);
  });

  it('a provider going down shows in /readyz, /metrics and the log; back up, the backlog drains', async () => {
    const d = await startDaemon();
    await waitFor('ready', async () => (await get(d, '/readyz')).status === 200);
    const app = await appRouter();
    setup.b.down = true;
    const notReady = await waitFor('readyz 503', async () => {
      const r = await get(d, '/readyz');
      return r.status === 503 ? r.json() as { reasons: string[]; providers: Record<string, string> } : undefined;
    }, 5_000, 10);
    expect(notReady.providers).toEqual({ a: 'healthy', b: 'down' });
    expect(notReady.reasons).toEqual([expect.stringMatching(/^policy "critical\/": 1 provider\(s\) up, write quorum is 2 \(down: b: /)]);
    const metrics = (await get(d, '/metrics')).text;
    expect(metric(metrics, 'cloudmux_provider_up{provider="b"}')).toBe(0);
    expect(metric(metrics, 'cloudmux_provider_up{provider="a"}')).toBe(1);
    expect(metric(metrics, 'cloudmux_probe_success{provider="b"}')).toBe(0);
    expect(metric(metrics, 'cloudmux_ready')).toBe(0);
    const downEvents = setup.log.events('provider.down');
    expect(downEvents).toEqual([expect.objectContaining({ provider: 'b', from: expect.any(String), to: 'down', reason: expect.any(String) })]);

    // The app keeps writing (W=1 on a); b is owed every object and the daemon defers them while b is down.
    const bodies = Array.from({ length: 5 }, (_, i) => randomBytes(1000 + i));
    for (const [i, body] of bodies.entries()) await app.put(`obj-${i}`, body);
    const owed = await waitFor('backlog metric', async () => metric((await get(d, '/metrics')).text, 'cloudmux_outbox_backlog_entries{provider="b"}') === 5);
    expect(owed).toBe(true);
    expect(((await get(d, '/status')).json() as { backlog: { count: number } }).backlog.count).toBe(5);

    setup.b.down = false;
    await waitFor('readyz 200', async () => (await get(d, '/readyz')).status === 200, 5_000, 10);
    await waitFor('backlog drained', async () => ((await get(d, '/status')).json() as { backlog: { count: number } }).backlog.count === 0, 10_000);
    for (const [i, body] of bodies.entries()) expect((await getBuffer(setup.b.memory, `obj-${i}`)).equals(body)).toBe(true);
    const after = (await get(d, '/metrics')).text;
    expect(metric(after, 'cloudmux_replicated_bytes_total{provider="b"}')).toBe(bodies.reduce((n, b) => n + b.length, 0));
    expect(metric(after, 'cloudmux_outbox_backlog_entries{provider="b"}')).toBe(0);
    expect(metric(after, 'cloudmux_outbox_oldest_age_seconds')).toBe(0);
    expect(setup.log.events('provider.up')).toEqual([expect.objectContaining({ provider: 'b', to: 'healthy' })]);
    const breakerOpen = setup.log.events('breaker.open').filter((e) => e.provider === 'b');
    expect(breakerOpen.length).toBeGreaterThan(0);
    expect(breakerOpen[0]).toMatchObject({ reason: expect.stringContaining('Transient') });
  });

  it('logs each dead-lettered entry with its reason', async () => {
    const d = await startDaemon();
    await waitFor('ready', async () => (await get(d, '/readyz')).status === 200);
    setup.b.holdPuts = true;
    const app = await appRouter();
    await app.put('doomed', 'bytes that will vanish');
    // The only holder loses the object before the copy runs.
    await setup.a.memory.delete('doomed');
    setup.b.holdPuts = false;
    // b's copy finds no holder left; a (which lost its copy) is owed one it cannot get either.
    const dead = await waitFor('dead letters', () => {
      const events = setup.log.events('outbox.dead_letter');
      return events.length === 2 ? events : undefined;
    });
    expect(dead.map((e) => e.provider).sort()).toEqual(['a', 'b']);
    for (const e of dead) expect(e).toMatchObject({ key: 'doomed', kind: 'replicate', reason: expect.stringContaining('no provider holds version 1 of doomed') });
    expect(metric((await get(d, '/metrics')).text, 'cloudmux_outbox_dead_entries')).toBe(2);
  });

  it('reload: an invalid config is refused and the old one keeps serving; a valid one is swapped in', async () => {
    const d = await startDaemon();
    await waitFor('ready', async () => (await get(d, '/readyz')).status === 200);
    writeFileSync(setup.configFile, 'providers: [ { name: a, url: "x" \n');
    expect(await d.reload()).toMatchObject({ ok: false, error: expect.stringContaining('not valid YAML') });
    writeFileSync(setup.configFile, stringify({ ...setup.raw, policies: [{ prefix: '', replicas: 2, writeQuorum: 3 }] }));
    const refused = await d.reload();
    expect(refused.error).toContain('policies[0].writeQuorum');
    expect(setup.log.events('config.reload_failed').map((e) => e.reason)).toEqual([expect.stringContaining('YAML'), expect.stringContaining('policies[0].writeQuorum')]);
    expect((await get(d, '/healthz')).status).toBe(200);
    expect((await get(d, '/readyz')).status).toBe(200);
    expect(d.config.policies).toHaveLength(2);
    const m = (await get(d, '/metrics')).text;
    expect(metric(m, 'cloudmux_config_reloads_total{result="invalid"}')).toBe(2);

    const c = switchable(`c${randomBytes(4).toString('hex')}`);
    const providers = [...(setup.raw.providers as object[]), { name: 'c', url: `switch://${c.memory.toString().slice('memory://'.length)}` }];
    writeFileSync(setup.configFile, stringify({ ...setup.raw, providers, policies: [{ prefix: '', replicas: 3, writeQuorum: 2 }] }));
    expect(await d.reload()).toEqual({ ok: true });
    const status = (await get(d, '/status')).json() as { providers: { name: string }[]; policies: unknown[]; daemon: { lastReload: { ok: boolean } } };
    expect(status.providers.map((p) => p.name)).toEqual(['a', 'b', 'c']);
    expect(status.policies).toEqual([expect.objectContaining({ prefix: '', replicas: 3, writeQuorum: 2 })]);
    expect(status.daemon.lastReload.ok).toBe(true);
    expect(setup.log.events('config.reloaded')).toEqual([expect.objectContaining({ added: ['c'], removed: [] })]);
    expect((await get(d, '/readyz')).status).toBe(200);
  });

  it('stop() re-queues copies still in flight after the grace period and closes the state store', async () => {
    const d = await startDaemon();
    await waitFor('ready', async () => (await get(d, '/readyz')).status === 200);
    const app = await appRouter();
    setup.b.holdPuts = true;
    for (let i = 0; i < 3; i++) await app.put(`inflight-${i}`, `body ${i}`);
    await waitFor('copies in flight', () => setup.b.heldPuts >= 3);
    await d.stop({ graceMs: 100 });
    setup.b.holdPuts = false;
    // Nothing half-written, nothing lost: every key is still owed to b, unleased.
    for (let i = 0; i < 3; i++) await expect(setup.b.memory.head(`inflight-${i}`)).rejects.toMatchObject({ code: 'NotFound' });
    const state = new SqliteStateStore({ path: join(setup.dir, 'state.db') });
    try {
      const pending = await state.entries({ state: 'pending' });
      expect(pending.map((e) => [e.key, e.provider, e.kind]).sort()).toEqual([0, 1, 2].map((i) => [`inflight-${i}`, 'b', 'replicate']));
      expect(pending.every((e) => e.leaseOwner === undefined)).toBe(true);
    } finally {
      await state.close();
    }
    expect(setup.log.events('daemon.stopped')).toEqual([expect.objectContaining({ backlog: { count: 3, bytes: 18, dead: 0 } })]);
    await expect(get(d, '/healthz')).rejects.toThrow();
  });

  it('the scheduled scan repairs what differs and reports it in the log, /metrics and /status', async () => {
    writeFileSync(setup.configFile, stringify({ ...setup.raw, daemon: { listen: { port: 0 }, scan: { intervalMs: 50, settleMs: 0 } } }));
    const d = await startDaemon();
    await waitFor('ready', async () => (await get(d, '/readyz')).status === 200);
    const app = await appRouter();
    await app.put('scanned', 'the real bytes');
    await waitFor('replicated', async () => (await setup.b.memory.head('scanned').catch(() => undefined)) !== undefined);
    await setup.b.memory.delete('scanned');
    const repair = await waitFor('repair logged', () => setup.log.events('scan.repair')[0]);
    expect(repair).toMatchObject({ key: 'scanned', provider: 'b', problem: 'missing', action: 'replicate' });
    await waitFor('repaired', async () => (await setup.b.memory.head('scanned').catch(() => undefined)) !== undefined);
    expect((await getBuffer(setup.b.memory, 'scanned')).toString()).toBe('the real bytes');
    expect(metric((await get(d, '/metrics')).text, 'cloudmux_repairs_total{provider="b",problem="missing",action="replicate"}')).toBe(1);
    const scan = ((await get(d, '/status')).json() as { scan: { passes: number; last: { keysChecked: number } } }).scan;
    expect(scan.passes).toBeGreaterThan(0);
    expect(scan.last.keysChecked).toBeGreaterThanOrEqual(1);
  });

  it('resolves ${ENV} and ${file:…} secrets for the drivers and never logs them', async () => {
    const d = await startDaemon();
    await waitFor('ready', async () => (await get(d, '/readyz')).status === 200);
    expect(setup.a.openedWith).toEqual({ secretAccessKey: SECRET });
    expect(setup.b.openedWith).toEqual({ accountKey: `${SECRET}-from-file` });
    // Provoke the logs that carry reasons: an outage, an invalid reload, a stop.
    setup.b.down = true;
    await waitFor('down logged', () => setup.log.events('provider.down').length > 0);
    setup.b.down = false;
    writeFileSync(setup.configFile, stringify({ ...setup.raw, daemon: { listen: { port: 'x' } } }));
    await d.reload();
    await d.stop();
    expect(setup.log.lines.length).toBeGreaterThan(5);
    expect(setup.log.text()).not.toContain(SECRET);
    expect(setup.log.text()).not.toContain('hunter2');
  });
});
