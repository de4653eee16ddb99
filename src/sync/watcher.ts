import { stat } from 'node:fs/promises';
import { basename, isAbsolute, relative, resolve, sep } from 'node:path';
import type { FSWatcher } from 'chokidar';
import { InvalidArgumentError, InvalidConfigError } from '../core/errors.js';

/** Paths that may have changed, after they settled. */
export interface WatchBatch {
  /** Relative to the root, `/`-separated, sorted, each once: files added, changed or removed (and directories removed). */
  paths: string[];
  /**
   * The watcher may have missed events (an error from the OS watcher: too many watches, a
   * directory it could not read): the caller should walk the whole tree instead of trusting `paths`.
   */
  rescan: boolean;
}

export interface LocalWatcherOptions {
  /** The directory to watch (recursively). */
  root: string;
  /**
   * Paths never reported, given relative and `/`-separated (directories too: an ignored directory
   * is not descended into). For the sync engine's own state and temp files.
   */
  ignore?: (relativePath: string) => boolean;
  /** A file is reported once its size and mtime have not changed for this long (ms); default 1000. */
  settleMs?: number;
  /** Settled paths are gathered for this long (ms) from the first into one batch; default 200. */
  batchMs?: number;
  /**
   * Receives each batch. Batches are delivered one at a time: paths that settle while it runs go
   * into the next batch. A throw or rejection is passed to `onError`, the batch is not retried.
   */
  onBatch: (batch: WatchBatch) => void | Promise<void>;
  /** Errors from the OS watcher or from `onBatch`; default: ignored (a `rescan` batch follows OS errors). */
  onError?: (error: Error) => void;
}

interface Snapshot { size: number; mtimeMs: number; dir: boolean }

/**
 * Local change detection for `sync --watch`: file-system events (chokidar) turned into debounced
 * batches of relative paths, each reported only once the file is stable.
 *
 * # Contract
 * - Starts watching before {@link LocalWatcher.start} resolves; changes from then on are reported.
 *   Files present at start are not reported (the caller walks the tree once at start).
 * - A file being written is reported once its size and mtime stayed the same for `settleMs`
 *   (checked with stat, not only size as chokidar's awaitWriteFinish does, so a same-size
 *   rewrite is still waited for). A removal is reported at once.
 * - A path is a hint, not a fact: the caller stats or reads it and decides. Reporting a path
 *   that did not change is allowed; missing one is not, except across `rescan: true`.
 * - chokidar's own events are deduplicated lossily (a second `change` within 50 ms is dropped
 *   with no trailing event; a rename over an existing file can give no event at all), so the
 *   OS watcher's raw events are used too, as hints that go through the same settling: a path
 *   is reported after its last change even where chokidar stays silent.
 * - `close()` stops the OS watcher and timers and resolves after a running `onBatch`
 *   finishes; no batch is delivered after it resolves. Paths not yet delivered are dropped.
 */
export class LocalWatcher {
  private watcher: FSWatcher | undefined;
  private readonly root: string;
  private readonly settleMs: number;
  private readonly batchMs: number;
  private readonly settling = new Map<string, NodeJS.Timeout>();
  private readonly ready = new Set<string>();
  private rescan = false;
  private flushTimer: NodeJS.Timeout | undefined;
  private delivering: Promise<void> | undefined;
  private closed = false;

  private constructor(private readonly opts: LocalWatcherOptions) {
    this.root = resolve(opts.root);
    this.settleMs = checkMs(opts.settleMs, 1000, 'settleMs');
    this.batchMs = checkMs(opts.batchMs, 200, 'batchMs');
  }

  /** Starts watching `root`; resolves once the initial scan is done. InvalidConfig when root is not a readable directory. */
  static async start(opts: LocalWatcherOptions): Promise<LocalWatcher> {
    const w = new LocalWatcher(opts);
    const st = await stat(w.root).catch(() => undefined);
    if (!st?.isDirectory()) throw new InvalidConfigError(`cannot watch ${w.root}: not a directory`);
    // Loaded here so that sync without --watch does not load chokidar.
    const { watch } = await import('chokidar');
    const watcher = watch(w.root, {
      ignoreInitial: true,
      followSymlinks: false,
      persistent: true,
      ignored: (path: string) => w.isIgnored(path),
    });
    w.watcher = watcher;
    watcher.on('add', (p) => w.changed(p));
    watcher.on('change', (p) => w.changed(p));
    watcher.on('unlink', (p) => w.removed(p));
    watcher.on('unlinkDir', (p) => w.removed(p));
    watcher.on('raw', (_event, evPath, details) => w.rawHint(evPath, details));
    watcher.on('error', (e) => {
      w.rescan = true;
      w.report(e instanceof Error ? e : new Error(String(e)));
      w.scheduleFlush();
    });
    await new Promise<void>((res, rej) => {
      watcher.once('ready', res);
      watcher.once('error', rej);
    });
    return w;
  }

