import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { InvalidArgumentError, describeError, isCloudmuxError } from '../core/errors.js';
import type { BlobStore } from '../core/types.js';
import { ConflictPolicies } from './conflict-policies.js';
import { decide, pairRenames, type DecideContext } from './decide.js';
import { execute, isUnreachable, removeTombstone, type ActionOutcome, type ExecutorContext } from './executor.js';
import { BaseContent } from './base-content.js';
import { getMerger, type Merger } from './merge/index.js';
import { checkDevice, LocalTree, sameStamp, type LocalLock, type LocalScan, type SkippedPath } from './local-tree.js';
import { hasChangeFeed } from '../core/change-feed.js';
import { isInternalPath, scanRemote, scanRemoteByFeed, type RemoteScan, type Tombstone } from './remote-scan.js';
import { createSyncClock, type SyncClock } from './sync-clock.js';
import { SyncState, type QueuedChange } from './sync-state.js';
import type { BaseEntry, LocalEntry, PathFacts, SyncAction, SyncActionKind } from './types.js';
import { VersionsArea } from './versions-area.js';
import type { SyncProfile } from './profiles.js';
import { PRIORITY_RANK, PriorityClassifier, type PriorityClass } from '../core/priority.js';
import { ChangeNotes, type RoundYield } from './round-yield.js';
import { MOVING_KINDS, bytesOf, classOf, emptyClassBacklog, holdOnMeteredLink, queuedBacklog, roundBacklog, type ClassBacklog } from './round-backlog.js';

export interface SyncEngineOptions {
  /** The local directory. */
  local: string;
  remote: BlobStore;
  /** A credential-free name of the remote; the state refuses another pair. Default: `remote.toString()`. */
  pair?: string;
  /** State file; default LOCAL/.cloudmux-sync/state.db. */
  statePath?: string;
  /** This device's id (letters, digits, _). Default: the one recorded in the state, else from the host name. */
  device?: string;
  /** Conflict rules (`GLOB=POLICY` or a default `POLICY`), or parsed policies. A profile's rules come after these. */
  conflict?: readonly string[] | ConflictPolicies;
  /**
   * The device profile (profiles.ts): paths outside it are neither pushed, pulled nor deleted on
   * either side; files over its size cap are skipped and reported. Default: every path, any size.
   */
  profile?: SyncProfile;
  /** A metered link: only the critical class moves (PriorityClassifier of the profile). Default: the profile's. */
  metered?: boolean;
  clock?: SyncClock;
  /** Merger lookup for `merge:<name>` policies (default: the merge registry, getMerger); throws for unknown names. */
  mergers?: (name: string) => Merger;
  retentionMs?: number;
  /** Keep remote versions removed by a propagated delete in the versions area (default true). */
  keepDeleted?: boolean;
  /** Use the remote's change feed when it declares one (default true); false always lists. */
  changeFeed?: boolean;
  /** Actions in flight at once (default 4). */
  concurrency?: number;
  /** fsync local writes (default true). */
  fsync?: boolean;
  /** Serializes the engine's local writes with another writer of the directory (offlineFirst: the fs store's key lock). */
  localLock?: LocalLock;
  onEvent?: (e: SyncEvent) => void;
}

export type SyncEvent =
  | { type: 'scanned'; side: 'local' | 'remote'; files: number; examined: number }
  | { type: 'planned'; actions: number }
  | { type: 'action'; outcome: ActionOutcome }
  | { type: 'offline'; reason: string };

/** What one round did. */
export interface RoundReport {
  /** False when the remote could not be reached (the round stopped; local changes are queued). */
  online: boolean;
  offlineReason?: string;
  dryRun: boolean;
  /** The plan (every path that needed something), in key order. */
  planned: SyncAction[];
  /** List-only remote files not on this device (profile `listOnly`; `fetch` downloads them). */
  listed: { path: string; size: number }[];
  outcomes: ActionOutcome[];
  skipped: SkippedPath[];
  /** Local changes not yet propagated after this round. */
  pending: number;
  counts: Record<ActionOutcome['result'], number>;
  localFiles: number;
  remoteObjects: number;
  /** Local files read to hash, remote objects examined (head/read) this round. */
  hashed: number;
  examined: number;
  /**
   * Content still to move after this round, per priority class: decided actions not done (held
   * on a metered link, failed, raced, a dry run's); offline, the queued local changes.
   */
  backlog: ClassBacklog;
  /**
   * The round stopped starting actions for a local change of this (higher) class noted while it
   * ran (round-yield.ts); what it did not start is in `backlog`, and a loop starts the next round at once.
   */
  yielded?: PriorityClass;
}

