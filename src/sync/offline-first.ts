import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FsStore } from '../../providers/fs/store.js';
import { Backoff } from '../core/backoff.js';
import { InvalidKeyError, isAbortError, isCloudmuxError } from '../core/errors.js';
import type {
  BlobStore, Body, Capabilities, CopyOptions, DeleteManyResult, DeleteOptions, GetOptions, GetResult, ListItem, ListOptions, ObjectMeta,
  PresignOptions, PutOptions, SignalOptions, UpdateMetadataOptions,
} from '../core/types.js';
import { deleteEach } from '../core/index.js';
import { redactInspection } from '../core/redact.js';
import { isInternalPath } from './remote-scan.js';
import { SyncEngine, type RoundReport, type SyncEngineOptions } from './sync-engine.js';
import { SyncProfile, resolveProfile, type SyncProfileSpec } from './profiles.js';
import type { QueuedChange } from './sync-state.js';
import { probe, Wake } from './sync-loop.js';

export interface OfflineFirstOptions extends Omit<SyncEngineOptions, 'local' | 'remote' | 'localLock' | 'onEvent' | 'profile'> {
  /**
   * The device profile, as `cloudmux sync --profile`: a name (an entry of `profiles`, else a preset:
   * `mobile`, `desktop`, `server`), a SyncProfile, or a spec (`{ extends: 'mobile', include: [...] }`).
   * Paths outside it stay on this device and are never pushed, pulled nor deleted; files over its
   * size cap stay local; list-only paths are known (`status().listOnly`) and downloaded on
   * {@link OfflineFirstStore.fetch}; a metered profile moves only the critical class unless
   * `metered: false`. Recorded in the sync state, so `cloudmux sync status|fetch DIR` use it too.
   * An unknown name is InvalidArgument before anything is opened.
   */
  profile?: SyncProfile | string | SyncProfileSpec;
  /** Profiles a name may refer to (a config's `sync.profiles`). */
  profiles?: Readonly<Record<string, SyncProfileSpec>>;
  /** Longest wait between background rounds while nothing is written locally (ms, default 30 000): how soon remote changes are pulled. */
  intervalMs?: number;
  /** From a local write to the round that pushes it (ms, default 100): a burst of writes goes out in one round. */
  pushDelayMs?: number;
  /** First and longest back-off while the remote is unreachable (ms, default 1 000 and 60 000, full jitter), probing before each round. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Run rounds in the background (default true); false: only {@link OfflineFirstStore.syncNow} syncs. */
  background?: boolean;
  /** Every round's report (background rounds and syncNow). */
  onRound?: (r: RoundReport) => void;
  random?: () => number;
}

/** What an offline-first store has not yet done (see {@link OfflineFirstStore.status}). */
export interface OfflineFirstStatus {
  /** Local changes (writes, deletes) not yet pushed; durable across restarts and kill -9. */
  pending: number;
  /** The first 100 of those paths, in key order. */
  pendingPaths: string[];
  /** Whether the last round reached the remote (undefined before the first round ends). */
  online?: boolean;
  /** Why the remote could not be reached, when it could not. */
  offlineReason?: string;
  /** A round is running. */
  syncing: boolean;
  /** When the last round ended, and the last one that reached the remote. */
  lastRoundAt?: Date;
  lastOnlineAt?: Date;
  /** Paths the last round could not finish (deferred, raced, failed); they are tried again next round. */
  retrying: number;
  /** A round that failed for another reason than an unreachable remote (local I/O, state), until one succeeds. */
  lastError?: string;
  /** Conflicts resolved on this device so far (see `sync status` / SyncState.conflicts()). */
  conflicts: number;
  /** List-only paths the remote holds and this device has not downloaded (profile `listOnly`; see fetch()), after the last online round. */
  listOnly: { path: string; size: number }[];
}

