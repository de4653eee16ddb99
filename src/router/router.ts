// Over 500 lines: the router's BlobStore face (leased writes, conditional delete, reads with adoption); its jobs are moving out to put-writer/replica-reader/provider-set under other work this session, so issue 15 left it whole to avoid conflicts.
import { PriorityClassifier, type PriorityOptions } from '../core/priority.js';
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import {
  AbortedError, AlreadyExistsError, IntegrityError, NotFoundError, NotModifiedError, NotSupportedError, PreconditionFailedError, ProviderUnavailableError, TransientError,
  SHA256_KEY, afterPrefix, bodyBytes, checkCopy, checkDelete, checkGet, checkPut, checksumMismatches, describeError, digestBuffer, isCallerFault, isCloudmuxError, mayTryOtherReplica,
  isReplayableBody, rollup, deleteEach, throwIfAborted, validateKey, validateMetadata, validatePrefix,
} from '../core/index.js';
import type {
  BlobStore, Body, Capabilities, CopyOptions, DeleteManyResult, DeleteOptions, GetOptions, GetResult, ListItem, ListOptions, ObjectMeta, ObjectSummary,
  PresignOptions, PutOptions, SignalOptions, UpdateMetadataOptions,
} from '../core/index.js';
import { carriedMetadata } from '../core/system-metadata.js';
import { changeLimit, type Change, type ChangeFeed, type ChangePage, type ChangesSinceOptions } from '../core/change-feed.js';
import type { Prices } from '../config/schema.js';
import type { CatalogLookup, CatalogObject, OutboxEntry, Replica, StateStore } from '../state/types.js';
import { CostModel } from './cost-model.js';
import { discard } from './fan-out.js';
import { HealthTracker, type BreakerEventSource, type HealthTrackerOptions } from './health-tracker.js';
import { KeyLocks } from './key-locks.js';
import { PolicySet, type PlacementPolicy, type PolicyInput } from './policy.js';
import { ProviderSet, type Placement } from './provider-set.js';
import { PutWriter, recordedEtags, type WriteOutcome } from './put-writer.js';
import { reconcileHolder, storedSha256, type ReconcileOutcome } from './reconcile.js';
import { ReplicaReader, type ReadContext } from './replica-reader.js';
import { READ_AGAIN_LIMIT, settleInDoubt } from './read-again.js';
import { WriteLeases, type HeldLease } from './write-leases.js';
import { CopyOnRead, type CopyOnReadOptions } from './copy-on-read.js';
import { redactInspection } from '../core/redact.js';

/** One provider the router places objects on. */
export interface RouterProvider {
  /** Unique name (the catalog records it). */
  name: string;
  /** The store, typically wrapped in the resilience layers. */
  store: BlobStore;
  prices?: Prices;
  /** Where its bytes live, `cloud:region`; used when the router's `location` is a `cloud:region` too. */
  location?: string;
  /** Tie-breaker between equally priced providers; higher wins. Default 1. */
  weight?: number;
  /** Breaker events to follow; found automatically when a layer in `store` emits `open`/`close`. */
  breaker?: BreakerEventSource;
}

export interface RouterOptions {
  providers: RouterProvider[];
  state: StateStore;
  /** Placement policies by key prefix; default: one replica anywhere. */
  policies?: PolicyInput[];
  /** A tracker to share (e.g. with the daemon), or options for the router's own. */
  health?: HealthTracker | HealthTrackerOptions;
  /**
   * Where this router runs: a provider name (that provider's egress is free; others cost their
   * `egressToGb` to it or the internet rate), or a location `cloud:region` (`aws:us-east-1`): then
   * reads go to the replica cheapest to move there by every provider's location — free in the same
   * location, `egressInterRegionGb` between regions of one cloud, else the internet rate.
   */
  location?: string;
  /** Close the providers and the state store on close() (default true). */
  closeResources?: boolean;
  /** How long the router keeps a delete entry to itself while it tries it (ms, default 60 000). */
  leaseMs?: number;
  /**
   * How long a writer's lease on a key lasts without renewal (ms, default 15 000; renewed every
   * third of it): a router that dies mid-write blocks other writers of that key for at most this long.
   */
  writeLeaseMs?: number;
  /** How long a put waits for another writer's lease on its key before failing with Transient (ms, default writeLeaseMs + 5 000). */
  writeLeaseWaitMs?: number;
  /**
   * Copy on read (see {@link CopyOnRead}): a read at `location` of a key with no base copy there
   * leaves a copy on the provider there, with a TTL. Needs `location` and a state store with
   * `cachedCopies` (SQLite, PostgreSQL). Off by default.
   */
  copyOnRead?: CopyOnReadOptions | boolean;
  /**
   * Priority classes of the replicas a put owes (by glob, size, metadata): the replication worker
   * claims critical entries first and bulk at a guaranteed share. Default: everything `normal`.
   */
  priority?: PriorityClassifier | PriorityOptions;
}

/**
 * A get result: `provider` served it; `stale` when it came from a stale replica (only with
 * `allowStaleReads`); `cached` when it came from a copy left by copy on read (of the current version).
 */