const DEFAULT_CLASSIFIER = new PriorityClassifier();

const PROBLEM_KINDS: ReadonlySet<SyncActionKind> = new Set(['keep-both', 'local-wins', 'remote-wins', 'merge']);

/** Default device id: the host name, reduced to the allowed characters. */
export function defaultDevice(): string {
  return hostname().replace(/[^A-Za-z0-9_]/g, '_').slice(0, 40) || 'device';
}

/**
 * Two-way sync between a local directory and a store: each round scans both sides, decides each
 * path three-way against the base (decide.ts), and applies the actions (executor.ts).
 *
 * # Guarantees
 * - Nothing a device wrote is destroyed by sync alone: conflicts keep both or keep the loser in
 *   the versions area; deletes meeting changes lose; propagated deletes keep the remote version.
 * - Every remote write is conditional on what the round saw; a lost race is retried next round.
 * - Offline: local changes are queued durably with the time they were seen; a round against an
 *   unreachable remote stops early and reports `online: false`.
 * - The base is written only after an action is complete, so kill -9 at any point is recovered
 *   by the next round (which finds both sides equal and records them, or redoes the action).
 */
export class SyncEngine {
  readonly device: string;
  readonly local: LocalTree;
  readonly remote: BlobStore;
  readonly state: SyncState;
  readonly versions: VersionsArea;
  readonly policies: ConflictPolicies;
  readonly clock: SyncClock;
  readonly profile: SyncProfile | undefined;
  private readonly opts: SyncEngineOptions;
  private readonly baseContent: BaseContent;
  /** List-only paths whose fetch was asked for (this round). */
  private fetching = new Set<string>();
  private readonly notes = new ChangeNotes();

  private constructor(opts: SyncEngineOptions, state: SyncState, device: string) {
    this.opts = opts;
    this.state = state;
    this.device = device;
    this.remote = opts.remote;
    this.profile = opts.profile;
    const accept = opts.profile ? (p: string) => opts.profile!.includes(p) : undefined;
    this.local = new LocalTree(resolve(opts.local), { fsync: opts.fsync, lock: opts.localLock, accept });
    this.versions = new VersionsArea(opts.remote, { retentionMs: opts.retentionMs });
    this.policies = opts.conflict instanceof ConflictPolicies ? opts.conflict : new ConflictPolicies(opts.conflict ?? []);
    this.clock = opts.clock ?? createSyncClock(device, { last: state.getMeta('hlc') });
    this.baseContent = new BaseContent(`${opts.statePath ?? state.path}-bases`);
  }

  /**
   * Opens the pair's state. Bad input (device id, conflict rules, unknown mergers, a state of
   * another pair or a newer schema) is a typed error before anything is written.
   */
  static open(opts: SyncEngineOptions): SyncEngine {
    if (opts.device !== undefined) checkDevice(opts.device);
    const policies = opts.conflict instanceof ConflictPolicies ? opts.conflict : new ConflictPolicies(opts.profile ? opts.profile.conflictRules(opts.conflict) : (opts.conflict ?? []));
    const lookup = opts.mergers ?? getMerger;
    for (const m of policies.mergers()) {
      try {
        lookup(m);
      } catch (e) {
        throw new InvalidArgumentError(`conflict policy merge:${m}: ${(e as Error).message}`);
      }
    }
    if (opts.remote.capabilities.conditionalPut !== true) {
      throw new InvalidArgumentError(`${opts.remote.toString()} has no conditional writes; sync needs them so that no device overwrites another's change`);
    }
    const statePath = opts.statePath ?? LocalTree.defaultStatePath(resolve(opts.local));
    const state = SyncState.open(statePath, opts.pair ?? opts.remote.toString());
    opts = { ...opts, statePath };
    try {
      const recorded = state.getMeta('device');
      const device = opts.device ?? recorded ?? defaultDevice();
      checkDevice(device);
      if (recorded !== device) state.setMeta('device', device);
      return new SyncEngine({ ...opts, conflict: policies }, state, device);
    } catch (e) {
      state.close();
      throw e;
    }
  }

