import type { EventEmitter } from 'node:events';
import { IntegrityError, NotSupportedError, describeError, isCloudmuxError } from '../core/index.js';
import type { BlobStore, GetOptions, ObjectMeta } from '../core/index.js';
import { AdaptiveTtl, type AdaptiveTtlOptions } from '../cost/adaptive-ttl.js';
import { copyObject } from '../replication/copier.js';
import type { AccessStat, CachedCopy, CachedCopyState } from '../state/cached-copies.js';
import type { CatalogObject, Replica } from '../state/types.js';
import type { CostModel } from './cost-model.js';
import { discard } from './fan-out.js';
import type { PlacementPolicy } from './policy.js';
import type { ProviderSet } from './provider-set.js';
import { storedSha256 } from './reconcile.js';
import type { RouterEvents, RouterGetResult, RouterOptions } from './router-types.js';

/** What a TTL rule sees when a read at the router's location has no base copy there. */
export interface CopyTtlInput {
  key: string;
  /** The base copy the read would otherwise be served from. */
  source: string;
  /** The provider at the router's location that would hold the copy. */
  cache: string;
  size: number;
  /** The catalog version being read. */
  version: number;
  /** Router clock, ms. */
  now: number;
  /** This version's reads at this location before this one (undefined: the first). */
  previous: AccessStat | undefined;
}

/** Seconds a copy lives after a read (0: leave none). */
export type CopyTtlRule = (input: CopyTtlInput) => number;

export interface CopyOnReadOptions {
  /**
   * How long a copy lives after each read of it: `t-even` (default: the pair's break-even time,
   * egress $/GB from the source ÷ the cache's storage $/GB-second), `adaptive` (the simulator's
   * learner, {@link AdaptiveTtl}, fed every read at this location; it learns in this process),
   * a fixed number of seconds, or a rule of your own.
   */
  ttl?: 't-even' | 'adaptive' | number | CopyTtlRule;
  /** The provider that takes copies (default: the cheapest-storage provider at the router's location). */
  cacheProvider?: string;
  /** Where copies are stored on the cache provider: `<prefix>v<version>/<key>` (default `cloudmux-cache/`). */
  keyPrefix?: string;
  /** Clock in ms (tests inject one). */
  now?: () => number;
  /** Copies evicted per call of {@link CopyOnRead.evictExpired} (default 100). */
  evictBatch?: number;
}

/**
 * The simulator's adaptive learner as a TTL rule: providers are numbered as the router lists them,
 * keys as first seen (the numbering restarts past a million keys; versions, unique across keys,
 * keep a reused number from mixing two objects' statistics).
 */
export function adaptiveRule(cost: CostModel, providers: readonly string[], opts: AdaptiveTtlOptions = {}): CopyTtlRule {
  const index = new Map(providers.map((p, i) => [p, i]));
  const per = (f: (p: string) => number): number[] => providers.map(f);
  const learner = new AdaptiveTtl({
    egressBetween: (s, c) => cost.egressPerGb(providers[s]!, cost.locationOf(providers[c]!) ?? providers[c]!),
    storagePerByteSecond: per((p) => cost.storagePerByteSecond(p)),
    readRequest: per((p) => cost.readRequest(p)),
    writeRequest: per((p) => cost.writeRequest(p)),
    retrievalPerGb: per((p) => cost.retrievalPerGb(p)),
  }, opts);
  const ids = new Map<string, number>();
  return (i) => {
    let id = ids.get(i.key);
    if (id === undefined) {
      if (ids.size >= 1_000_000) ids.clear();
      ids.set(i.key, (id = ids.size));
    }
    return learner.observe(id, i.version, index.get(i.source)!, index.get(i.cache)!, i.size, i.now / 1000);
  };
}

/** The cache key of a copy: versioned, so a copy's bytes are of one version and can never be served for another. */
export function cachedCopyKey(prefix: string, version: number, key: string): string {
  return `${prefix}v${version}/${key}`;
}

