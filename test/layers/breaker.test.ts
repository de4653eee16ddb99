import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import { collect } from '../../src/core/index.js';
import { BreakerStore, type BreakerOptions } from '../../src/layers/index.js';
import { FaultyStore } from '../faults/faulty-store.js';

function setup(options: BreakerOptions = {}) {
  const memory = new MemoryStore();
  const faulty = new FaultyStore(memory);
  const store = new BreakerStore(faulty, { volumeThreshold: 4, errorThresholdPercentage: 50, resetTimeoutMs: 50, ...options });
  const events: string[] = [];
  for (const e of ['open', 'halfOpen', 'close'] as const) store.on(e, (x) => events.push(`${e}:${x.opClass}`));
  return { memory, faulty, store, events };
}

/** True when the promise settles before a macrotask runs: no I/O and no timer was involved. */
async function settlesBeforeIo(p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  p.then(() => { settled = true; }, () => { settled = true; });
  await new Promise((r) => setImmediate(r));
  return settled;
}

describe('BreakerStore', () => {
  it('opens after the configured failures and then rejects at once without calling the provider', async () => {
    const { faulty, store, events } = setup();
    faulty.setPlan({ errorRates: { Transient: 1 } });
    for (let i = 0; i < 4; i++) await expect(store.head('k')).rejects.toMatchObject({ code: 'Transient' });
    expect(events).toEqual(['open:read']);
    expect(store.state().read).toBe('open');
    const calls = faulty.log.length;
    const rejected = store.head('k');
    expect(await settlesBeforeIo(rejected)).toBe(true);
    await expect(rejected).rejects.toMatchObject({ code: 'ProviderUnavailable', provider: 'memory' });
    expect(faulty.log.length).toBe(calls);
    // Measured for the report, not asserted (no timed assertions in unit tests).
    const t0 = performance.now();
    for (let i = 0; i < 1000; i++) await store.head('k').catch(() => {});
    console.log(`open breaker rejects in ${((performance.now() - t0) / 1000 * 1000).toFixed(1)} µs per call`);
  });

  it('half-opens after the reset time, closes on a successful trial, re-opens on a failed one', async () => {
    const { memory, faulty, store, events } = setup();
    await memory.put('k', 'v');
    faulty.setPlan({ errorRates: { Transient: 1 } });
    for (let i = 0; i < 4; i++) await store.head('k').catch(() => {});
    await waitFor(store, 'halfOpen');
    expect(store.state().read).toBe('halfOpen');
    await expect(store.head('k')).rejects.toMatchObject({ code: 'Transient' }); // the trial fails
    expect(store.state().read).toBe('open');
    await waitFor(store, 'halfOpen');
    faulty.heal();
    expect((await store.head('k')).size).toBe(1);
    expect(store.state().read).toBe('closed');
    expect(events).toEqual(['open:read', 'halfOpen:read', 'open:read', 'halfOpen:read', 'close:read']);
  });

  it('a trial the provider never answered (aborted by the caller, refused below) re-opens the breaker: no close, the provider is not reported back', async () => {
    for (const code of ['Aborted', 'ProviderUnavailable'] as const) {
      const { memory, faulty, store, events } = setup();
      await memory.put('k', 'v');
      faulty.setPlan({ errorRates: { Transient: 1 } });
      for (let i = 0; i < 4; i++) await store.head('k').catch(() => {});
      await waitFor(store, 'halfOpen');
      faulty.setPlan({ errorRates: { [code]: 1 } });
      await expect(store.head('k')).rejects.toMatchObject({ code }); // the trial: no answer
      expect(store.state().read, code).toBe('open');
      expect(events, code).not.toContain('close:read');
      // A trial the provider does answer still closes it.
      await waitFor(store, 'halfOpen');
      faulty.heal();
      expect((await store.head('k')).size).toBe(1);
      expect(store.state().read).toBe('closed');
      expect(events, code).toEqual(['open:read', 'halfOpen:read', 'open:read', 'halfOpen:read', 'close:read']);
    }
  });

  it('never opens on NotFound, precondition or caller errors', async () => {
    const { memory, store, events } = setup();
    await memory.put('k', 'v');
    for (let i = 0; i < 50; i++) {
      await expect(store.head(`missing-${i}`)).rejects.toMatchObject({ code: 'NotFound' });
      await expect(store.get('k', { ifMatch: 'nope' })).rejects.toMatchObject({ code: 'PreconditionFailed' });
      await expect(store.put('k', 'x', { ifNoneMatch: '*' })).rejects.toMatchObject({ code: 'AlreadyExists' });
      await expect(store.head('bad//key')).rejects.toMatchObject({ code: 'InvalidKey' });
    }
    const ac = new AbortController();
    ac.abort();
    for (let i = 0; i < 10; i++) await expect(store.head('k', { signal: ac.signal })).rejects.toMatchObject({ code: 'Aborted' });
    expect(events).toEqual([]);
    expect(store.state()).toEqual({ read: 'closed', write: 'closed', delete: 'closed', list: 'closed' });
  });

  it('keeps one breaker per operation class', async () => {
    const { faulty, store } = setup();
    faulty.setPlan({ ops: ['put'], errorRates: { Transient: 1 } });
    for (let i = 0; i < 4; i++) await store.put('k', 'v').catch(() => {});
    expect(store.state()).toMatchObject({ write: 'open', read: 'closed' });
    await expect(store.put('k', 'v')).rejects.toMatchObject({ code: 'ProviderUnavailable' });
    await expect(store.head('nope')).rejects.toMatchObject({ code: 'NotFound' });
  });

  it('counts get bodies that break mid-stream as failures', async () => {
    const { memory, faulty, store } = setup();
    await memory.put('k', randomBytes(100_000));
    faulty.setPlan({ ops: ['get'], resetBody: 1 });
    for (let i = 0; i < 4; i++) {
      const { body } = await store.get('k');
      await expect(collect(body)).rejects.toMatchObject({ code: 'Transient' });
    }
    expect(store.state().read).toBe('open');
  });
});

async function waitFor(store: BreakerStore, event: 'halfOpen'): Promise<void> {
  await new Promise<void>((resolve) => {
    const on = (): void => {
      store.off(event, on);
      resolve();
    };
    store.on(event, on);
  });
}
