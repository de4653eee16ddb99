import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import { SyncEngine, type RoundReport } from '../../src/sync/sync-engine.js';
import { syncLoop } from '../../src/sync/sync-loop.js';
import { FaultyStore } from '../faults/faulty-store.js';
import { cleanupDirs, localTree, remoteTree, tempDir, writeFile } from './helpers.js';

afterEach(cleanupDirs);

describe('syncLoop (--watch)', () => {
  it('offline: queues, backs off and probes, resumes when the remote answers; a settled local change starts a round at once', async () => {
    const inner = new MemoryStore();
    const remote = new FaultyStore(inner);
    const dir = tempDir('sync-loop');
    const engine = SyncEngine.open({ local: dir, remote, device: 'w', pair: 'p', fsync: false });
    const ctl = new AbortController();
    const rounds: RoundReport[] = [];
    const waiters: { when: (r: RoundReport) => boolean; resolve: () => void }[] = [];
    const until = (when: (r: RoundReport) => boolean): Promise<void> => new Promise((resolve) => waiters.push({ when, resolve }));
    writeFile(dir, 'first.txt', 'written offline');
    remote.outage(true, 'ProviderUnavailable');
    const offlineSeen = until((r) => !r.online);
    const firstUploaded = until((r) => r.online && r.outcomes.some((o) => o.action.path === 'first.txt' && o.result === 'done'));
    // An hour between rounds: only the back-off/probe and the watcher can start the next ones.
    const loop = syncLoop(engine, {
      signal: ctl.signal, intervalMs: 3_600_000, minBackoffMs: 5, maxBackoffMs: 50, watch: true, settleMs: 50,
      onRound: (r) => {
        rounds.push(r);
        for (const w of waiters.splice(0)) {
          if (w.when(r)) w.resolve();
          else waiters.push(w);
        }
      },
    });
    await offlineSeen;
    expect(engine.state.queueCount()).toBe(1);
    remote.outage(false);
    await firstUploaded;
    const secondUploaded = until((r) => r.outcomes.some((o) => o.action.path === 'second.txt' && o.result === 'done'));
    writeFile(dir, 'second.txt', 'written while watching');
    await secondUploaded;
    ctl.abort();
    await loop;
    engine.close();
    expect(await remoteTree(inner)).toEqual(localTree(dir));
    expect(remote.log.some((r) => r.op === 'list' && r.fault === 'outage')).toBe(true);
  }, 60_000);

  it('an abort that lands as a round ends (Ctrl-C, offlineFirst close) stops the loop at once, not after the interval', async () => {
    const dir = tempDir('loop-abort');
    writeFile(dir, 'a.txt', 'a');
    const engine = SyncEngine.open({ local: dir, remote: new MemoryStore(), device: 'a', pair: 'memory://loop', fsync: false });
    const ctl = new AbortController();
    const rounds: RoundReport[] = [];
    // On the old code the wait after the round saw no abort event (it had fired) and slept the whole interval.
    await syncLoop(engine, { signal: ctl.signal, intervalMs: 3_600_000, onRound: (r) => { rounds.push(r); ctl.abort(); } });
    engine.close();
    expect(rounds).toHaveLength(1);
    expect(rounds[0]!.counts.done).toBe(1);
  });
});