/**
 * Copy on read for one router at one location: a read whose key has no base copy at the router's
 * location copies the object to the provider there (the cache) and serves it from that copy,
 * which lives `ttl` after each read of it there; later reads there are served from it and extend
 * it. Routers at other locations sharing the state see the same records.
 *
 * # Contract
 * - Never stale: a copy is stored under a key naming its catalog version and recorded with that
 *   version; a read uses it only when that is the version it just looked up in the catalog (the
 *   same check that picks base holders). An overwrite anywhere makes every older copy unusable at
 *   once, and evictable.
 * - The copy is recorded before its bytes are written and again after (the later expiry wins), so
 *   neither a crash mid-copy nor an eviction racing the copy leaves bytes nobody will evict.
 * - Eviction ({@link evictExpired}, run by the replication worker) takes expired and superseded
 *   copies out of the record, then deletes their bytes — only ever the versioned cache key, never a
 *   key that a base copy lives under.
 * - Any failure of the copy path (cache provider down, copy failed) falls back to the normal read;
 *   it never fails a read that a base copy could serve.
 */
export class CopyOnRead {
  readonly cache: string | undefined;
  private readonly prefix: string;
  private readonly now: () => number;
  private readonly rule: CopyTtlRule;
  private readonly batch: number;
  /** Copies made, reads served from copies, copies evicted (for metrics and tests). */
  readonly counters = { created: 0, hits: 0, evicted: 0, failed: 0 };
  /** Why the copy path last fell back to a normal read (for status pages). */
  lastError: string | undefined;

  constructor(
    private readonly state: CachedCopyState,
    private readonly providers: ProviderSet,
    private readonly cost: CostModel,
    /** Where the router runs (`cloud:region` or a provider name). */
    private readonly location: string,
    private readonly events: EventEmitter<RouterEvents>,
    private readonly metaOf: (object: CatalogObject, fromProvider?: ObjectMeta) => ObjectMeta,
    opts: CopyOnReadOptions = {},
  ) {
    this.prefix = opts.keyPrefix ?? 'cloudmux-cache/';
    this.now = opts.now ?? Date.now;
    this.batch = opts.evictBatch ?? 100;
    this.cache = opts.cacheProvider ?? this.providerAt(location);
    const ttl = opts.ttl ?? 't-even';
    this.rule = typeof ttl === 'function' ? ttl
      : ttl === 't-even' ? (i) => this.tEven(i.source, i.cache)
      : ttl === 'adaptive' ? adaptiveRule(cost, providers.order)
      : () => ttl;
  }

  /** The break-even time of a copy on `cache` of bytes from `source`, in seconds. */
  tEven(source: string, cache: string): number {
    const egress = this.cost.egressPerGb(source, this.cost.locationOf(cache) ?? cache);
    const perGbSecond = this.cost.storagePerByteSecond(cache) * 2 ** 30;
    if (egress === 0) return 0;
    return perGbSecond === 0 ? Number.MAX_SAFE_INTEGER / 1000 : egress / perGbSecond;
  }

  /**
   * Serves a read of the catalog's current version from a copy at the router's location, making
   * the copy first when the TTL rule says so. Undefined: serve it the normal way (a base copy is
   * local, no cache provider, the rule says no copy, or the copy path failed).
   */
  async read(key: string, object: CatalogObject, holders: Replica[], opts: GetOptions, policy: PlacementPolicy): Promise<RouterGetResult | undefined> {
    const cache = this.cache;
    if (cache === undefined || holders.some((h) => h.provider === cache) || this.providers.health.state(cache) === 'down') return undefined;
    try {
      const now = Math.floor(this.now());
      const previous = await this.state.recordRead(key, this.location, object.version, now);
      const source = this.providers.readOrder(policy, holders.map((h) => h.provider), object.size)[0];
      const ttlMs = source === undefined ? 0 : Math.round(Math.max(0, this.rule({ key, source, cache, size: object.size, version: object.version, now, previous })) * 1000);
      const recorded = await this.state.cachedCopy(key, cache, object.version);
      if (recorded && recorded.expiresAt > now) {
        const hit = await this.readCopy(key, object, cache, opts);
        if (hit) {
          this.counters.hits++;
          if (ttlMs > 0) await this.state.extendCachedCopy(key, cache, object.version, now + ttlMs);
          return hit;
        }
      }
      if (source === undefined || !(ttlMs > 0)) return undefined;
      const copy: CachedCopy = { key, provider: cache, version: object.version, expiresAt: Math.min(now + ttlMs, Number.MAX_SAFE_INTEGER) };
      await this.state.keepCachedCopy(copy);
      const copyKey = this.copyKey(object.version, key);
      const done = await this.providers.call(cache, () => copyObject(this.providers.store(source), key, this.providers.store(cache), copyKey, { signal: opts.signal, verify: 'sha256' }), 'write');
      if (object.sha256 && done.sha256 !== object.sha256) {
        // The source was overwritten while we copied: these bytes are not this version's. Never keep them under its key.
        await this.providers.store(cache).delete(copyKey).catch(() => {});
        throw new IntegrityError(`${source} held other bytes than version ${object.version} while they were copied`, { provider: source, key });
      }
      await this.state.keepCachedCopy(copy);
      this.counters.created++;
      return await this.readCopy(key, object, cache, opts);
    } catch (e) {
      if (opts.signal?.aborted) throw e;
      this.counters.failed++;
      this.lastError = describeError(e);
      return undefined;
    }
  }

