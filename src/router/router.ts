// A little over 500 lines: the router's BlobStore face — leased puts with their failure handling, conditional deletes, reads; its parts live beside it (catalog-keys, catalog-views, metadata-update, put-writer, replica-reader, read-again, router-types).
import { PriorityClassifier } from '../core/priority.js';
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import {
  AbortedError, AlreadyExistsError, IntegrityError, NotFoundError, NotModifiedError, NotSupportedError, PreconditionFailedError, ProviderUnavailableError, TransientError,
  SHA256_KEY, bodyBytes, checkCopy, checkDelete, checkGet, checkPut, checksumMismatches, describeError, digestBuffer, isCloudmuxError, mayTryOtherReplica,
  isReplayableBody, deleteEach, throwIfAborted, validateKey, validateMetadata,
} from '../core/index.js';
import type {
  BlobStore, Body, Capabilities, CopyOptions, DeleteManyResult, DeleteOptions, GetOptions, ListItem, ListOptions, ObjectMeta,
  PresignOptions, PutOptions, SignalOptions, UpdateMetadataOptions,
} from '../core/index.js';
import { carriedMetadata } from '../core/system-metadata.js';
import type { ChangeFeed, ChangePage, ChangesSinceOptions } from '../core/change-feed.js';
import type { CatalogLookup, CatalogObject, OutboxEntry, Replica, StateStore } from '../state/types.js';
import { CostModel } from './cost-model.js';
import { discard } from './fan-out.js';
import { HealthTracker, findBreaker } from './health-tracker.js';
import { KeyLocks } from './key-locks.js';
import { PolicySet, type PlacementPolicy } from './policy.js';
import { ProviderSet, type Placement } from './provider-set.js';
import { PutWriter, recordedEtags, type WriteOutcome } from './put-writer.js';
import { reconcileHolder, type ReconcileOutcome } from './reconcile.js';
import { ReplicaReader, type ReadContext } from './replica-reader.js';
import { READ_AGAIN_LIMIT, settleInDoubt } from './read-again.js';
import { WriteLeases, type HeldLease } from './write-leases.js';
import { openCopyOnRead, type CopyOnRead } from './copy-on-read.js';
import { redactInspection } from '../core/redact.js';
import { CatalogKeys } from './catalog-keys.js';
import { updateMetadataLeased } from './metadata-update.js';
import { catalogChanges, listCatalog } from './catalog-views.js';
import { routerEtag, type RouterEvents, type RouterGetResult, type RouterOptions } from './router-types.js';