/**
 * A BlobStore that works offline: writes are acknowledged once they are durable in a local
 * directory, reads are served from it, and a sync engine (sync-engine.ts) pushes and pulls in
 * the background with the conflict policies of `cloudmux sync`.
 *
 * # Contract
 * - put, copy and delete commit to the local directory (an fs store, plain layout: a tree any
 *   program can read) and queue the change in the sync state before they return; the bytes are
 *   pushed by a round soon after (`pushDelayMs`). A kill -9 after a write returned loses nothing:
 *   the next round (this run or the next) finds it on disk and pushes it.
 * - get, head and list read the local directory: they never wait for the network, and they show
 *   remote changes once a round has pulled them.
 * - Conditions (ifMatch / ifNoneMatch, conditional delete) and etags are the local store's: a
 *   compare-and-swap holds against every writer of this directory, not against other devices,
 *   which the sync engine reconciles by policy (keep-both by default).
 * - Bytes sync; content type and user metadata stay on this device (the remote object carries the
 *   sync's own metadata). Keys under the versions area (`.cloudmux_versions/`) are refused.
 * - The sync engine's local writes (pulls, conflict copies) take the fs store's key lock, so they
 *   never replace a write this store acknowledged in between (they are deferred to the next round).
 * - One OfflineFirstStore per directory at a time (the sync state is per device).
 */
export class OfflineFirstStore implements BlobStore {
  readonly provider = 'offline-first';
  readonly capabilities: Capabilities;
  readonly engine: SyncEngine;
  /** The local directory as a store (reads and writes go to it). */
  readonly local: FsStore;
  readonly remote: BlobStore;
  private readonly opts: OfflineFirstOptions;
  private readonly wake = new Wake();
  private readonly stop = new AbortController();
  private chain: Promise<unknown> = Promise.resolve();
  private loopDone: Promise<void> = Promise.resolve();
  private syncing = 0;
  /** Changes queued while a round ran (see requeueWritesDuringRound). */
  private readonly duringRound = new Map<string, QueuedChange>();
  private last?: RoundReport;
  private lastRoundAt?: Date;
  private lastOnlineAt?: Date;
  private lastError?: string;
  private closed = false;

  constructor(dir: string, remote: BlobStore, opts: OfflineFirstOptions = {}) {
    const root = resolve(dir);
    this.opts = opts;
    this.remote = remote;
    const profile = typeof opts.profile === 'string' ? resolveProfile(opts.profile, opts.profiles)
      : opts.profile === undefined || opts.profile instanceof SyncProfile ? opts.profile : new SyncProfile(opts.profile.extends ?? 'custom', opts.profile);
    this.local = new FsStore({ root, layout: 'plain', fsync: opts.fsync !== false });
    this.engine = SyncEngine.open({
      ...opts, profile, local: root, remote,
      localLock: (path, fn) => this.local.withKeyLock(path, fn),
    });
    // As `cloudmux sync` records it: what `sync status` shows and `sync fetch` reopens the directory with.
    this.engine.state.setMeta('profile', profile ? JSON.stringify({ name: profile.name, spec: profile.spec, metered: opts.metered }) : undefined);
    this.capabilities = {
      conditionalPut: true, conditionalDelete: true, versioning: false, nativeChecksums: [], presign: false, streaming: true,
    };
    if (opts.background !== false) this.loopDone = this.loop();
  }

  // ---------------------------------------------------------------------------------------------
  // Writes: local first, queued, then pushed

  async put(key: string, body: Body, opts: PutOptions = {}): Promise<ObjectMeta> {
    this.refuseInternal(key);
    const meta = await this.local.put(key, body, opts);
    this.queued(key, meta.checksums.sha256 ?? null, meta.size);
    return meta;
  }

  async copy(src: string, dst: string, opts: CopyOptions = {}): Promise<ObjectMeta> {
    this.refuseInternal(dst);
    const meta = await this.local.copy(src, dst, opts);
    this.queued(dst, meta.checksums.sha256 ?? null, meta.size);
    return meta;
  }

  async delete(key: string, opts: DeleteOptions = {}): Promise<void> {
    this.refuseInternal(key);
    await this.local.delete(key, opts);
    // Queued even if it was absent: a no-op the next round drops (the queue is an index, the tree is the truth).
    this.queued(key, null, null);
  }