  /** One reconciliation round. With `dryRun`, plans and reports without writing anything but the queue. */
  async round(o: { dryRun?: boolean; signal?: AbortSignal } = {}): Promise<RoundReport> {
    const dryRun = o.dryRun === true;
    const bases = this.scopedBases(dryRun);
    const yielding = this.notes.mark(this.opts.concurrency ?? 4);
    const localScan = await this.local.scan((p) => bases.get(p));
    this.emit({ type: 'scanned', side: 'local', files: localScan.files.size, examined: localScan.hashed });
    this.profile?.setAsideTooLarge(localScan.files, (f) => f.stamp.size, localScan.skipped, 'local');
    const localEntries = this.recordQueue(localScan, bases, dryRun);
    const report: RoundReport = {
      online: true, dryRun, planned: [], listed: [], outcomes: [], skipped: [...localScan.skipped], pending: 0,
      counts: { done: 0, deferred: 0, raced: 0, failed: 0 }, localFiles: localScan.files.size, remoteObjects: 0, hashed: localScan.hashed, examined: 0,
      backlog: emptyClassBacklog(),
    };
    let remoteScan: RemoteScan;
    let cursor: string | undefined;
    try {
      ({ scan: remoteScan, cursor } = await this.scanRemote(bases, o.signal));
    } catch (e) {
      if (!isUnreachable(e)) throw e;
      return this.offline(report, e);
    }
    this.emit({ type: 'scanned', side: 'remote', files: remoteScan.entries.size, examined: remoteScan.examined });
    report.remoteObjects = remoteScan.entries.size;
    report.examined = remoteScan.examined;
    report.skipped.push(...remoteScan.skipped);
    this.profile?.setAsideTooLarge(remoteScan.entries, (r) => r.size, report.skipped, 'remote');
    for (const r of remoteScan.entries.values()) this.clock.observe(r.hlc);

    const facts = this.gatherFacts(bases, localEntries, remoteScan, report.skipped);
    report.listed = this.setListOnlyAside(facts, dryRun);
    const ctx: DecideContext = {
      device: this.device, compareStamps: (a, b) => this.clock.compare(a, b), trusts: (s) => this.clock.trusts(s), policyFor: (p) => this.policies.policyFor(p),
    };
    const decided = pairRenames([...facts.values()].map((f) => decide(f, ctx)), facts);
    const metered = this.opts.metered ?? this.profile?.metered ?? false;
    const actions = metered ? holdOnMeteredLink(decided, facts, report.skipped, this.classifier, this.fetching) : decided;
    report.planned = actions.filter((a) => a.kind !== 'none');
    this.emit({ type: 'planned', actions: report.planned.length });
    if (dryRun) {
      report.pending = this.state.queueCount();
      report.backlog = roundBacklog(decided, [], facts, this.classifier);
      return report;
    }
    const stopped = await this.executeAll(actions, facts, remoteScan.tombstones, report, yielding, o.signal);
    if (yielding.yieldedTo !== undefined) report.yielded = yielding.yieldedTo;
    report.backlog = roundBacklog(decided, report.outcomes, facts, this.classifier);
    if (stopped === undefined) await this.removeOwnTombstones(remoteScan.tombstones, actions, o.signal);
    this.state.setMeta('hlc', this.clock.last());
    if (cursor !== undefined) this.saveCursor(cursor, report);
    await this.keepMergeBases();
    report.pending = this.state.queueCount();
    if (stopped !== undefined) return this.offline(report, stopped);
    return report;
  }