export { routerEtag } from './router-types.js';
export type { RouterEvents, RouterGetResult, RouterOptions, RouterProvider } from './router-types.js';




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
 *   `stale`). Each replica's stored SHA-256 (its own, or the one in cloudmux's metadata) is checked
 *   against the catalog before its bytes flow. A holder found with a newer version's bytes (a put
 *   landed while the read looked) is not an outage: the read looks the key up again and reads the
 *   version then current (up to READ_AGAIN_LIMIT passes; see read-again.ts).
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
  /** Look-ups of a key in the catalog, adopting keys it does not know. */
  private readonly catalog: CatalogKeys;
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
    this.catalog = new CatalogKeys({
      state: this.state, policies: this.policies, stores: this.stores, health: this.health, providers: this.providers, leases: this.leases, events: this.events,
      placement: (policy, size) => this.placement(policy, size),
    });
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
    // A write that failed but may have landed on a provider the catalog will not list (the put moved
    // on to a spare) is owed a delete in the commit, under the lease: after it, another writer may
    // make that provider a holder, whose copy a later repair would wrongly forget.
    const listed = new Set([...ackedNames, ...owed]);
    const mayHold = [...new Set([...write.inDoubt, ...write.wrong])].filter((p) => !listed.has(p));
    const result = await this.state.commitPut({
      key, version, size: digest.bytes, sha256: digest.sha256, contentType, metadata, lastModified,
      acked: acked.map((a): Replica => ({ provider: a.provider, version, etag: a.meta.etag })), owed, lease: held.lease,
      priority: this.priority.classify({ key, size: digest.bytes, metadata: opts.metadata }), ...(mayHold.length > 0 ? { mayHold } : {}),
    });
    held.consumed = result.committed;
    if (!result.committed) {
      // Only a writer that outlived its lease gets here; the writer that took over wins.
      throw new TransientError(`${key}: the write lease was lost before the commit (another writer took over); the put did not take effect`, { provider: this.provider, key });
    }
    for (const p of mayHold) this.events.emit('repair', { key, provider: p, reason: 'may hold bytes of a write whose answer was lost' });
    if (result.entries.length > 0) this.events.emit('owed', result.entries);
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
    const outside = found.state === 'unknown' ? (await this.catalog.findOutside(key, held.signal))?.meta : undefined;
    if (outside) {
      // A copy outside the catalog: written before cloudmux, or left by a put whose every answer
      // was lost. Adopted before the condition fails, so the key the caller is told exists also
      // shows in listings and the change feed — else a sync, which sees the remote through them,
      // plans the same create every round and loses every time to a copy it cannot see.
      const adopted = await this.catalog.adopt(key, held.signal, held);
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
   * bytes. One the catalog lists as a holder is checked, so the catalog's version never loses its
   * last holder to a failed overwrite; any other is owed a delete (the worker looks first), or
   * those bytes outlive the key's later versions and deletes. A key the catalog does not know is
   * left alone: a copy found there is adopted by the next read, as any outside copy is.
   */
  private async reconcileAfterFailedPut(key: string, found: CatalogLookup, suspects: string[], held: HeldLease): Promise<void> {
    if (found.state === 'unknown') return;
    // A lease lost meanwhile (a stall past its expiry) would let what follows undo another writer's commit.
    if (!await this.state.renewWrite(held.lease, this.leases.leaseMs).catch(() => false)) return;
    const holders = new Set(found.state === 'live' ? found.holders.map((h) => h.provider) : []);
    // Non-holders first, while the lease is surely ours: an adoption below commits and gives it up.
    for (const p of new Set(suspects)) {
      if (!holders.has(p)) await this.repair(key, p, 'may hold bytes of a put that was not committed').catch(() => undefined);
    }
    for (const p of new Set(suspects)) {
      if (!holders.has(p)) continue;
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
    if (await this.catalog.findOutside(key, signal)) {
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
      const obj = await this.catalog.current(key, held.signal, held);
      const { object } = obj;
      if (opts.ifMatch !== undefined && opts.ifMatch !== routerEtag(object.version)) {
        throw new PreconditionFailedError(`etag is ${routerEtag(object.version)}, not ${opts.ifMatch}`, { provider: this.provider, key });
      }
      return this.metaOf(await updateMetadataLeased({
        state: this.state, stores: this.stores, health: this.health, providers: this.providers, priority: this.priority, events: this.events,
      }, key, opts, held, obj));
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
    return this.metaOf((await this.catalog.current(key, opts.signal)).object);
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
    const found = await this.catalog.current(key, opts.signal);
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
    const outcome = await settleInDoubt(this.state, this.leases, key, p, version, ctx.signal, (held) => this.reconcileHolder(key, p, reason, held))
      .catch(() => 'skipped' as const);
    // The catalog moved on, the holder's bytes were adopted, or they are right after all: read again.
    if (outcome === 'moved' || outcome === 'adopted' || outcome === 'ok') ctx.readAgain = true;
  }

  list(opts: ListOptions = {}): AsyncGenerator<ListItem> {
    return listCatalog(this.state, opts);
  }

  /**
   * What changed in the catalog after `cursor` (contract: {@link ChangeFeed}): every put, metadata
   * update, adoption and delete, with the version, size, SHA-256 and etag reads will report.
   * Errors: InvalidArgument (cursor, limit), InvalidKey (prefix).
   */
  changesSince(cursor: string | undefined, opts: ChangesSinceOptions = {}): Promise<ChangePage> {
    return catalogChanges(this.state, cursor, opts);
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
