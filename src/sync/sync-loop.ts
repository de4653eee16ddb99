import { abortedError, isAbortError } from '../core/errors.js';
import { TEMP_MARK } from './local-tree.js';
import { isInternalPath } from './remote-scan.js';
import { LocalWatcher } from './watcher.js';
import type { BlobStore } from '../core/types.js';
import { Backoff, sleep } from '../core/backoff.js';
import { isUnreachable } from './executor.js';
import type { RoundReport, SyncEngine } from './sync-engine.js';

export interface SyncLoopOptions {
  signal: AbortSignal;
  /** Longest wait between rounds when nothing wakes the loop (default 30 s). */
  intervalMs?: number;
  /** First and longest back-off while the remote is unreachable (default 1 s and 60 s, full jitter). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  onRound?: (r: RoundReport) => void;
  /**
   * Watch the local directory (src/sync/watcher.ts) and start a round as soon as a changed file
   * has settled, instead of waiting out `intervalMs`. Default false.
   */
  watch?: boolean;
  /** With `watch`: how long a file must keep its size and mtime to count as written (default 1000 ms). */
  settleMs?: number;
  random?: () => number;
}

/** One cheap call that says whether the remote answers (the first item of a one-item page). */
export async function probe(remote: BlobStore, signal?: AbortSignal): Promise<boolean> {
  try {
    for await (const _ of remote.list({ pageSize: 1, signal })) break;
    return true;
  } catch (e) {
    if (isUnreachable(e)) return false;
    throw e;
  }
}

/**
 * `--watch`: rounds until the signal fires. While the remote is unreachable local changes keep
 * being queued by the rounds' local scans, and the loop backs off (full jitter, doubling up to
 * `maxBackoffMs`) and probes before the next full round. Resolves when aborted.
 */
export async function syncLoop(engine: SyncEngine, opts: SyncLoopOptions): Promise<void> {
  const min = opts.minBackoffMs ?? 1000;
  const backoff = new Backoff({ baseMs: min, capMs: opts.maxBackoffMs ?? 60_000, random: opts.random });
  const interval = opts.intervalMs ?? 30_000;
  const wake = new Wake();
  const watcher = opts.watch
    ? await LocalWatcher.start({
      root: engine.local.root, settleMs: opts.settleMs, ignore: (rel) => isInternalPath(rel) || rel.split('/').some((s) => s.includes(TEMP_MARK)),
      // The paths also go to the engine, so that a round moving bulk yields to a critical change (round-yield.ts).
      onBatch: async (batch) => {
        wake.fire();
        if (!batch.rescan) await engine.noteLocalChanges(batch.paths);
      },
    })
    : undefined;
  const wait = (ms: number, signal: AbortSignal): Promise<void> => wake.wait(ms, signal);
  try {
    while (!opts.signal.aborted) {
      const r = await engine.round({ signal: opts.signal });
      opts.onRound?.(r);
      if (r.yielded !== undefined && r.online) {
        // It stopped for a change of a higher class: the next round plans it first, now (the
        // wake that change fired is spent: the next round's scan sees it).
        await wait(0, opts.signal);
        continue;
      }
      if (!r.online) {
        // Offline: wait, probe, wait longer; the next round runs once the remote answers.
        let n = 1;
        do await backoff.wait(n++, undefined, opts.signal);
        while (!(await probe(engine.remote, opts.signal)));
        continue;
      }
      // Deferred and raced paths are reconciled again soon; otherwise wait for a change.
      const again = r.counts.deferred + r.counts.raced > 0;
      await wait(again ? min : interval, opts.signal);
    }
  } catch (e) {
    if (isAbortError(e) && opts.signal.aborted) return;
    throw e;
  } finally {
    await watcher?.close();
  }
}

/** A wait that an event (a watcher batch, a local write) ends early; an event during a round makes the next wait return at once. */
export class Wake {
  private pending = false;
  private resolve: (() => void) | undefined;

  fire(): void {
    this.pending = true;
    this.resolve?.();
  }

  async wait(ms: number, signal: AbortSignal): Promise<void> {
    // Aborted already (while a round ended): its abort event has fired, so nothing would end the wait.
    if (signal.aborted) throw abortedError(signal);
    if (this.pending) {
      this.pending = false;
      return;
    }
    const ctl = new AbortController();
    const stop = (): void => ctl.abort(signal.reason);
    signal.addEventListener('abort', stop, { once: true });
    const woken = new Promise<void>((r) => (this.resolve = r));
    try {
      await Promise.race([sleep(ms, ctl.signal).catch(() => undefined), woken]);
    } finally {
      this.resolve = undefined;
      this.pending = false;
      signal.removeEventListener('abort', stop);
      ctl.abort();
    }
    if (signal.aborted) throw abortedError(signal);
  }
}