  async deleteMany(keys: Iterable<string>, opts: SignalOptions = {}): Promise<DeleteManyResult> {
    return deleteEach(keys, 8, (key) => this.delete(key, opts), this.provider);
  }

  /** Local only: metadata does not sync. */
  async updateMetadata(key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
    return this.local.updateMetadata(key, opts);
  }

  async presign(key: string, opts: PresignOptions): Promise<string> {
    return this.local.presign(key, opts);
  }

  // ---------------------------------------------------------------------------------------------
  // Reads: local

  get(key: string, opts?: GetOptions): Promise<GetResult> {
    return this.local.get(key, opts);
  }

  head(key: string, opts?: SignalOptions): Promise<ObjectMeta> {
    return this.local.head(key, opts);
  }

  list(opts?: ListOptions): AsyncIterable<ListItem> {
    return this.local.list(opts);
  }

  // ---------------------------------------------------------------------------------------------
  // Sync

  /** What is not yet pushed, and how the last round went. */
  status(): OfflineFirstStatus {
    const s = this.engine.state;
    const last = this.last;
    const out: OfflineFirstStatus = {
      pending: s.queueCount(), pendingPaths: s.queuedPaths(100), syncing: this.syncing > 0,
      retrying: last ? last.counts.deferred + last.counts.raced + last.counts.failed : 0, conflicts: s.conflictCount(),
      listOnly: JSON.parse(s.getMeta('listed') ?? '[]') as { path: string; size: number }[],
    };
    if (last) out.online = last.online;
    if (last?.offlineReason !== undefined) out.offlineReason = last.offlineReason;
    if (this.lastRoundAt) out.lastRoundAt = this.lastRoundAt;
    if (this.lastOnlineAt) out.lastOnlineAt = this.lastOnlineAt;
    if (this.lastError !== undefined) out.lastError = this.lastError;
    return out;
  }

  /**
   * Downloads list-only paths (profile `listOnly`) in a round now, as `cloudmux sync fetch`: the
   * request is recorded first, so a round cut short (offline) asks again. Once fetched, a path
   * syncs both ways like any other until its local copy is deleted (then it is list-only again,
   * and the deletion is never pushed).
   */
  fetch(paths: readonly string[], opts: { signal?: AbortSignal } = {}): Promise<RoundReport> {
    for (const p of paths) this.refuseInternal(p);
    this.engine.requestFetch(paths);
    return this.syncNow(opts);
  }