export type RouterGetResult = GetResult & { stale?: boolean; cached?: boolean; provider: string };

export interface RouterEvents {
  /** Work was added to the outbox (a worker in this process may want to wake up). */
  owed: [OutboxEntry[]];
  /** A holder did not have the bytes the catalog says (missing or wrong digest). */
  repair: [{ key: string; provider: string; reason: string }];
  /** Which provider served a read (for tests, metrics and demos). */
  read: [{ key: string; provider: string; hedged: boolean }];
}

function openCopyOnRead(opts: RouterOptions, providers: ProviderSet, cost: CostModel, events: EventEmitter<RouterEvents>, metaOf: (o: CatalogObject, m?: ObjectMeta) => ObjectMeta): CopyOnRead | undefined {
  if (!opts.copyOnRead) return undefined;
  if (opts.location === undefined) throw new NotSupportedError('copy on read needs the router\'s location');
  const state = opts.state.cachedCopies;
  if (!state) throw new NotSupportedError(`copy on read needs a state store that keeps cached copies (${opts.state.kind} does not)`);
  return new CopyOnRead(state, providers, cost, opts.location, events, metaOf, opts.copyOnRead === true ? {} : opts.copyOnRead);
}

/** Etag the router shows: the catalog version, identical whichever replica serves the read. */
export function routerEtag(version: number): string {
  return `cmx-${version}`;
}

/**
 * A BlobStore over several named providers, placing each object by policy, cost and health, with
 * its catalog and outbox in a StateStore.
 *
 * # Contract
 * - put writes to W providers (the cheapest healthy ones, pinned ones first) before it returns and
 *   records, in the same transaction as the new version, a replicate entry for each of the other
 *   N−W; a stream body goes to W+1 providers at once when N > W so that one failing provider does
 *   not fail a put whose body cannot be replayed.
 * - get reads only providers holding the current version: never a stale one. If none is available
 *   it fails with ProviderUnavailable (a policy with `allowStaleReads` serves an older copy, marked
 *   `stale`). Each replica's stored SHA-256 is checked against the catalog before its bytes flow.
 * - Keys the catalog does not know are looked for on the policy's providers, in order, and adopted.
 * - delete tombstones the key first, then deletes from providers; what fails is owed in the outbox,
 *   so a deleted object never comes back. `delete(key, { ifMatch })` compares with the catalog's
 *   version under the key's write lease, like a conditional put (`capabilities.conditionalDelete`).
 * - list reads the catalog (the authoritative view), in UTF-8 byte order.
 * - Writers of one key are serialized across every router and worker sharing the StateStore by a
 *   write lease in it (see {@link WriteLeases}); the lease's fencing number is the new version.
 *   Provider writes are fenced by the etag the catalog recorded (If-Match / If-None-Match) where
 *   the provider can write conditionally; elsewhere the lease's duration is the only fence.
 * - Conditional puts (`ifMatch: etag`, `ifNoneMatch: '*'`) compare with the catalog's version
 *   under that lease, so the answer holds until the commit.
 * - A put that fails after some providers took its bytes is committed on those (the previous
 *   version's copies there were overwritten) and still reported as failed: afterwards the key
 *   reads as the previous version or as the new bytes, never as neither. A write that failed in
 *   a way that may have landed (a lost response) is looked at before that decision.
 * - A holder found with other bytes is repaired from another holder; the last holder is never
 *   forgotten while it holds bytes with a digest: those become the current version.
 */
export class Router implements BlobStore, ChangeFeed {
  readonly provider = 'router';
  readonly capabilities: Capabilities;
  readonly health: HealthTracker;
  readonly cost: CostModel;
  readonly policies: PolicySet;
  readonly state: StateStore;
  /** Assigns the priority class of what a put owes (RouterOptions.priority). */
  readonly priority: PriorityClassifier;
  readonly locks = new KeyLocks();
  /** Write leases on keys, shared with the replication worker (see {@link ReplicationWorker.forRouter}). */
  readonly leases: WriteLeases;
  readonly events = new EventEmitter<RouterEvents>();
  /** Identifies this router's leases in the outbox. */
  readonly id = `router-${process.pid}-${randomBytes(4).toString('hex')}`;
  private readonly stores: Map<string, BlobStore>;
  private readonly weights: Map<string, number>;
  private readonly order: string[];
  private readonly closeResources: boolean;
  private readonly leaseMs: number;
  /** The providers and the placement rules over them. */
  readonly providers: ProviderSet;
  private readonly writer: PutWriter;
  private readonly reader: ReplicaReader;
  /** Copy on read at this router's location, when enabled. */
  readonly copyOnRead: CopyOnRead | undefined;
  /** Where the router runs (RouterOptions.location). */
  readonly location: string | undefined;