  /**
   * The remote now: by the change feed when the store has one (cursor in the state; a reset or a
   * first run without a cursor lists once), else by a listing diff.
   */
  private async scanRemote(bases: ReadonlyMap<string, BaseEntry>, signal: AbortSignal | undefined): Promise<{ scan: RemoteScan; cursor?: string }> {
    const remote = this.remote;
    const profile = this.profile;
    const accept = profile ? (k: string) => profile.includes(k) : undefined;
    if (this.opts.changeFeed === false || !hasChangeFeed(remote)) return { scan: await scanRemote(remote, bases, { signal, accept }) };
    // A feed tells what changed, not what came into scope: a cursor saved under another profile
    // scope is not followed; the feed is read from its start (each key's newest state) instead.
    const saved = (this.state.getMeta('scope') ?? '') === (profile?.scope() ?? '') ? this.state.getMeta('cursor') : undefined;
    const recheck = JSON.parse(this.state.getMeta('recheck') ?? '[]') as string[];
    let feed;
    try {
      feed = await scanRemoteByFeed(remote, bases, saved, recheck, { signal, accept });
    } catch (e) {
      if (!isCloudmuxError(e, 'InvalidArgument') || saved === undefined) throw e;
      // A cursor this store does not understand (another catalog, a damaged state): list once
      // and follow the feed from its start next round (a compacted log: each key's newest state).
      this.state.setMeta('cursor', undefined);
      return { scan: await scanRemote(remote, bases, { signal, accept }) };
    }
    if (!feed.reset) return { scan: feed, cursor: feed.cursor };
    // The cursor cannot be continued: list once; changes racing the listing come again from the new cursor.
    return { scan: await scanRemote(remote, bases, { signal, accept }), cursor: feed.cursor };
  }

  /**
   * After a round over the change feed: the new cursor, and the paths to examine again next round
   * (every planned path not done, and every path left out on either side: a remote change to a
   * local file still being written must not be forgotten), committed together. Until this
   * commit the old cursor stands, so a kill -9 mid-round gets the same changes again.
   */
  private saveCursor(cursor: string, report: RoundReport): void {
    const done = new Set(report.outcomes.filter((x) => x.result === 'done').flatMap((x) => ('from' in x.action ? [x.action.path, x.action.from] : [x.action.path])));
    const recheck = new Set([...report.planned.flatMap((a) => ('from' in a ? [a.path, a.from] : [a.path])).filter((p) => !done.has(p)), ...report.skipped.map((s) => s.path)]);
    this.state.setMetaMany({ cursor, recheck: JSON.stringify([...recheck]), scope: this.profile?.scope() ?? '' });
  }

  /**
   * The bases of the paths in the profile. A base outside it (the profile changed to exclude the
   * path) is dropped without touching either side: the path stops syncing and stays where it
   * is on both sides. Were the base kept, deleting the local copy now (to free space, say) would
   * become a remote delete the day the path is included again; without it, an inclusion later
   * meets the path like a first sync does (same bytes: recorded; one side: copied; different:
   * the conflict policy), and nothing is deleted.
   */
  private scopedBases(dryRun: boolean): Map<string, BaseEntry> {
    const all = this.state.bases();
    const profile = this.profile;
    if (!profile) return all;
    const out = new Map<string, BaseEntry>();
    for (const [path, b] of all) {
      if (profile.includes(path)) out.set(path, b);
      else if (!dryRun) this.state.dropBase(path);
    }
    return out;
  }

  /**
   * Local entries with their stamps, and the durable queue brought up to date: a path whose
   * content differs from the base is queued with the stamp of when it was first seen.
   */
  private recordQueue(scan: LocalScan, bases: ReadonlyMap<string, { sha256: string; hlc: string }>, dryRun: boolean): Map<string, LocalEntry> {
    const queue = this.state.queue();
    const skipped = new Set(scan.skipped.map((s) => s.path));
    const updates: [string, QueuedChange | undefined][] = [];
    const entries = new Map<string, LocalEntry>();
    const now = Date.now();
    const paths = new Set([...bases.keys(), ...scan.files.keys()]);
    for (const path of paths) {
      if (skipped.has(path)) continue;
      const file = scan.files.get(path);
      const base = bases.get(path);
      const q = queue.get(path);
      if (file && base && file.sha256 === base.sha256) {
        if (q) updates.push([path, undefined]);
        entries.set(path, { size: file.stamp.size, sha256: file.sha256, stamp: file.stamp, hlc: base.hlc });
        continue;
      }
      const sha = file?.sha256 ?? null;
      const hlc = q && q.sha256 === sha ? q.hlc : this.clock.now();
      if (!q || q.sha256 !== sha) updates.push([path, { path, sha256: sha, size: file?.stamp.size ?? null, hlc, detectedAt: now }]);
      if (file) entries.set(path, { size: file.stamp.size, sha256: file.sha256, stamp: file.stamp, hlc });
    }
    for (const path of queue.keys()) if (!paths.has(path) && !skipped.has(path)) updates.push([path, undefined]);
    if (!dryRun && updates.length > 0) this.state.updateQueue(updates);
    return entries;
  }

