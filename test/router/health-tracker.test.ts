import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/store.js';
import { AuthFailedError, abortedError, type Body, type ObjectMeta, type PutOptions } from '../../src/core/index.js';
import { ForwardingStore } from '../../src/layers/forwarding-store.js';
import { HealthTracker, type HealthChange, type ProbeOutcome } from '../../src/router/health-tracker.js';
import { ProbeScheduler, type ProbeEvent } from '../../src/router/probe-scheduler.js';
import { waitFor } from '../daemon/helpers.js';

function busy(ms: number): void {
  const start = performance.now();
  while (performance.now() - start < ms) { /* busy */ }
}

/** A memory store whose puts answer after `answerMs` (a timer, like a network answer), hang until aborted, or fail. */
class ScriptedStore extends ForwardingStore {
  protected readonly layerName = 'Scripted';
  mode: 'answer' | 'hang' | 'fail' = 'answer';
  answerMs = 0;
  /** Blocks the event loop right after a put is issued. */
  stallAfterPutMs = 0;

  constructor(name: string) {
    super(new MemoryStore({ name }));
  }

  override async put(key: string, body: Body, opts?: PutOptions): Promise<ObjectMeta> {
    if (this.stallAfterPutMs > 0) setImmediate(() => busy(this.stallAfterPutMs));
    if (this.mode === 'fail') throw new AuthFailedError('AuthorizationFailure: this request is not authorized', { provider: 'scripted' });
    if (this.mode === 'hang') {
      await new Promise((_, reject) => opts?.signal?.addEventListener('abort', () => reject(abortedError(opts.signal)), { once: true }));
    }
    if (this.answerMs > 0) await new Promise((r) => setTimeout(r, this.answerMs));
    return super.put(key, body, opts);
  }
}

describe('HealthTracker probes', () => {
  it('a probe answered while our event loop was stalled past the deadline succeeds; the stall is not its latency', async () => {
    const store = new ScriptedStore('a');
    store.answerMs = 150;
    store.stallAfterPutMs = 600;
    const h = new HealthTracker(['a']);
    const o = await h.probe('a', store, { timeoutMs: 200 });
    expect(o).toMatchObject({ result: 'ok' });
    expect(o.stalledMs).toBeGreaterThanOrEqual(400);
    expect(h.health('a')!.lastProbe).toMatchObject({ ok: true, latencyMs: o.latencyMs, stalledMs: o.stalledMs });
    expect(h.state('a')).toBe('healthy');
  });

  it('a provider that does not answer fails the probe; the second failure in a row takes it down, naming the cause', async () => {
    const store = new ScriptedStore('a');
    store.mode = 'hang';
    const h = new HealthTracker(['a'], { recoverAfter: 1 });
    const changes: HealthChange[] = [];
    h.on('change', (c) => changes.push(c));
    const first = await h.probe('a', store, { timeoutMs: 50 });
    expect(first).toMatchObject({ result: 'failed', error: expect.stringMatching(/^put: no answer within 50 ms/) });
    expect(h.state('a')).toBe('degraded');
    await h.probe('a', store, { timeoutMs: 50 });
    expect(changes.map((c) => c.to)).toEqual(['degraded', 'down']);
    expect(changes[1]!.reason).toMatch(/^2 canary probes failed in a row; last: put: no answer within 50 ms/);
    store.mode = 'answer';
    expect(await h.probe('a', store, { timeoutMs: 50 })).toMatchObject({ result: 'ok' });
    expect(h.state('a')).toBe('healthy');
  });

  it('the down reason carries the error code and message of the last failure', async () => {
    const store = new ScriptedStore('a');
    store.mode = 'fail';
    const h = new HealthTracker(['a']);
    await h.probe('a', store);
    await h.probe('a', store);
    expect(h.health('a')!.reason).toBe('2 canary probes failed in a row; last: put: AuthFailed: AuthorizationFailure: this request is not authorized');
  });

  it('a probe the starved process could not judge is inconclusive and counts for nothing', async () => {
    const store = new ScriptedStore('a');
    store.mode = 'hang';
    const h = new HealthTracker(['a']);
    const blocker = setInterval(() => busy(150), 1);
    let o: ProbeOutcome;
    try {
      // 200 ms of running time needed; the process runs a few ms between 150 ms blocks and gives up at 10 × 200 ms of wall time.
      o = await h.probe('a', store, { timeoutMs: 200 });
    } finally {
      clearInterval(blocker);
    }
    expect(o).toMatchObject({ result: 'inconclusive', error: expect.stringMatching(/^put: no answer in \d+ ms, but this process ran only \d+ ms of it/) });
    expect(h.state('a')).toBe('healthy');
    expect(h.health('a')).toMatchObject({ inconclusiveProbes: 1 });
    expect(h.health('a')!.lastProbe).toBeUndefined();
  });

  it('concurrent probes of one provider share one round trip', async () => {
    const store = new ScriptedStore('a');
    store.answerMs = 20;
    const h = new HealthTracker(['a']);
    const [x, y] = await Promise.all([h.probe('a', store), h.probe('a', store)]);
    expect(x).toBe(y);
  });
});

describe('ProbeScheduler', () => {
  it('confirms a failure with a prompt follow-up: down long before the next interval', async () => {
    const hung = new ScriptedStore('hung');
    hung.mode = 'hang';
    const h = new HealthTracker(['hung']);
    const seen: ProbeEvent[] = [];
    const s = new ProbeScheduler(h, { hung }, { intervalMs: 60_000, timeoutMs: 100, confirmAfterMs: 10 });
    s.on('probe', (p) => seen.push(p));
    s.start();
    try {
      await waitFor('hung down', () => h.state('hung') === 'down');
      expect(seen[0]).toMatchObject({ result: 'failed', followUp: false });
      // Every later probe is a follow-up (an inconclusive one, on a starved box, is followed up again).
      expect(seen.slice(1).every((p) => p.followUp)).toBe(true);
      expect(seen.filter((p) => p.result === 'failed')).toHaveLength(2);
    } finally {
      s.stop();
    }
  });

  it('a hanging provider does not delay the probes of the others', async () => {
    const ok = new ScriptedStore('ok');
    const hung = new ScriptedStore('hung');
    hung.mode = 'hang';
    const h = new HealthTracker(['ok', 'hung']);
    const seen: ProbeEvent[] = [];
    const s = new ProbeScheduler(h, { ok, hung }, { intervalMs: 20, timeoutMs: 5_000 });
    s.on('probe', (p) => seen.push(p));
    s.start();
    try {
      await waitFor('4 probes of ok', () => seen.filter((p) => p.provider === 'ok').length >= 4);
      expect(seen.filter((p) => p.provider === 'hung')).toEqual([]);
      expect(s.firstRoundDone).toBe(false);
      expect(h.state('ok')).toBe('healthy');
    } finally {
      s.stop();
    }
  });

  it('stop() ends the rounds and the pending follow-ups', async () => {
    const store = new ScriptedStore('a');
    store.mode = 'fail';
    const h = new HealthTracker(['a']);
    let probes = 0;
    const s = new ProbeScheduler(h, { a: store }, { intervalMs: 10_000, timeoutMs: 100, confirmAfterMs: 30 });
    s.on('probe', () => probes++);
    s.start();
    await waitFor('first probe', () => probes === 1);
    s.stop();
    await new Promise((r) => setTimeout(r, 100));
    expect(probes).toBe(1);
    expect(h.state('a')).toBe('degraded');
  });
});