  constructor(opts: RouterOptions) {
    if (opts.providers.length === 0) throw new NotSupportedError('a router needs at least one provider');
    this.order = opts.providers.map((p) => p.name);
    if (new Set(this.order).size !== this.order.length) throw new NotSupportedError(`duplicate provider names: ${this.order.join(', ')}`);
    this.stores = new Map(opts.providers.map((p) => [p.name, p.store]));
    this.weights = new Map(opts.providers.map((p) => [p.name, p.weight ?? 1]));
    this.state = opts.state;
    this.priority = opts.priority instanceof PriorityClassifier ? opts.priority : new PriorityClassifier(opts.priority);
    this.policies = new PolicySet(opts.policies ?? [], this.order);
    // Provider locations change egress prices, so they are used only when the router says where it runs (default behaviour unchanged).
    const locations = opts.location?.includes(':')
      ? Object.fromEntries(opts.providers.filter((p) => p.location !== undefined).map((p) => [p.name, p.location!]))
      : undefined;
    this.cost = new CostModel(Object.fromEntries(opts.providers.filter((p) => p.prices).map((p) => [p.name, p.prices!])), { location: opts.location, locations });
    this.health = opts.health instanceof HealthTracker ? opts.health : new HealthTracker(this.order, opts.health);
    for (const p of opts.providers) {
      const breaker = p.breaker ?? findBreaker(p.store);
      if (breaker) this.health.observeBreaker(p.name, breaker);
    }
    this.closeResources = opts.closeResources ?? true;
    this.leaseMs = opts.leaseMs ?? 60_000;
    this.leases = new WriteLeases(this.state, this.id, { locks: this.locks, leaseMs: opts.writeLeaseMs ?? 15_000, acquireTimeoutMs: opts.writeLeaseWaitMs });
    this.providers = new ProviderSet(this.stores, this.weights, this.order, this.health, this.cost);
    this.writer = new PutWriter(this.providers);
    this.reader = new ReplicaReader(this.providers, this.events, (o, m) => this.metaOf(o, m), (key, p, reason, ctx, version) => this.inDoubt(key, p, reason, ctx, version));
    this.location = opts.location;
    this.copyOnRead = openCopyOnRead(opts, this.providers, this.cost, this.events, (o, m) => this.metaOf(o, m));
    const stores = [...this.stores.values()];
    this.capabilities = {
      conditionalPut: true,
      versioning: false,
      nativeChecksums: [],
      presign: false,
      streaming: stores.every((s) => s.capabilities.streaming),
      // delete ifMatch is checked against the catalog version under the key's write lease (as a
      // conditional put is), and the providers' deletes run under that lease too.
      conditionalDelete: true,
      changeFeed: true,
    };
  }

  /** The provider stores by name (for the replication worker and probes). */
  providerStores(): Record<string, BlobStore> {
    return Object.fromEntries(this.stores);
  }

  providerNames(): readonly string[] {
    return this.order;
  }

  /** Starts canary probes on every provider (interval from the health options). */
  startProbes(): void {
    this.health.startProbes(this.providerStores());
  }

  // ---------------------------------------------------------------------------------------------
  // Writes

  async put(key: string, body: Body, opts: PutOptions = {}): Promise<ObjectMeta> {
    checkPut(this.provider, this.capabilities, key, opts);
    const policy = this.policies.for(key);
    return this.leases.with(key, opts.signal, (held) => this.putLeased(key, body, opts, policy, held));
  }