  private gatherFacts(bases: ReadonlyMap<string, PathFacts['base']>, local: ReadonlyMap<string, LocalEntry>, remote: RemoteScan, skipped: readonly SkippedPath[]): Map<string, PathFacts> {
    const out = new Map<string, PathFacts>();
    const skip = new Set(skipped.map((s) => s.path));
    for (const path of new Set([...bases.keys(), ...local.keys(), ...remote.entries.keys()])) {
      if (skip.has(path) || isInternalPath(path) || (this.profile && !this.profile.includes(path))) continue;
      out.set(path, { path, base: bases.get(path), local: local.get(path), remote: remote.entries.get(path) });
    }
    return out;
  }

  /**
   * List-only paths with no local copy and no pending `fetch`: taken out of the round and
   * returned as listed. A base there (the copy was fetched, then deleted here) is dropped, so
   * the deletion evicts the local copy and is never propagated. The list is kept in the state
   * for `sync status`; fetch requests for paths now fetched or gone are cleared.
   */
  private setListOnlyAside(facts: Map<string, PathFacts>, dryRun: boolean): { path: string; size: number }[] {
    const profile = this.profile;
    this.fetching = new Set();
    if (!profile || profile.listOnly.length === 0) return [];
    const wanted = new Set(JSON.parse(this.state.getMeta('fetch') ?? '[]') as string[]);
    this.fetching = wanted;
    const listed: { path: string; size: number }[] = [];
    for (const [path, f] of facts) {
      // A fetch asked for and not yet done; a base means it was fetched and the copy deleted since: evicted.
      if (f.local || !profile.isListOnly(path) || (wanted.has(path) && f.remote && !f.base)) continue;
      facts.delete(path);
      if (f.base && !dryRun) this.state.dropBase(path);
      if (f.remote) listed.push({ path, size: f.remote.size });
    }
    if (!dryRun) {
      const still = [...wanted].filter((p) => facts.has(p) && facts.get(p)!.local === undefined);
      this.state.setMetaMany({ listed: JSON.stringify(listed), fetch: JSON.stringify(still) });
    }
    return listed;
  }

  /**
   * Asks for list-only paths to be downloaded by the next round (`cloudmux sync fetch PATH`):
   * recorded in the state, so a round cut short asks again.
   */
  requestFetch(paths: readonly string[]): void {
    const wanted = new Set(JSON.parse(this.state.getMeta('fetch') ?? '[]') as string[]);
    for (const p of paths) wanted.add(p);
    this.state.setMeta('fetch', JSON.stringify([...wanted]));
  }

  /**
   * A local path changed (an offlineFirst write; `size` null for a delete): a running round may
   * yield to it if its class is higher than what it is moving (round-yield.ts). Outside the profile: ignored.
   */
  noteLocalChange(path: string, size: number | null): void {
    if (isInternalPath(path) || (this.profile && !this.profile.includes(path))) return;
    this.notes.note(this.classifier.classify({ key: path, size: size ?? this.state.base(path)?.size ?? 0 }));
  }

  /** Paths a watcher reported: a file that still matches its base (this engine's own download, say) is no change. */
  async noteLocalChanges(paths: readonly string[]): Promise<void> {
    for (const p of paths) {
      if (isInternalPath(p) || (this.profile && !this.profile.includes(p))) continue;
      const stamp = await this.local.stamp(p).catch(() => undefined);
      const base = this.state.base(p);
      if (stamp ? sameStamp(stamp, base?.stamp) : base === undefined) continue;
      this.noteLocalChange(p, stamp?.size ?? null);
    }
  }

  private get classifier(): PriorityClassifier {
    return this.profile?.priority ?? DEFAULT_CLASSIFIER;
  }

