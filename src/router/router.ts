import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import {
  AbortedError, IntegrityError, NotFoundError, NotModifiedError, NotSupportedError, PreconditionFailedError, ProviderUnavailableError,
  SHA256_KEY, afterPrefix, bodyBytes, bodyChunks, checkCopy, checkGet, checkPut, checksumMismatches, digestBuffer, isCloudmuxError,
  isReplayableBody, rollup, deleteEach, throwIfAborted, userMetadata, validateKey, validateMetadata, validatePrefix,
} from '../core/index.js';
import type {
  BlobStore, Body, Capabilities, CopyOptions, DeleteManyResult, GetOptions, GetResult, ListItem, ListOptions, ObjectMeta, ObjectSummary,
  PresignOptions, PutOptions, SignalOptions, UpdateMetadataOptions,
} from '../core/index.js';
import type { Prices } from '../config/schema.js';
import type { CatalogObject, OutboxEntry, Replica, StateStore } from '../state/types.js';
import { CostModel } from './cost-model.js';
import { discard, fanOut } from './fan-out.js';
import { HealthTracker, isCallerError, type BreakerEventSource, type HealthTrackerOptions } from './health-tracker.js';
import { KeyLocks } from './key-locks.js';
import { PolicySet, type PlacementPolicy, type PolicyInput } from './policy.js';

/** One provider the router places objects on. */
export interface RouterProvider {
  /** Unique name (the catalog records it). */
  name: string;
  /** The store, typically wrapped in the resilience layers. */
  store: BlobStore;
  prices?: Prices;
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
  /** The provider cloudmux runs next to (its egress is free). */
  location?: string;
  /** Close the providers and the state store on close() (default true). */
  closeResources?: boolean;
  /** How long the router keeps a delete entry to itself while it tries it (ms, default 60 000). */
  leaseMs?: number;
}

/** A get result that may come from a stale replica (only with `allowStaleReads`). */
export type RouterGetResult = GetResult & { stale?: boolean; provider: string };

export interface RouterEvents {
  /** Work was added to the outbox (a worker in this process may want to wake up). */
  owed: [OutboxEntry[]];
  /** A holder did not have the bytes the catalog says (missing or wrong digest). */
  repair: [{ key: string; provider: string; reason: string }];
  /** Which provider served a read (for tests, metrics and demos). */
  read: [{ key: string; provider: string; hedged: boolean }];
}

const READ_ERRORS_TO_RETHROW = new Set(['InvalidRange', 'PreconditionFailed', 'NotModified', 'InvalidKey', 'InvalidArgument', 'Aborted']);

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
 *   so a deleted object never comes back.
 * - list reads the catalog (the authoritative view), in UTF-8 byte order.
 * - Conditional puts are not supported: the router cannot make a write to several providers atomic
 *   with a condition checked elsewhere (capabilities.conditionalPut is false).
 * - Puts, deletes and metadata updates of one key are serialized within this process; across
 *   processes, the higher version wins and a replica found holding other bytes is repaired.
 */
export class Router implements BlobStore {
  readonly provider = 'router';
  readonly capabilities: Capabilities;
  readonly health: HealthTracker;
  readonly cost: CostModel;
  readonly policies: PolicySet;
  readonly state: StateStore;
  readonly locks = new KeyLocks();
  readonly events = new EventEmitter<RouterEvents>();
  /** Identifies this router's leases in the outbox. */
  readonly id = `router-${process.pid}-${randomBytes(4).toString('hex')}`;
  private readonly stores: Map<string, BlobStore>;
  private readonly weights: Map<string, number>;
  private readonly order: string[];
  private readonly closeResources: boolean;
  private readonly leaseMs: number;
  private reads = 0;
  private hedges = 0;