  /**
   * Takes expired and superseded copies out of the record and deletes their bytes; a delete that
   * fails is recorded again (expired) for the next round. Returns how many were evicted.
   */
  async evictExpired(): Promise<number> {
    const now = Math.floor(this.now());
    const due = await this.state.takeEvictable(now, this.batch);
    let evicted = 0;
    for (const c of due) {
      try {
        const store: BlobStore = this.providers.store(c.provider);
        await this.providers.call(c.provider, () => store.delete(this.copyKey(c.version, c.key)), 'write');
        evicted++;
      } catch (e) {
        if (!isCloudmuxError(e, 'NotFound')) {
          await this.state.keepCachedCopy({ ...c, expiresAt: Math.min(c.expiresAt, now) });
          this.events.emit('repair', { key: c.key, provider: c.provider, reason: `cached copy not evicted: ${describeError(e)}` });
        } else evicted++;
      }
    }
    this.counters.evicted += evicted;
    return evicted;
  }

  private copyKey(version: number, key: string): string {
    return cachedCopyKey(this.prefix, version, key);
  }

  /** Reads the copy, checking its bytes are the catalog's (size and SHA-256) before they flow. */
  private async readCopy(key: string, object: CatalogObject, cache: string, opts: GetOptions): Promise<RouterGetResult | undefined> {
    let res;
    try {
      res = await this.providers.call(cache, () => this.providers.store(cache).get(this.copyKey(object.version, key), opts));
    } catch (e) {
      if (opts.signal?.aborted) throw e;
      return undefined;
    }
    const sha = storedSha256(res.meta);
    if ((object.sha256 && sha && sha !== object.sha256) || res.meta.size !== object.size) {
      discard(res.body);
      return undefined;
    }
    this.events.emit('read', { key, provider: cache, hedged: false });
    const value: RouterGetResult = { meta: this.metaOf(object, res.meta), body: res.body, provider: cache, cached: true };
    if (res.range) value.range = res.range;
    return value;
  }

  /** The provider at `location` with the cheapest storage (a provider name is itself). */
  private providerAt(location: string): string | undefined {
    if (!location.includes(':')) return this.providers.has(location) ? location : undefined;
    const here = this.providers.order.filter((p) => this.cost.locationOf(p) === location);
    return here.sort((a, b) => this.cost.storagePerByteSecond(a) - this.cost.storagePerByteSecond(b))[0];
  }
}

/** The router's copy on read from its options (undefined when off); NotSupported without a location or a state that keeps copies. */
export function openCopyOnRead(opts: RouterOptions, providers: ProviderSet, cost: CostModel, events: EventEmitter<RouterEvents>, metaOf: (o: CatalogObject, m?: ObjectMeta) => ObjectMeta): CopyOnRead | undefined {
  if (!opts.copyOnRead) return undefined;
  if (opts.location === undefined) throw new NotSupportedError('copy on read needs the router\'s location');
  const state = opts.state.cachedCopies;
  if (!state) throw new NotSupportedError(`copy on read needs a state store that keeps cached copies (${opts.state.kind} does not)`);
  return new CopyOnRead(state, providers, cost, opts.location, events, metaOf, opts.copyOnRead === true ? {} : opts.copyOnRead);
}