  /** The put, while this router holds the key's write lease (its version is the new version). */
  private async putLeased(key: string, body: Body, opts: PutOptions, policy: PlacementPolicy, held: HeldLease): Promise<ObjectMeta> {
    const found = await this.state.lookup(key);
    if (opts.ifMatch !== undefined || opts.ifNoneMatch !== undefined) await this.checkPutCondition(key, found, opts, held);
    const size = isReplayableBody(body) ? bodyBytes(body).byteLength : opts.size;
    const plan = this.placement(policy, size ?? 1024 * 1024);
    const version = held.lease.version;
    const fence = recordedEtags(found);
    // The caller's condition was checked against the catalog; providers get the fence instead.
    const { ifMatch: _m, ifNoneMatch: _n, ...rest } = opts;
    const putOpts: PutOptions = { ...rest, signal: held.signal };
    let write: WriteOutcome;
    if (isReplayableBody(body)) {
      const bytes = bodyBytes(body);
      const sums = digestBuffer(bytes);
      if (opts.expect && checksumMismatches(opts.expect, sums).length > 0) {
        throw new IntegrityError('body does not match the expected checksums; nothing was written', { provider: this.provider, key });
      }
      write = await this.writer.writeReplayable(key, bytes, putOpts, { sha256: sums.sha256!, bytes: bytes.byteLength }, plan, policy.writeQuorum, fence);
    } else {
      write = await this.writer.writeStream(key, body, putOpts, plan, policy.writeQuorum, fence);
    }
    const { acked, digest } = write;
    const aborted = opts.signal?.aborted === true;
    const short = acked.length < policy.writeQuorum || aborted || held.signal.aborted;
    // A write that failed may still have landed (a lost response, an abort racing the provider):
    // look before deciding, so that bytes which replaced the previous version are never forgotten.
    if (short && digest.sha256) await this.writer.resolveInDoubt(key, digest, write.inDoubt, acked);
    if (acked.length === 0) {
      await this.reconcileAfterFailedPut(key, found, [...write.inDoubt, ...write.wrong], held);
      throw this.putFailure(key, 0, policy.writeQuorum, write.failure, opts.signal);
    }
    const first = acked[0]!.meta;
    const metadata = { ...(opts.metadata ?? {}), [SHA256_KEY]: digest.sha256 };
    const contentType = opts.contentType ?? first.contentType;
    const lastModified = new Date();
    const ackedNames = new Set(acked.map((a) => a.provider));
    const owed = plan.targets.filter((p) => !ackedNames.has(p));
    const result = await this.state.commitPut({
      key, version, size: digest.bytes, sha256: digest.sha256, contentType, metadata, lastModified,
      acked: acked.map((a): Replica => ({ provider: a.provider, version, etag: a.meta.etag })), owed, lease: held.lease,
      priority: this.priority.classify({ key, size: digest.bytes, metadata: opts.metadata }),
    });
    held.consumed = result.committed;
    if (!result.committed) {
      // Only a writer that outlived its lease gets here; the writer that took over wins.
      throw new TransientError(`${key}: the write lease was lost before the commit (another writer took over); the put did not take effect`, { provider: this.provider, key });
    }
    if (result.entries.length > 0) this.events.emit('owed', result.entries);
    // A write that failed but may have landed on a provider the catalog does not now list (the put
    // moved on to a spare): owe that copy a delete, or it outlives the key's later versions and deletes.
    const listed = new Set([...acked.map((a) => a.provider), ...owed]);
    for (const p of new Set([...write.inDoubt, ...write.wrong])) {
      if (!listed.has(p)) await this.repair(key, p, 'may hold bytes of a write whose answer was lost');
    }
    if (acked.length < policy.writeQuorum || aborted) {
      // Committed on fewer providers than asked: the new bytes replaced the old on some of them, so
      // they are now the key's value (as a failed S3 put may have happened); the caller still hears of the failure.
      throw this.putFailure(key, acked.length, policy.writeQuorum, write.failure, opts.signal, version);
    }
    const out: ObjectMeta = {
      key, size: digest.bytes, etag: routerEtag(version), version: String(version), lastModified, metadata, checksums: { sha256: digest.sha256 },
    };
    if (contentType !== undefined) out.contentType = contentType;
    return out;
  }

  private putFailure(key: string, acked: number, quorum: number, failure: unknown, signal: AbortSignal | undefined, committedAs?: number): Error {
    const committed = committedAs === undefined ? '' : `; it is committed as version ${committedAs} on those, and replication completes the rest`;
    if (signal?.aborted) return new AbortedError(`put aborted after ${acked} of ${quorum} required providers acknowledged it${committed}`, { provider: this.provider, key, cause: signal.reason });
    if (committedAs === undefined && isCloudmuxError(failure) && !failure.retryable && !isCloudmuxError(failure, 'ProviderUnavailable')) return failure;
    return new ProviderUnavailableError(`${key}: ${acked} of ${quorum} required providers acknowledged the put${committed}`, { provider: this.provider, key, cause: failure });
  }

  /** Checks a conditional put against the catalog (under the write lease, so the answer holds until the commit). */
  private async checkPutCondition(key: string, found: CatalogLookup, opts: PutOptions, held: HeldLease): Promise<void> {
    let live = found.state === 'live' ? found.object : undefined;
    const outside = found.state === 'unknown' ? (await this.findOutside(key, held.signal))?.meta : undefined;
    if (outside) {
      // A copy outside the catalog: written before cloudmux, or left by a put whose every answer
      // was lost. Adopted before the condition fails, so the key the caller is told exists also
      // shows in listings and the change feed — else a sync, which sees the remote through them,
      // plans the same create every round and loses every time to a copy it cannot see.
      const adopted = await this.adopt(key, held.signal, held);
      live = adopted?.object ?? { key, version: 0, size: outside.size, metadata: outside.metadata, lastModified: outside.lastModified };
    }
    if (opts.ifNoneMatch !== undefined && live) throw new AlreadyExistsError(`${key} exists (etag ${live.version ? routerEtag(live.version) : 'not yet in the catalog'})`, { provider: this.provider, key });
    if (opts.ifMatch !== undefined) {
      if (!live) throw new NotFoundError(`no object at ${key}`, { provider: this.provider, key });
      if (opts.ifMatch !== routerEtag(live.version)) throw new PreconditionFailedError(`etag is ${live.version ? routerEtag(live.version) : '(not in the catalog)'}, not ${opts.ifMatch}`, { provider: this.provider, key });
    }
  }

  /**
   * Nothing of a failed put is committed; the providers it may have reached might now hold its
   * bytes while the catalog lists them as holders of the previous version. Check each, so the
   * catalog's version never loses its last holder to a failed overwrite.
   */
  private async reconcileAfterFailedPut(key: string, found: CatalogLookup, suspects: string[], held: HeldLease): Promise<void> {
    if (found.state !== 'live') return;
    for (const p of new Set(suspects)) {
      if (!found.holders.some((h) => h.provider === p)) continue;
      const outcome = await this.reconcileHolder(key, p, 'holds bytes of a put that was not committed', held).catch(() => 'skipped' as const);
      if (outcome === 'adopted') return;
    }
  }