  constructor(opts: RouterOptions) {
    if (opts.providers.length === 0) throw new NotSupportedError('a router needs at least one provider');
    this.order = opts.providers.map((p) => p.name);
    if (new Set(this.order).size !== this.order.length) throw new NotSupportedError(`duplicate provider names: ${this.order.join(', ')}`);
    this.stores = new Map(opts.providers.map((p) => [p.name, p.store]));
    this.weights = new Map(opts.providers.map((p) => [p.name, p.weight ?? 1]));
    this.state = opts.state;
    this.policies = new PolicySet(opts.policies ?? [], this.order);
    this.cost = new CostModel(Object.fromEntries(opts.providers.filter((p) => p.prices).map((p) => [p.name, p.prices!])), { location: opts.location });
    this.health = opts.health instanceof HealthTracker ? opts.health : new HealthTracker(this.order, opts.health);
    for (const p of opts.providers) {
      const breaker = p.breaker ?? findBreaker(p.store);
      if (breaker) this.health.observeBreaker(p.name, breaker);
    }
    this.closeResources = opts.closeResources ?? true;
    this.leaseMs = opts.leaseMs ?? 60_000;
    const stores = [...this.stores.values()];
    this.capabilities = {
      conditionalPut: false,
      versioning: false,
      nativeChecksums: [],
      presign: false,
      streaming: stores.every((s) => s.capabilities.streaming),
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
    return this.locks.with(key, () => this.putLocked(key, body, opts, policy));
  }

  private async putLocked(key: string, body: Body, opts: PutOptions, policy: PlacementPolicy): Promise<ObjectMeta> {
    const size = isReplayableBody(body) ? bodyBytes(body).byteLength : opts.size;
    const plan = this.placement(policy, size ?? 1024 * 1024);
    const version = await this.state.nextVersion();
    const metaIn = opts.metadata ?? {};
    let acked: { provider: string; meta: ObjectMeta }[];
    let digest: { sha256: string; bytes: number };
    let failure: unknown;
    if (isReplayableBody(body)) {
      const bytes = bodyBytes(body);
      const sums = digestBuffer(bytes);
      if (opts.expect && checksumMismatches(opts.expect, sums).length > 0) {
        throw new IntegrityError('body does not match the expected checksums; nothing was written', { provider: this.provider, key });
      }
      digest = { sha256: sums.sha256!, bytes: bytes.byteLength };
      ({ acked, failure } = await this.writeReplayable(key, bytes, opts, digest.sha256, plan, policy.writeQuorum));
    } else {
      ({ acked, digest, failure } = await this.writeStream(key, body, opts, plan, policy.writeQuorum));
    }
    if (acked.length < policy.writeQuorum || opts.signal?.aborted) {
      await this.forgetUncommitted(key, acked.map((a) => a.provider));
      if (opts.signal?.aborted) throw new AbortedError('put aborted', { provider: this.provider, key, cause: opts.signal.reason });
      if (isCloudmuxError(failure) && !failure.retryable && !isCloudmuxError(failure, 'ProviderUnavailable') && acked.length === 0) throw failure;
      throw new ProviderUnavailableError(`${key}: ${acked.length} of ${policy.writeQuorum} required providers acknowledged the put`, { provider: this.provider, key, cause: failure });
    }
    const first = acked[0]!.meta;
    const metadata = { ...metaIn, [SHA256_KEY]: digest.sha256 };
    const contentType = opts.contentType ?? first.contentType;
    const lastModified = new Date();
    const ackedNames = new Set(acked.map((a) => a.provider));
    const owed = plan.targets.filter((p) => !ackedNames.has(p));
    const result = await this.state.commitPut({
      key, version, size: digest.bytes, sha256: digest.sha256, contentType, metadata, lastModified,
      acked: acked.map((a): Replica => ({ provider: a.provider, version, etag: a.meta.etag })), owed,
    });
    if (!result.committed) {
      // A newer version was committed by another process while we wrote: our bytes may have
      // landed on its holders. Last writer (by version) wins; make the holders whole again.
      for (const a of acked) await this.repair(key, a.provider, 'overwritten by an older concurrent put');
    }
    if (result.entries.length > 0) this.events.emit('owed', result.entries);
    const out: ObjectMeta = {
      key, size: digest.bytes, etag: routerEtag(version), version: String(version), lastModified, metadata, checksums: { sha256: digest.sha256 },
    };
    if (contentType !== undefined) out.contentType = contentType;
    return out;
  }

  /** Writes an in-memory body to W providers, moving on to the next candidate when one fails. */
  private async writeReplayable(key: string, bytes: Buffer, opts: PutOptions, sha256: string, plan: Placement, quorum: number):
    Promise<{ acked: { provider: string; meta: ObjectMeta }[]; failure: unknown }> {
    const acked: { provider: string; meta: ObjectMeta }[] = [];
    const queue = [...plan.writeOrder];
    let failure: unknown;
    const putOpts: PutOptions = { ...opts, expect: { ...opts.expect, sha256 }, size: bytes.byteLength };
    while (acked.length < quorum && queue.length > 0 && !opts.signal?.aborted) {
      const wave = queue.splice(0, quorum - acked.length);
      const results = await Promise.allSettled(wave.map((p) => this.call(p, () => this.store(p).put(key, bytes, putOpts))));
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') acked.push({ provider: wave[i]!, meta: r.value });
        else failure = r.reason;
      });
      if (failure !== undefined && isCloudmuxError(failure) && (isCallerError(failure) && !isCloudmuxError(failure, 'NotFound'))) break;
    }
    return { acked, failure };
  }

  /**
   * Streams a body to up to W+1 providers at once (hashing it once), then, if fewer than W took
   * it, copies from one that did to the next candidates.
   */
  private async writeStream(key: string, body: Body, opts: PutOptions, plan: Placement, quorum: number):
    Promise<{ acked: { provider: string; meta: ObjectMeta }[]; digest: { sha256: string; bytes: number }; failure: unknown }> {
    const width = Math.min(plan.writeOrder.length, plan.targets.length > quorum ? quorum + 1 : quorum);
    if (width === 0) {
      return { acked: [], digest: { sha256: '', bytes: 0 }, failure: new ProviderUnavailableError('no provider is available for writes', { provider: this.provider, key }) };
    }
    const first = plan.writeOrder.slice(0, width);
    const fan = fanOut(bodyChunks(body), width);
    let failure: unknown;
    const results = await Promise.allSettled(first.map((p, i) => {
      const branch = fan.branches[i]!;
      return this.call(p, () => this.store(p).put(key, branch, opts)).catch((e: unknown) => {
        if (!branch.destroyed) branch.destroy();
        throw e;
      });
    }));
    let digest: { sha256: string; bytes: number } = { sha256: '', bytes: 0 };
    try {
      const d = await fan.done;
      digest = { sha256: d.sha256!, bytes: d.bytes };
    } catch (e) {
      failure = e;
    }
    const acked: { provider: string; meta: ObjectMeta }[] = [];
    const wrong: string[] = [];
    results.forEach((r, i) => {
      if (r.status === 'rejected') failure ??= r.reason;
      else if (digest.sha256 && r.value.checksums.sha256 && r.value.checksums.sha256 !== digest.sha256) wrong.push(first[i]!);
      else if (digest.sha256) acked.push({ provider: first[i]!, meta: r.value });
      else wrong.push(first[i]!);
    });
    if (wrong.length > 0) {
      failure ??= new IntegrityError('a provider stored bytes other than those sent', { provider: this.provider, key });
      await this.forgetUncommitted(key, wrong);
    }
    // Fill the quorum by copying from a provider that has the bytes.
    const rest = plan.writeOrder.slice(width);
    while (acked.length > 0 && acked.length < quorum && rest.length > 0 && !opts.signal?.aborted) {
      const p = rest.shift()!;
      try {
        const src = acked[0]!;
        const got = await this.call(src.provider, () => this.store(src.provider).get(key, { ifMatch: src.meta.etag, verify: true, signal: opts.signal }));
        const meta = await this.call(p, () => this.store(p).put(key, got.body, { ...opts, size: digest.bytes, expect: { sha256: digest.sha256 } }));
        acked.push({ provider: p, meta });
      } catch (e) {
        failure = e;
      }
    }
    return { acked, digest, failure };
  }

  /** Providers that took bytes of a put that is not being committed: undo what the catalog does not describe. */
  private async forgetUncommitted(key: string, providers: string[]): Promise<void> {
    for (const p of providers) await this.repair(key, p, 'holds bytes of a put that was not committed');
  }

  /** Records that `provider`'s copy of `key` is not what the catalog says, owing a fix. */
  private async repair(key: string, provider: string, reason: string): Promise<void> {
    const entry = await this.state.repairReplica(key, provider);
    this.events.emit('repair', { key, provider, reason });
    if (entry) this.events.emit('owed', [entry]);
  }

  async delete(key: string, opts: SignalOptions = {}): Promise<void> {
    validateKey(key, this.provider);
    throwIfAborted(opts.signal, { provider: this.provider, key });
    const policy = this.policies.for(key);
    await this.locks.with(key, async () => {
      const found = await this.state.lookup(key);
      if (found.state === 'deleted') return;
      const version = await this.state.nextVersion();
      // A key the catalog never saw may exist on any eligible provider (written before cloudmux).
      const alsoOn = found.state === 'unknown' ? policy.providers : [];
      const result = await this.state.commitDelete({ key, version, alsoOn, leaseOwner: this.id, leaseMs: this.leaseMs });
      const left: OutboxEntry[] = [];
      await Promise.all(result.entries.map(async (e) => {
        const p = e.provider;
        if (!this.stores.has(p) || this.health.state(p) === 'down') {
          await this.state.retryLater(e.id, `${p} is down`, new Date(), false);
          left.push(e);
          return;
        }
        try {
          await this.call(p, () => this.store(p).delete(key, opts));
          await this.state.completeDelete(e);
        } catch (err) {
          await this.state.retryLater(e.id, describe(err), new Date(), true);
          left.push(e);
        }
      }));
      if (left.length > 0) this.events.emit('owed', left);
    });
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
        size: got.meta.size,
        metadata: opts.metadata ?? userMetadata(got.meta.metadata),
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
    return this.locks.with(key, async () => {
      const obj = await this.current(key, opts.signal);
      const { object } = obj;
      if (opts.ifMatch !== undefined && opts.ifMatch !== routerEtag(object.version)) {
        throw new PreconditionFailedError(`etag is ${routerEtag(object.version)}, not ${opts.ifMatch}`, { provider: this.provider, key });
      }
      const holders = obj.holders.map((h) => h.provider).filter((p) => this.stores.has(p) && this.health.state(p) !== 'down');
      const version = await this.state.nextVersion();
      const results = await Promise.allSettled(holders.map((p) => this.call(p, () => this.store(p).updateMetadata(key, { metadata: opts.metadata, contentType: opts.contentType, signal: opts.signal }))));
      const acked: Replica[] = [];
      let failure: unknown;
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') acked.push({ provider: holders[i]!, version, etag: r.value.etag });
        else failure = r.reason;
      });
      if (acked.length === 0) {
        if (isCloudmuxError(failure) && isCallerError(failure)) throw failure;
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
      const result = await this.state.commitPut({ key, version, size: object.size, sha256: object.sha256, contentType, metadata, lastModified, acked, owed });
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
    const policy = this.policies.for(key);
    const found = await this.current(key, opts.signal);
    const { object } = found;
    const etag = routerEtag(object.version);
    if (opts.ifMatch !== undefined && opts.ifMatch !== etag) throw new PreconditionFailedError(`etag is ${etag}, not ${opts.ifMatch}`, { provider: this.provider, key });
    if (opts.ifNoneMatch !== undefined && (opts.ifNoneMatch === etag || opts.ifNoneMatch === '*')) throw new NotModifiedError('etag matches ifNoneMatch', { provider: this.provider, key });
    const candidates = this.readOrder(policy, found.holders.map((h) => h.provider), object.size);
    const providerOpts: GetOptions = { range: opts.range, verify: opts.verify, signal: opts.signal };
    this.reads++;
    let failure: unknown;
    if (candidates.length > 0) {
      const res = await this.readFrom(key, object, candidates, providerOpts, policy).catch((e: unknown) => {
        failure = e;
        return undefined;
      });
      if (res) return res;
      if (isCloudmuxError(failure) && READ_ERRORS_TO_RETHROW.has(failure.code)) throw failure;
    }
    if (policy.allowStaleReads) {
      const stale = this.readOrder(policy, found.stale.map((s) => s.provider), object.size);
      for (const p of stale) {
        try {
          const res = await this.call(p, () => this.store(p).get(key, providerOpts));
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

  /** Tries the candidates in order (hedging the first when the policy says so). */
  private async readFrom(key: string, object: CatalogObject, candidates: string[], opts: GetOptions, policy: PlacementPolicy): Promise<RouterGetResult> {
    let failure: unknown = undefined;
    let i = 0;
    if (policy.hedge && candidates.length >= 2 && this.hedges < policy.hedge.budget * this.reads) {
      const delay = this.health.percentile(candidates[0]!, policy.hedge.afterPercentile);
      if (delay !== undefined) {
        const res = await this.hedgedRead(key, object, candidates[0]!, candidates[1]!, delay, opts);
        if (res.ok) return res.value;
        failure = res.error;
        i = 2;
      }
    }
    for (; i < candidates.length; i++) {
      const res = await this.attemptRead(key, object, candidates[i]!, opts);
      if (res.ok) {
        this.events.emit('read', { key, provider: candidates[i]!, hedged: false });
        return res.value;
      }
      failure = res.error;
      if (isCloudmuxError(failure) && READ_ERRORS_TO_RETHROW.has(failure.code)) throw failure;
    }
    throw failure;
  }

  private async hedgedRead(key: string, object: CatalogObject, a: string, b: string, delayMs: number, opts: GetOptions): Promise<Attempt> {
    const ctrlA = new AbortController();
    const ctrlB = new AbortController();
    const link = (c: AbortController): AbortSignal => (opts.signal ? AbortSignal.any([opts.signal, c.signal]) : c.signal);
    const first = this.attemptRead(key, object, a, { ...opts, signal: link(ctrlA) });
    let timer: NodeJS.Timeout | undefined;
    const early = await Promise.race([first.then((r) => ({ r })), new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), delayMs)))]);
    clearTimeout(timer);
    if (early) {
      if (early.r.ok) this.events.emit('read', { key, provider: a, hedged: false });
      if (early.r.ok || isCloudmuxError(early.r.error) && READ_ERRORS_TO_RETHROW.has(early.r.error.code)) return early.r;
      const second = await this.attemptRead(key, object, b, opts);
      if (second.ok) this.events.emit('read', { key, provider: b, hedged: false });
      return second;
    }
    this.hedges++;
    const second = this.attemptRead(key, object, b, { ...opts, signal: link(ctrlB) });
    const tagged = [first.then((r) => ({ r, p: a, loser: second, ctrl: ctrlB })), second.then((r) => ({ r, p: b, loser: first, ctrl: ctrlA }))];
    const winner = await Promise.race(tagged);
    if (winner.r.ok) {
      winner.ctrl.abort();
      void winner.loser.then((r) => r.ok && discard(r.value.body));
      this.events.emit('read', { key, provider: winner.p, hedged: true });
      return winner.r;
    }
    const other = await winner.loser;
    if (other.ok) this.events.emit('read', { key, provider: winner.p === a ? b : a, hedged: true });
    return other;
  }

  /** One provider read; a holder that turns out not to have the catalog's bytes is repaired and skipped. */
  private async attemptRead(key: string, object: CatalogObject, p: string, opts: GetOptions): Promise<Attempt> {
    let res: GetResult;
    try {
      res = await this.call(p, () => this.store(p).get(key, opts));
    } catch (e) {
      if (isCloudmuxError(e, 'NotFound')) await this.repair(key, p, 'missing on a provider listed as holder');
      return { ok: false, error: e };
    }
    const sha = res.meta.checksums.sha256;
    if ((object.sha256 && sha && sha !== object.sha256) || res.meta.size !== object.size) {
      discard(res.body);
      await this.repair(key, p, 'holds other bytes than the current version');
      return { ok: false, error: new IntegrityError(`${p} holds other bytes than version ${object.version}`, { provider: p, key }) };
    }
    const started = performance.now();
    res.body.once('error', (e) => this.health.record(p, performance.now() - started, e));
    const value: RouterGetResult = { meta: this.metaOf(object, res.meta), body: res.body, provider: p };
    if (res.range) value.range = res.range;
    return { ok: true, value };
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

  async close(): Promise<void> {
    this.health.stop();
    if (!this.closeResources) return;
    await Promise.allSettled([...this.stores.values()].map((s) => s.close()));
    await this.state.close();
  }

  toString(): string {
    return `Router(${this.order.map((p) => `${p}=${this.stores.get(p)!.toString()}`).join(', ')})`;
  }

  // ---------------------------------------------------------------------------------------------
  // Placement

  /**
   * Where a new object goes: `targets` (N providers: pins first, then the cheapest by health) and
   * `writeOrder` (providers to write synchronously, best first, then spares for failover).
   */
  placement(policy: PlacementPolicy, size: number): Placement {
    const rank = (p: string): number => this.health.rank(p);
    const byCost = (a: string, b: string): number =>
      rank(a) - rank(b) || this.cost.putCost(a, size) - this.cost.putCost(b, size) || (this.weights.get(b)! - this.weights.get(a)!) || this.order.indexOf(a) - this.order.indexOf(b);
    const eligible = policy.providers.filter((p) => this.stores.has(p));
    const others = eligible.filter((p) => !policy.pin.includes(p)).sort(byCost);
    const targets = [...policy.pin, ...others].slice(0, policy.replicas);
    const live = (p: string): boolean => rank(p) < 2;
    const pinnedFirst = (a: string, b: string): number => rank(a) - rank(b) || Number(policy.pin.includes(b)) - Number(policy.pin.includes(a)) || byCost(a, b);
    const writeOrder = [...targets.filter(live).sort(pinnedFirst), ...eligible.filter((p) => !targets.includes(p) && live(p)).sort(byCost)];
    return { targets, writeOrder };
  }

  /** Replicas in the order reads should try them; down providers are left out. */
  readOrder(policy: PlacementPolicy, holders: string[], size: number): string[] {
    const usable = holders.filter((p) => this.stores.has(p) && this.health.state(p) !== 'down');
    const latency = (p: string): number => this.health.percentile(p, 50) ?? 0;
    const rank = (p: string): number => this.health.rank(p);
    const cost = (p: string): number => this.cost.readCost(p, size);
    const tie = (a: string, b: string): number => (this.weights.get(b)! - this.weights.get(a)!) || this.order.indexOf(a) - this.order.indexOf(b);
    const primaryIndex = (p: string): number => {
      const i = policy.pin.indexOf(p);
      return i >= 0 ? i : policy.pin.length + policy.providers.indexOf(p);
    };
    const cmp: Record<PlacementPolicy['read'], (a: string, b: string) => number> = {
      cheapest: (a, b) => rank(a) - rank(b) || cost(a) - cost(b) || latency(a) - latency(b) || tie(a, b),
      fastest: (a, b) => rank(a) - rank(b) || latency(a) - latency(b) || cost(a) - cost(b) || tie(a, b),
      primary: (a, b) => rank(a) - rank(b) || primaryIndex(a) - primaryIndex(b),
    };
    return usable.sort(cmp[policy.read]);
  }

  // ---------------------------------------------------------------------------------------------
  // Catalog

  /** The key's live catalog entry; an unknown key is looked for on the providers and adopted. */
  private async current(key: string, signal: AbortSignal | undefined): Promise<{ object: CatalogObject; holders: Replica[]; stale: Replica[] }> {
    const found = await this.state.lookup(key);
    if (found.state === 'live') return found;
    if (found.state === 'deleted') throw new NotFoundError(`no object at ${key}`, { provider: this.provider, key });
    const adopted = await this.adopt(key, signal);
    if (!adopted) throw new NotFoundError(`no object at ${key}`, { provider: this.provider, key });
    return adopted;
  }

  /**
   * Looks for a key on the policy's providers (pins first, then in the policy's order) and records
   * the first copy found as the current version, owing replicas to reach N.
   */
  private async adopt(key: string, signal: AbortSignal | undefined): Promise<{ object: CatalogObject; holders: Replica[]; stale: Replica[] } | undefined> {
    const policy = this.policies.for(key);
    if (!policy.adoptUnknown) return undefined;
    const order = [...policy.pin, ...policy.providers.filter((p) => !policy.pin.includes(p))].filter((p) => this.stores.has(p));
    let failure: unknown;
    let unreachable = 0;
    for (const p of order) {
      if (this.health.state(p) === 'down') {
        unreachable++;
        continue;
      }
      let meta: ObjectMeta;
      try {
        meta = await this.call(p, () => this.store(p).head(key, { signal }));
      } catch (e) {
        if (!isCloudmuxError(e, 'NotFound')) {
          failure = e;
          unreachable++;
        }
        continue;
      }
      return this.locks.with(key, async () => {
        const version = await this.state.nextVersion();
        const plan = this.placement(policy, meta.size);
        const sha256 = meta.checksums.sha256 ?? meta.metadata[SHA256_KEY];
        const res = await this.state.commitPut({
          key, version, size: meta.size, sha256, contentType: meta.contentType, metadata: meta.metadata, lastModified: meta.lastModified,
          acked: [{ provider: p, version, etag: meta.etag }], owed: plan.targets.filter((t) => t !== p), onlyIfUnknown: true,
        });
        if (res.entries.length > 0) this.events.emit('owed', res.entries);
        const now = await this.state.lookup(key);
        if (now.state !== 'live') return undefined;
        return now;
      });
    }
    if (unreachable > 0) {
      throw new ProviderUnavailableError(`${key} is not in the catalog and ${unreachable} provider(s) could not be asked whether they hold it`, { provider: this.provider, key, cause: failure });
    }
    return undefined;
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

  private store(p: string): BlobStore {
    const s = this.stores.get(p);
    if (!s) throw new ProviderUnavailableError(`provider ${p} is not configured`, { provider: p });
    return s;
  }

  /** Calls a provider, feeding latency and outcome to the health tracker. */
  private async call<T>(p: string, fn: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      const v = await fn();
      this.health.record(p, performance.now() - started);
      return v;
    } catch (e) {
      this.health.record(p, performance.now() - started, e);
      throw e;
    }
  }
}

export interface Placement {
  targets: string[];
  writeOrder: string[];
}

type Attempt = { ok: true; value: RouterGetResult } | { ok: false; error: unknown };

function describe(e: unknown): string {
  return isCloudmuxError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
}

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