  /**
   * Runs a round now (after the one in flight, if any) and returns its report: `online: false`
   * when the remote could not be reached (the changes stay queued). Throws what a round throws
   * for other reasons (local I/O, the state).
   */
  syncNow(opts: { signal?: AbortSignal } = {}): Promise<RoundReport> {
    const signal = opts.signal ? AbortSignal.any([opts.signal, this.stop.signal]) : this.stop.signal;
    const run = async (): Promise<RoundReport> => {
      this.syncing++;
      this.duringRound.clear();
      try {
        const r = await this.engine.round({ signal });
        this.last = r;
        this.lastRoundAt = new Date();
        if (r.online) this.lastOnlineAt = this.lastRoundAt;
        this.lastError = undefined;
        this.opts.onRound?.(r);
        return r;
      } catch (e) {
        if (!(isAbortError(e) && signal.aborted)) this.lastError = isCloudmuxError(e) ? `${e.code}: ${e.message}` : (e as Error).message;
        throw e;
      } finally {
        this.syncing--;
        this.requeueWritesDuringRound();
      }
    };
    const next = this.chain.then(run, run);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /**
   * Stops the background rounds (a round in flight is aborted: what it finished is recorded, the
   * rest stays queued) and closes the state, the local store and the remote. Pending changes are
   * pushed by the next OfflineFirstStore over this directory; call syncNow() first to push now.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stop.abort();
    await this.loopDone;
    await this.chain;
    this.engine.close();
    await this.local.close();
    await this.remote.close();
  }

  toString(): string {
    return `OfflineFirst(${pathToFileURL(this.engine.local.root).href}, ${this.remote.toString()})`;
  }

  private refuseInternal(key: string): void {
    if (isInternalPath(key)) throw new InvalidKeyError(`${key}: reserved for the sync (versions area, state, temp files)`, { provider: this.provider, key });
  }

  private queued(path: string, sha256: string | null, size: number | null): void {
    // Outside the profile: the change stays on this device, nothing is owed.
    if (this.engine.profile && !this.engine.profile.includes(path)) return;
    const clock = this.engine.clock;
    const change: QueuedChange = { path, sha256, size, hlc: clock.now(), detectedAt: Date.now() };
    this.engine.state.enqueue(change, clock.last());
    if (this.syncing > 0) this.duringRound.set(path, change);
    this.engine.noteLocalChange(path, size);
    this.wake.fire();
  }

  /**
   * A write acknowledged while a round ran may have had its queue row cleared by that round (the
   * round recorded the path's base from what it had read before the write, which clears the row).
   * The bytes are safe on disk and the next round finds them, but status() must not say "nothing
   * pending" meanwhile: such rows are put back. One that the round did push is dropped by the next
   * round's scan (the file equals the base).
   */
  private requeueWritesDuringRound(): void {
    const state = this.engine.state;
    for (const [path, change] of this.duringRound) if (!state.isQueued(path)) state.enqueue(change, this.engine.clock.last());
    this.duringRound.clear();
  }

  /**
   * Background rounds: one at start (pull what changed while closed, push what is queued), then
   * one `pushDelayMs` after local writes or every `intervalMs`; while the remote is unreachable,
   * back off and probe before the next round. Never throws: failures are in status().
   */
  private async loop(): Promise<void> {
    const signal = this.stop.signal;
    const min = this.opts.minBackoffMs ?? 1000;
    const backoff = new Backoff({ baseMs: min, capMs: this.opts.maxBackoffMs ?? 60_000, random: this.opts.random });
    const interval = this.opts.intervalMs ?? 30_000;
    const pushDelay = this.opts.pushDelayMs ?? 100;
    let failures = 0;
    while (!signal.aborted) {
      try {
        let report: RoundReport | undefined;
        try {
          report = await this.syncNow();
        } catch (e) {
          if (signal.aborted) return;
          void e; // recorded in status().lastError
        }
        if (!report?.online) {
          failures++;
          await backoff.wait(failures, undefined, signal);
          if (report) while (!(await probe(this.remote, signal))) await backoff.wait(++failures, undefined, signal);
          continue;
        }
        failures = 0;
        if (report.yielded !== undefined) {
          // It stopped for a write of a higher class (round-yield.ts): the next round, now.
          await this.wake.wait(0, signal);
          continue;
        }
        const again = report.counts.deferred + report.counts.raced + report.counts.failed > 0;
        await this.wake.wait(again ? min : interval, signal);
        await sleepUnlessAborted(pushDelay, signal);
      } catch (e) {
        if (signal.aborted) return;
        // A probe that failed for another reason than the remote being unreachable (access denied…).
        this.lastError = isCloudmuxError(e) ? `${e.code}: ${e.message}` : (e as Error).message;
        failures++;
        await backoff.wait(failures, undefined, signal).catch(() => undefined);
      }
    }
  }
}
redactInspection(OfflineFirstStore);

function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted || ms <= 0) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * An offline-first store over the local directory `dir` and `remote` (see {@link OfflineFirstStore}):
 *
 *     const store = offlineFirst('/var/lib/app/blobs', router, { device: 'laptop', conflict: ['*.md=merge:text'] });
 *     await store.put('notes/a.md', text);   // durable locally; pushed in the background
 *     store.status();                        // { pending: 1, online: false, ... } while offline
 */
export function offlineFirst(dir: string, remote: BlobStore, opts: OfflineFirstOptions = {}): OfflineFirstStore {
  return new OfflineFirstStore(dir, remote, opts);
}