  /** Stops watching (see the contract). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return this.delivering;
    this.closed = true;
    for (const t of this.settling.values()) clearTimeout(t);
    this.settling.clear();
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.ready.clear();
    await this.watcher?.close();
    await this.delivering;
  }

  toString(): string {
    return `LocalWatcher(${this.root})`;
  }

  /** The root-relative, `/`-separated form of an absolute path from chokidar ('' for the root). */
  private rel(abs: string): string {
    const r = relative(this.root, abs);
    return sep === '/' ? r : r.split(sep).join('/');
  }

  private isIgnored(abs: string): boolean {
    const r = this.rel(isAbsolute(abs) ? abs : resolve(this.root, abs));
    if (r === '' || r.startsWith('..')) return false;
    return this.opts.ignore?.(r) === true;
  }

  private changed(abs: string, mustExist = false): void {
    if (this.closed) return;
    const r = this.rel(abs);
    // Restart the wait: the file moved again.
    clearTimeout(this.settling.get(r));
    void this.settle(r, abs, undefined, mustExist);
  }

  /**
   * A raw fs.watch event: `evPath` is an entry of the watched directory, or (when it equals the
   * watched path's base name) possibly the watched file itself. Both readings are settled; the
   * uncertain one is reported only if it exists as a file, so no made-up path is ever reported.
   */
  private rawHint(evPath: unknown, details: unknown): void {
    const watched = (details as { watchedPath?: unknown } | undefined)?.watchedPath;
    if (this.closed || typeof evPath !== 'string' || evPath === '' || typeof watched !== 'string') return;
    const inside = resolve(this.root, watched, evPath);
    const self = resolve(this.root, watched);
    const candidates: [string, boolean][] = basename(self) === evPath ? [[self, false], [inside, true]] : [[inside, false]];
    for (const [abs, mustExist] of candidates) {
      const r = this.rel(abs);
      if (r === '' || r.startsWith('..') || isAbsolute(r) || this.ignoredWithAncestors(r)) continue;
      this.changed(abs, mustExist);
    }
  }

  /** Raw events come from directories chokidar watches, but check every ancestor to be sure. */
  private ignoredWithAncestors(r: string): boolean {
    const parts = r.split('/');
    for (let i = 1; i <= parts.length; i++) if (this.opts.ignore?.(parts.slice(0, i).join('/')) === true) return true;
    return false;
  }

  private removed(abs: string): void {
    if (this.closed) return;
    const r = this.rel(abs);
    clearTimeout(this.settling.get(r));
    this.settling.delete(r);
    this.markReady(r);
  }

  /** Snapshots the file, and reports it once a later snapshot `settleMs` on is the same. */
  private async settle(r: string, abs: string, before?: Snapshot, mustExist = false): Promise<void> {
    const now = await snapshot(abs);
    if (this.closed) return;
    // Directories are not reported (their files are); an uncertain raw hint only if it is a file.
    if (now?.dir || (now === undefined && mustExist)) return;
    if (now === undefined || (before && now.size === before.size && now.mtimeMs === before.mtimeMs)) {
      // Stable, or gone (the caller finds it missing, and an unlink event follows anyway).
      this.settling.delete(r);
      this.markReady(r);
      return;
    }
    clearTimeout(this.settling.get(r));
    this.settling.set(r, setTimeout(() => void this.settle(r, abs, now, mustExist), this.settleMs));
  }

  private markReady(r: string): void {
    this.ready.add(r);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.closed || this.flushTimer) return;
    // From the first ready path, not the last: a stream of changes cannot postpone delivery forever.
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      void this.flush();
    }, this.batchMs);
  }

  private async flush(): Promise<void> {
    if (this.closed) return;
    if (this.delivering) return; // the running delivery flushes again when it ends
    if (this.ready.size === 0 && !this.rescan) return;
    const batch: WatchBatch = { paths: [...this.ready].sort(), rescan: this.rescan };
    this.ready.clear();
    this.rescan = false;
    this.delivering = (async () => {
      try {
        await this.opts.onBatch(batch);
      } catch (e) {
        this.report(e instanceof Error ? e : new Error(String(e)));
      }
    })();
    await this.delivering;
    this.delivering = undefined;
    if (this.ready.size > 0 || this.rescan) this.scheduleFlush();
  }

  private report(e: Error): void {
    try {
      this.opts.onError?.(e);
    } catch {
      /* an observer must not break the watcher */
    }
  }
}

async function snapshot(abs: string): Promise<Snapshot | undefined> {
  try {
    const st = await stat(abs);
    return { size: st.size, mtimeMs: st.mtimeMs, dir: st.isDirectory() };
  } catch {
    return undefined;
  }
}

function checkMs(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (!Number.isFinite(v) || v < 0) throw new InvalidArgumentError(`${name} must be a non-negative number of ms, got ${String(v)}`);
  return v;
}