  /** Records that `provider`'s copy of `key` is not what the catalog says, owing a fix. */
  private async repair(key: string, provider: string, reason: string): Promise<void> {
    const entry = await this.state.repairReplica(key, provider);
    this.events.emit('repair', { key, provider, reason });
    if (entry) this.events.emit('owed', [entry]);
  }

  /**
   * `provider`'s copy of `key` is in doubt: looks at it under the key's write lease (taken unless
   * `held`) and fixes the catalog without ever leaving the current version with no holder (see
   * {@link reconcileHolder}).
   */
  async reconcileHolder(key: string, provider: string, reason: string, held?: HeldLease): Promise<ReconcileOutcome> {
    const run = async (h: HeldLease): Promise<ReconcileOutcome> => {
      const res = await reconcileHolder(this.state, this.stores.get(provider), key, provider, h);
      if (res.outcome === 'repaired') this.events.emit('repair', { key, provider, reason });
      if (res.outcome === 'adopted') this.events.emit('repair', { key, provider, reason: `${reason}; it was the last holder, so what it holds is now version ${res.version}` });
      if (res.entries.length > 0) this.events.emit('owed', res.entries);
      return res.outcome;
    };
    return held ? run(held) : this.leases.with(key, undefined, run);
  }

  async delete(key: string, opts: DeleteOptions = {}): Promise<void> {
    checkDelete(this.provider, this.capabilities, key, opts);
    const policy = this.policies.for(key);
    await this.leases.with(key, opts.signal, async (held) => {
      const found = await this.state.lookup(key);
      if (opts.ifMatch !== undefined) await this.checkDeleteCondition(key, found, opts.ifMatch, held.signal);
      if (found.state === 'deleted') return;
      // A key the catalog never saw may exist on any eligible provider (written before cloudmux).
      // Providers still owed a replica may hold a copy already (a copy in flight, a write whose answer was lost): clean them too.
      const owedThere = (await this.state.entries({ key, state: 'pending' })).filter((e) => e.kind === 'replicate').map((e) => e.provider);
      const alsoOn = [...new Set([...(found.state === 'unknown' ? policy.providers : []), ...owedThere])];
      // The lease stays held until the providers' deletes are done: a put that follows must not be deleted by them.
      const result = await this.state.commitDelete({ key, version: held.lease.version, alsoOn, leaseOwner: this.id, leaseMs: this.leaseMs, lease: held.lease, keepLease: true });
      if (!result.committed) {
        if (result.fenced) throw new TransientError(`${key}: the write lease was lost before the delete was committed`, { provider: this.provider, key });
        return;
      }
      const left: OutboxEntry[] = [];
      await Promise.all(result.entries.map(async (e) => {
        const p = e.provider;
        if (!this.stores.has(p) || this.health.state(p) === 'down') {
          await this.state.retryLater(e.id, `${p} is down`, new Date(), false);
          left.push(e);
          return;
        }
        try {
          await this.providers.call(p, () => this.providers.store(p).delete(key, { signal: held.signal }), 'delete');
          await this.state.completeDelete(e);
        } catch (err) {
          await this.state.retryLater(e.id, describeError(err), new Date(), true);
          left.push(e);
        }
      }));
      if (left.length > 0) this.events.emit('owed', left);
    });
  }

  /**
   * A conditional delete's check (under the write lease, so it holds until the commit): the
   * catalog's current version must be `ifMatch`; a missing key passes (delete is idempotent); a
   * key found only on a provider has no router etag yet, so no ifMatch can name it.
   */
  private async checkDeleteCondition(key: string, found: CatalogLookup, ifMatch: string, signal: AbortSignal): Promise<void> {
    if (found.state === 'deleted') return;
    if (found.state === 'live') {
      const etag = routerEtag(found.object.version);
      if (etag !== ifMatch) throw new PreconditionFailedError(`etag is ${etag}, not ${ifMatch}; not deleted`, { provider: this.provider, key });
      return;
    }
    if (await this.findOutside(key, signal)) {
      throw new PreconditionFailedError(`${key} is not yet in the catalog (read it once to give it an etag); not deleted`, { provider: this.provider, key });
    }
  }

  async deleteMany(keys: Iterable<string>, opts: SignalOptions = {}): Promise<DeleteManyResult> {
    return deleteEach(keys, 8, (key) => this.delete(key, opts), this.provider);
  }