  /** Runs the actions with bounded concurrency; returns the unreachable error that stopped them, if any. */
  private async executeAll(actions: SyncAction[], facts: ReadonlyMap<string, PathFacts>, tombstones: ReadonlyMap<string, Tombstone>, report: RoundReport, yielding: RoundYield, signal?: AbortSignal): Promise<unknown> {
    const ctx: ExecutorContext = {
      local: this.local, remote: this.remote, state: this.state, versions: this.versions, device: this.device, clock: this.clock, facts, tombstones,
      merger: (n) => this.merger(n), baseContent: this.baseContent, keepDeleted: this.opts.keepDeleted !== false, signal,
    };
    // Conflicts first, in their own pass: a keep-both copy name is then never planned by this round too.
    // Then by priority class (critical first), and within a class small before large, so many small
    // files land while a large one streams (progressive). A change of a higher class noted
    // meanwhile makes the round stop starting lower ones (yielding.admit; round-yield.ts).
    const rank = (a: SyncAction): { cls: PriorityClass; bytes: number } => ({ cls: classOf(a, facts.get(a.path), this.classifier), bytes: bytesOf(a, facts.get(a.path)) });
    const rest = actions.filter((a) => !PROBLEM_KINDS.has(a.kind)).map((a) => ({ a, ...rank(a) }));
    rest.sort((x, y) => PRIORITY_RANK[x.cls] - PRIORITY_RANK[y.cls] || x.bytes - y.bytes);
    const ordered = [...actions.filter((a) => PROBLEM_KINDS.has(a.kind)).map((a) => ({ a, cls: undefined })), ...rest];
    let next = 0;
    let stopped: unknown;
    const worker = async (): Promise<void> => {
      while (next < ordered.length && stopped === undefined && !signal?.aborted) {
        const { a, cls } = ordered[next]!;
        if (!yielding.admit(cls, MOVING_KINDS.has(a.kind))) return;
        next++;
        try {
          const outcome = await execute(a, ctx);
          if (outcome.kept) this.recordKept(a, outcome.kept);
          if (a.kind !== 'none' || outcome.result !== 'done') {
            report.outcomes.push(outcome);
            report.counts[outcome.result]++;
            this.emit({ type: 'action', outcome });
          }
        } catch (e) {
          stopped ??= e;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, this.opts.concurrency ?? 4) }, worker));
    return stopped;
  }

  /**
   * Tombstones this device left (killed between its tombstone put and its delete) that no action
   * of this round replaced: deleted now, so they do not stand in the way of creates.
   */
  private async removeOwnTombstones(tombstones: ReadonlyMap<string, Tombstone>, actions: readonly SyncAction[], signal?: AbortSignal): Promise<void> {
    const touched = new Set(actions.filter((a) => a.kind !== 'none').map((a) => a.path));
    try {
      for (const [path, t] of tombstones) {
        if (t.device === this.device && !touched.has(path)) await removeTombstone(this.remote, path, t.etag, signal);
      }
    } catch (e) {
      if (!isUnreachable(e)) throw e; // the next round tries again
    }
  }

  private merger(name: string): Merger | undefined {
    try {
      return (this.opts.mergers ?? getMerger)(name);
    } catch {
      return undefined;
    }
  }

  /**
   * Keeps the base bytes of merge-policy paths (within their merger's limit) for the next
   * three-way merge, from the local file, which holds them right after a sync; drops the rest.
   */
  private async keepMergeBases(): Promise<void> {
    if (this.policies.mergers().length === 0) return;
    const wanted = new Set<string>();
    for (const [path, b] of this.state.bases()) {
      const p = this.policies.policyFor(path);
      if (p.kind !== 'merge' || b.size > (this.merger(p.merger)?.maxBytes ?? 0)) continue;
      if (await this.baseContent.keep(b.sha256, this.local.abs(path))) wanted.add(b.sha256);
    }
    await this.baseContent.prune(wanted);
  }

  /** Remembers a version this device put in the versions area (listed by `sync status`). */
  private recordKept(a: SyncAction, key: string): void {
    const id = key.slice(key.lastIndexOf('/') + 1);
    this.state.addVersion({ key, path: a.path, hlc: id, device: this.device, reason: a.kind, createdAt: Date.now() });
  }

  private offline(report: RoundReport, e: unknown): RoundReport {
    const reason = describeError(e, { where: false });
    this.emit({ type: 'offline', reason });
    // Stopped before planning: what is known to be owed is the local queue.
    const backlog = report.planned.length === 0 && report.outcomes.length === 0 ? queuedBacklog(this.state.queue(), this.classifier) : report.backlog;
    return { ...report, online: false, offlineReason: reason, pending: this.state.queueCount(), backlog };
  }

  private emit(e: SyncEvent): void {
    this.opts.onEvent?.(e);
  }

  close(): void {
    this.state.close();
  }
}