  async copy(src: string, dst: string, opts: CopyOptions = {}): Promise<ObjectMeta> {
    checkCopy(this.provider, this.capabilities, src, dst, opts);
    const got = await this.get(src, { ifMatch: opts.sourceIfMatch, signal: opts.signal, verify: true }).catch((e: unknown) => {
      if (isCloudmuxError(e, 'PreconditionFailed')) throw new PreconditionFailedError(`source ${src} changed: ${e.message}`, { provider: this.provider, key: src, cause: e });
      throw e;
    });
    try {
      return await this.put(dst, got.body, {
        signal: opts.signal,
        ...(opts.ifNoneMatch !== undefined ? { ifNoneMatch: opts.ifNoneMatch } : {}),
        size: got.meta.size,
        metadata: opts.metadata ?? carriedMetadata(got.meta.metadata),
        contentType: opts.metadata ? opts.contentType : (opts.contentType ?? got.meta.contentType),
        expect: got.meta.checksums.sha256 ? { sha256: got.meta.checksums.sha256 } : undefined,
      });
    } finally {
      if (!got.body.destroyed) discard(got.body);
    }
  }

  async updateMetadata(key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
    validateKey(key, this.provider);
    validateMetadata(opts.metadata, this.provider, key);
    throwIfAborted(opts.signal, { provider: this.provider, key });
    return this.leases.with(key, opts.signal, async (held) => {
      const obj = await this.current(key, held.signal, held);
      const { object } = obj;
      if (opts.ifMatch !== undefined && opts.ifMatch !== routerEtag(object.version)) {
        throw new PreconditionFailedError(`etag is ${routerEtag(object.version)}, not ${opts.ifMatch}`, { provider: this.provider, key });
      }
      const holders = obj.holders.map((h) => h.provider).filter((p) => this.stores.has(p) && this.health.state(p) !== 'down');
      const version = held.lease.version;
      const results = await Promise.allSettled(holders.map((p) => this.providers.call(p, () => this.providers.store(p).updateMetadata(key, { metadata: opts.metadata, contentType: opts.contentType, signal: held.signal }), 'write')));
      const acked: Replica[] = [];
      let failure: unknown;
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') acked.push({ provider: holders[i]!, version, etag: r.value.etag });
        else failure = r.reason;
      });
      if (acked.length === 0) {
        if (isCallerFault(failure, 'write')) throw failure;
        throw new ProviderUnavailableError(`${key}: no provider holding it accepted the metadata update`, { provider: this.provider, key, cause: failure });
      }
      const pending = (await this.state.entries({ key, state: 'pending' })).filter((e) => e.kind === 'replicate').map((e) => e.provider);
      const ackedNames = new Set(acked.map((a) => a.provider));
      const owed = [...new Set([...obj.holders.map((h) => h.provider), ...pending])].filter((p) => !ackedNames.has(p));
      const metadata: Record<string, string> = { ...opts.metadata };
      const sha = object.sha256 ?? object.metadata[SHA256_KEY];
      if (sha) metadata[SHA256_KEY] = sha;
      const contentType = opts.contentType ?? object.contentType;
      const lastModified = new Date();
      const result = await this.state.commitPut({
        key, version, size: object.size, sha256: object.sha256, contentType, metadata, lastModified, acked, owed, lease: held.lease,
        priority: this.priority.classify({ key, size: object.size, metadata }),
      });
      held.consumed = result.committed;
      if (!result.committed) throw new TransientError(`${key}: the write lease was lost before the metadata update was committed`, { provider: this.provider, key });
      if (result.entries.length > 0) this.events.emit('owed', result.entries);
      return this.metaOf({ ...object, version, metadata, contentType, lastModified });
    });
  }

  async presign(key: string, _opts: PresignOptions): Promise<string> {
    throw new NotSupportedError('the router cannot presign: a URL would bypass its catalog', { provider: this.provider, key });
  }

  // ---------------------------------------------------------------------------------------------
  // Reads

  async head(key: string, opts: SignalOptions = {}): Promise<ObjectMeta> {
    validateKey(key, this.provider);
    throwIfAborted(opts.signal, { provider: this.provider, key });
    return this.metaOf((await this.current(key, opts.signal)).object);
  }

  async get(key: string, opts: GetOptions = {}): Promise<RouterGetResult> {
    checkGet(this.provider, key, opts);
    for (let pass = 1; ; pass++) {
      const ctx: ReadContext = { readAgain: false, signal: opts.signal };
      try {
        return await this.getOnce(key, opts, ctx);
      } catch (e) {
        // A put committed or a holder's copy was adopted while we read: look the key up and read
        // the version now current (each pass checks the bytes against the version it looked up).
        if (!ctx.readAgain || pass >= READ_AGAIN_LIMIT) throw e;
      }
    }
  }

  private async getOnce(key: string, opts: GetOptions, ctx: ReadContext): Promise<RouterGetResult> {
    const policy = this.policies.for(key);
    const found = await this.current(key, opts.signal);
    const { object } = found;
    const etag = routerEtag(object.version);
    if (opts.ifMatch !== undefined && opts.ifMatch !== etag) throw new PreconditionFailedError(`etag is ${etag}, not ${opts.ifMatch}`, { provider: this.provider, key });
    if (opts.ifNoneMatch !== undefined && (opts.ifNoneMatch === etag || opts.ifNoneMatch === '*')) throw new NotModifiedError('etag matches ifNoneMatch', { provider: this.provider, key });
    const providerOpts: GetOptions = { range: opts.range, verify: opts.verify, signal: opts.signal };
    const cached = await this.copyOnRead?.read(key, object, found.holders, providerOpts, policy);
    if (cached) return cached;
    const candidates = this.readOrder(policy, found.holders.map((h) => h.provider), object.size);
    this.reader.counted();
    let failure: unknown;
    if (candidates.length > 0) {
      const res = await this.reader.readFrom(key, object, candidates, providerOpts, policy, ctx).catch((e: unknown) => {
        failure = e;
        return undefined;
      });
      if (res) return res;
      if (!mayTryOtherReplica(failure)) throw failure;
    }
    if (policy.allowStaleReads) {
      const stale = this.readOrder(policy, found.stale.map((s) => s.provider), object.size);
      for (const p of stale) {
        try {
          const res = await this.providers.call(p, () => this.providers.store(p).get(key, providerOpts));
          this.events.emit('read', { key, provider: p, hedged: false });
          return { ...res, stale: true, provider: p };
        } catch (e) {
          failure = e;
        }
      }
    }
    const holders = found.holders.map((h) => `${h.provider} (${this.stores.has(h.provider) ? this.health.state(h.provider) : 'not configured'})`).join(', ') || 'none';
    throw new ProviderUnavailableError(`${key}: no available provider holds its current version ${object.version} (holders: ${holders})`, { provider: this.provider, key, cause: failure });
  }

  /**
   * A read of `version` found a holder without its bytes: when a writer moved the key on meanwhile,
   * read again; else reconcile the holder (see {@link settleInDoubt}; a failure only delays the fix).
   */
  private async inDoubt(key: string, p: string, reason: string, ctx: ReadContext, version: number): Promise<void> {
    const outcome = await settleInDoubt(this.state, this.leases, key, version, ctx.signal, (held) => this.reconcileHolder(key, p, reason, held))
      .catch(() => 'skipped' as const);
    // The catalog moved on, the holder's bytes were adopted, or they are right after all: read again.
    if (outcome === 'moved' || outcome === 'adopted' || outcome === 'ok') ctx.readAgain = true;
  }

  async *list(opts: ListOptions = {}): AsyncGenerator<ListItem> {
    const prefix = opts.prefix ?? '';
    validatePrefix(prefix, this.provider);
    throwIfAborted(opts.signal, { provider: this.provider });
    const pageSize = Math.max(1, Math.min(opts.pageSize ?? 1000, 10_000));
    const state = this.state;
    const delimiter = opts.delimiter;
    const signal = opts.signal;
    async function* objects(): AsyncGenerator<ObjectSummary> {
      let cursor = opts.startAfter;
      for (;;) {
        throwIfAborted(signal, { provider: 'router' });
        const page = await state.listObjects({ prefix, startAfter: cursor, limit: pageSize });
        for (const o of page) {
          yield { key: o.key, size: o.size, etag: routerEtag(o.version), lastModified: o.lastModified, version: String(o.version), checksums: o.sha256 ? { sha256: o.sha256 } : {} };
          cursor = o.key;
          if (delimiter) {
            const i = o.key.indexOf(delimiter, prefix.length);
            // rollup emits one prefix item per subtree: skip the rest of it instead of paging through.
            if (i >= 0) {
              cursor = afterPrefix(o.key.slice(0, i + delimiter.length));
              break;
            }
          }
        }
        if (page.length === 0) return;
        if (page.length < pageSize && cursor === page[page.length - 1]!.key) return;
      }
    }
    yield* rollup(objects(), prefix, delimiter);
  }

  /**
   * What changed in the catalog after `cursor` (contract: {@link ChangeFeed}): every put, metadata
   * update, adoption and delete, with the version, size, SHA-256 and etag reads will report.
   * Errors: InvalidArgument (cursor, limit), InvalidKey (prefix).
   */
  async changesSince(cursor: string | undefined, opts: ChangesSinceOptions = {}): Promise<ChangePage> {
    const limit = changeLimit(opts.limit, this.provider);
    if (opts.prefix) validatePrefix(opts.prefix, this.provider);
    throwIfAborted(opts.signal, { provider: this.provider });
    const page = await this.state.changesSince(cursor, { limit, ...(opts.prefix ? { prefix: opts.prefix } : {}) });
    return {
      ...page,
      changes: page.changes.map((c): Change => c.deleted
        ? { key: c.key, deleted: true, version: String(c.version) }
        : { key: c.key, deleted: false, version: String(c.version), size: c.size, etag: routerEtag(c.version), ...(c.sha256 ? { sha256: c.sha256 } : {}) }),
    };
  }

  async close(): Promise<void> {
    this.health.stop();
    if (!this.closeResources) return;
    await Promise.allSettled([...this.stores.values()].map((s) => s.close()));
    await this.state.close();
  }

  toString(): string {
    return `Router(${this.order.map((p) => `${p}=${this.stores.get(p)!.toString()}`).join(', ')})`;
  }

  /** Where a new object goes (see {@link ProviderSet.placement}); with the policy's `writeLocal`, near the router's location. */
  placement(policy: PlacementPolicy, size: number): Placement {
    return this.providers.placement(policy, size, policy.writeLocal ? this.location : undefined);
  }

  /** Replicas in the order reads should try them (see {@link ProviderSet.readOrder}). */
  readOrder(policy: PlacementPolicy, holders: string[], size: number): string[] {
    return this.providers.readOrder(policy, holders, size);
  }

  // ---------------------------------------------------------------------------------------------
  // Catalog

  /** The key's live catalog entry; an unknown key is looked for on the providers and adopted. */
  private async current(key: string, signal: AbortSignal | undefined, held?: HeldLease): Promise<{ object: CatalogObject; holders: Replica[]; stale: Replica[] }> {
    const found = await this.state.lookup(key);
    if (found.state === 'live') return found;
    if (found.state === 'deleted') throw new NotFoundError(`no object at ${key}`, { provider: this.provider, key });
    const adopted = await this.adopt(key, signal, held);
    if (!adopted) throw new NotFoundError(`no object at ${key}`, { provider: this.provider, key });
    return adopted;
  }

  /** The first copy of a key the catalog does not know, on the policy's providers (pins first); throws when one could not be asked. */
  private async findOutside(key: string, signal: AbortSignal | undefined): Promise<{ provider: string; meta: ObjectMeta } | undefined> {
    const policy = this.policies.for(key);
    if (!policy.adoptUnknown) return undefined;
    const order = [...policy.pin, ...policy.providers.filter((p) => !policy.pin.includes(p))].filter((p) => this.stores.has(p));
    let failure: unknown;
    const unreachable: string[] = [];
    for (const p of order) {
      if (this.health.state(p) === 'down') {
        unreachable.push(`${p}: down`);
        continue;
      }
      try {
        return { provider: p, meta: await this.providers.call(p, () => this.providers.store(p).head(key, { signal })) };
      } catch (e) {
        if (!isCloudmuxError(e, 'NotFound')) {
          failure = e;
          unreachable.push(`${p}: ${describeError(e, { where: false, maxLength: 200 })}`);
        }
      }
    }
    if (unreachable.length > 0) {
      throw new ProviderUnavailableError(`${key} is not in the catalog and ${unreachable.length} provider(s) could not be asked whether they hold it (${unreachable.join('; ')})`, { provider: this.provider, key, cause: failure });
    }
    return undefined;
  }

  /**
   * Looks for a key on the policy's providers (pins first, then in the policy's order) and records
   * the first copy found as the current version, owing replicas to reach N. Under the key's write
   * lease (taken unless `held`), so an adoption never races a put of the key.
   */
  private async adopt(key: string, signal: AbortSignal | undefined, held?: HeldLease): Promise<{ object: CatalogObject; holders: Replica[]; stale: Replica[] } | undefined> {
    const policy = this.policies.for(key);
    if (!policy.adoptUnknown) return undefined;
    const run = async (h: HeldLease): Promise<{ object: CatalogObject; holders: Replica[]; stale: Replica[] } | undefined> => {
      const before = await this.state.lookup(key);
      if (before.state === 'live') return before;
      if (before.state === 'deleted') return undefined;
      const outside = await this.findOutside(key, h.signal);
      if (!outside) return undefined;
      const { provider: p, meta } = outside;
      const version = h.lease.version;
      const plan = this.placement(policy, meta.size);
      const res = await this.state.commitPut({
        key, version, size: meta.size, sha256: storedSha256(meta), contentType: meta.contentType, metadata: meta.metadata, lastModified: meta.lastModified,
        acked: [{ provider: p, version, etag: meta.etag }], owed: plan.targets.filter((t) => t !== p), onlyIfUnknown: true, lease: h.lease,
      });
      h.consumed = res.committed;
      if (res.entries.length > 0) this.events.emit('owed', res.entries);
      const now = await this.state.lookup(key);
      return now.state === 'live' ? now : undefined;
    };
    return held ? run(held) : this.leases.with(key, signal, run);
  }

  private metaOf(object: CatalogObject, fromProvider?: ObjectMeta): ObjectMeta {
    const meta: ObjectMeta = {
      key: object.key,
      size: object.size,
      etag: routerEtag(object.version),
      version: String(object.version),
      lastModified: object.lastModified,
      metadata: { ...object.metadata },
      checksums: { ...fromProvider?.checksums, ...(object.sha256 ? { sha256: object.sha256 } : {}) },
    };
    const ct = object.contentType ?? fromProvider?.contentType;
    if (ct !== undefined) meta.contentType = ct;
    return meta;
  }

}
redactInspection(Router);


/** The nearest layer in a store stack that emits breaker events (duck-typed: `on` + `state()`). */
function findBreaker(store: BlobStore): BreakerEventSource | undefined {
  let s: unknown = store;
  for (let depth = 0; s && depth < 16; depth++) {
    const c = s as { on?: unknown; state?: unknown; inner?: unknown; constructor?: { name?: string } };
    if (typeof c.on === 'function' && typeof c.state === 'function' && c.constructor?.name === 'BreakerStore') return c as BreakerEventSource;
    s = c.inner;
  }
  return undefined;
}
