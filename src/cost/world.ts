import type { CloudmuxConfig, PolicyConfig, Prices } from '../config/schema.js';
import { InvalidConfigError } from '../core/errors.js';
import { MemoryStore } from '../../providers/memory/store.js';
import { BYTES_PER_GB, CostModel } from '../router/cost-model.js';
import { HealthTracker } from '../router/health-tracker.js';
import { providerLocation } from '../router/locations.js';
import { PolicySet, type PlacementPolicy } from '../router/policy.js';
import { ProviderSet } from '../router/provider-set.js';
import type { TtlPricing } from './adaptive-ttl.js';
import { EGRESS, REQUESTS, RETRIEVAL, STORAGE, type CostLedger } from './ledger.js';

/** A provider as the simulator needs it. */
export interface SimProvider {
  name: string;
  prices: Prices;
  /** `cloud:region`; required in a simulation. */
  location: string;
  weight?: number;
}

export interface SimWorldOptions {
  providers: SimProvider[];
  policies?: Partial<PolicyConfig>[];
}

/** A trace event with its location and placement policy interned as numbers. */
export interface SimEvent {
  time: number;
  op: 'get' | 'put' | 'delete';
  key: string;
  size: number;
  /** Object id ({@link SimWorld.objectId}): policies index their state by it. */
  id: number;
  /** Location id ({@link SimWorld.location}). */
  loc: number;
  /** Index of the key's placement policy ({@link SimWorld.policyIndex}). */
  policy: number;
}

/**
 * The router's own placement and cost code, instantiated over memory providers, with a health
 * tracker on the simulated clock (every provider healthy: the simulator studies cost, not outages).
 * Policies ask it where objects go ({@link ProviderSet.placement}), which replica serves a reader
 * ({@link ProviderSet.readOrder} from the reader's location) and what each step costs
 * ({@link CostModel}) — the calls the router makes. Answers are memoised on exactly what they
 * depend on (policy, holders, size, location), and per-(provider, location) prices are looked up
 * once, so a million requests take seconds. Providers and locations are numbered for speed.
 */
export class SimWorld implements TtlPricing {
  readonly cost: CostModel;
  readonly providerSet: ProviderSet;
  readonly policySet: PolicySet;
  readonly names: readonly string[];
  readonly prefixes: readonly string[];
  private readonly policyList: readonly PlacementPolicy[];
  private readonly providerId = new Map<string, number>();
  private readonly locationId = new Map<string, number>();
  private readonly locationNames: string[] = [];
  /** Location id of each provider. */
  readonly providerLoc: Int32Array;
  /** Per location: the provider that takes copies left by reads there (cheapest storage), or -1. */
  private readonly cacheAt: number[] = [];
  /** Per provider, per location id: egress $/GB. */
  private readonly egressTo: number[][];
  /** Per location id, per provider: $/GB of an upload from there. */
  private readonly uploadFrom: number[][] = [];
  readonly storagePerByteSecond: Float64Array;
  readonly minSeconds: Float64Array;
  readonly readRequest: Float64Array;
  readonly writeRequest: Float64Array;
  readonly retrievalPerGb: Float64Array;
  /** size → (policy, location, holders) → answer. */
  private readonly sourceMemo = new Map<number, Map<number, number>>();
  /** size → (policy, writer location) → answer. */
  private readonly placementMemo = new Map<number, Map<number, number[]>>();
  private ready = false;
  private readonly objectIds = new Map<string, number>();
  private readonly objectPolicy: number[] = [];

  constructor(opts: SimWorldOptions) {
    if (opts.providers.length === 0) throw new InvalidConfigError('a simulation needs at least one provider');
    if (opts.providers.length > 30) throw new InvalidConfigError('a simulation takes at most 30 providers');
    this.names = opts.providers.map((p) => p.name);
    this.names.forEach((n, i) => this.providerId.set(n, i));
    const prices = Object.fromEntries(opts.providers.map((p) => [p.name, p.prices]));
    this.cost = new CostModel(prices, { locations: Object.fromEntries(opts.providers.map((p) => [p.name, p.location])) });
    const stores = new Map(opts.providers.map((p) => [p.name, new MemoryStore({ name: p.name })]));
    const weights = new Map(opts.providers.map((p) => [p.name, p.weight ?? 1]));
    const health = new HealthTracker(this.names, { probeIntervalMs: 0, now: () => 0 });
    this.providerSet = new ProviderSet(stores, weights, this.names, health, this.cost);
    this.policySet = new PolicySet(opts.policies ?? [], [...this.names]);
    this.policyList = this.policySet.all();
    this.prefixes = this.policyList.map((p) => p.prefix);
    const n = this.names.length;
    const per = (f: (name: string) => number): Float64Array => Float64Array.from(this.names, f);
    this.storagePerByteSecond = per((p) => this.cost.storagePerByteSecond(p));
    this.minSeconds = per((p) => this.cost.minStorageSeconds(p));
    this.readRequest = per((p) => this.cost.readRequest(p));
    this.writeRequest = per((p) => this.cost.writeRequest(p));
    this.retrievalPerGb = per((p) => this.cost.retrievalPerGb(p));
    this.egressTo = Array.from({ length: n }, () => []);
    this.providerLoc = Int32Array.from(opts.providers, (p) => this.location(p.location));
    // Cache providers are known only now; fix the rows of locations interned above.
    this.cacheAt.fill(-1);
    opts.providers.forEach((p, i) => {
      const l = this.providerLoc[i]!;
      const cur = this.cacheAt[l]!;
      if (cur < 0 || p.prices.storageGbMonth < opts.providers[cur]!.prices.storageGbMonth) this.cacheAt[l] = i;
    });
    for (let l = 0; l < this.locationNames.length; l++) this.uploadFrom[l] = this.uploadRow(l);
    this.ready = true;
  }

  /** From a cloudmux config: every provider needs a location (`location:`, or a cloud URL and `region`). */
  static fromConfig(cfg: CloudmuxConfig): SimWorld {
    const providers = cfg.providers.map((p, i) => {
      const location = providerLocation(p);
      if (location === undefined) throw new InvalidConfigError(`providers[${i}] (${p.name}): a simulation needs each provider's location; add location: cloud:region (e.g. aws:us-east-1)`);
      return { name: p.name, prices: p.prices, location, weight: p.weight };
    });
    return new SimWorld({ providers, policies: cfg.policies });
  }

  /** The id of a location (`cloud:region`), numbering it on first sight. */
  location(name: string): number {
    let id = this.locationId.get(name);
    if (id === undefined) {
      id = this.locationNames.length;
      this.locationId.set(name, id);
      this.locationNames.push(name);
      this.names.forEach((p, i) => (this.egressTo[i]![id!] = this.cost.egressPerGb(p, name)));
      this.cacheAt[id] = -1;
      if (this.ready) this.uploadFrom[id] = this.uploadRow(id);
    }
    return id;
  }

  locationName(id: number): string {
    return this.locationNames[id]!;
  }

  /** A number for `key`, the same for every event of it (one map look-up per event, not one per policy). */
  objectId(key: string): number {
    let id = this.objectIds.get(key);
    if (id === undefined) {
      id = this.objectIds.size;
      this.objectIds.set(key, id);
      this.objectPolicy[id] = this.policyIndex(key);
    }
    return id;
  }

  /** {@link policyIndex} of the key numbered `id`, remembered. */
  policyOf(id: number): number {
    return this.objectPolicy[id]!;
  }

  /** Index of the placement policy (longest matching prefix) for `key`. */
  policyIndex(key: string): number {
    return this.policyList.indexOf(this.policySet.for(key));
  }

  writeQuorum(policy: number): number {
    return this.policyList[policy]!.writeQuorum;
  }

  /** Where the router's placement puts a new object: its N target providers. With `from`, a writer's location counts (upload egress). */
  placement(policy: number, size: number, from = -1): number[] {
    const inner = policy * 2 ** 20 + (from + 1);
    let t = this.placementMemo.get(size)?.get(inner);
    if (!t) {
      const where = from < 0 ? undefined : this.locationNames[from];
      t = this.providerSet.placement(this.policyList[policy]!, size, where).targets.map((p) => this.providerId.get(p)!);
      this.remember(this.placementMemo, size, inner, t);
    }
    return t;
  }

  /** The holder the router reads from (the first of its read order) for a reader at location `loc`. */
  source(policy: number, holders: readonly number[], size: number, loc: number): number {
    if (holders.length === 1) return holders[0]!;
    let mask = 0;
    for (const h of holders) mask |= 1 << h;
    // policy < 2^10 and loc < 2^12 keep the key exact below 2^52; beyond that, no memo.
    const inner = policy < 1024 && loc < 4096 ? (policy * 4096 + loc) * 2 ** 30 + mask : -1;
    let s = inner < 0 ? undefined : this.sourceMemo.get(size)?.get(inner);
    if (s === undefined) {
      const order = this.providerSet.readOrder(this.policyList[policy]!, holders.map((h) => this.names[h]!), size, this.locationNames[loc]);
      s = this.providerId.get(order[0]!)!;
      if (inner >= 0) this.remember(this.sourceMemo, size, inner, s);
    }
    return s;
  }

  /** The provider that takes copies left by reads at location `loc`, or -1. */
  cacheProviderAt(loc: number): number {
    return this.cacheAt[loc]!;
  }

  egressPerGb(provider: number, loc: number): number {
    return this.egressTo[provider]![loc]!;
  }

  /** Egress $/GB from provider `source` to provider `dest`'s location (the learner's view, {@link TtlPricing}). */
  egressBetween(source: number, dest: number): number {
    return this.egressTo[source]![this.providerLoc[dest]!]!;
  }

  // ---- charging: every dollar a policy spends goes through these, so all policies are billed alike ----

  /** A client at location `from` uploads `bytes` to `target`: egress out of the writer's cloud and one write request. */
  chargeUpload(ledger: CostLedger, prefix: number, from: number, target: number, bytes: number): void {
    ledger.add(EGRESS, target, prefix, (bytes / BYTES_PER_GB) * this.uploadFrom[from]![target]!);
    ledger.add(REQUESTS, target, prefix, this.writeRequest[target]!);
  }

  /** `source` serves `bytes` to a reader at location `loc`: egress, retrieval fee, one read request. */
  chargeRead(ledger: CostLedger, prefix: number, source: number, loc: number, bytes: number): void {
    const gb = bytes / BYTES_PER_GB;
    ledger.add(EGRESS, source, prefix, gb * this.egressTo[source]![loc]!);
    ledger.add(RETRIEVAL, source, prefix, gb * this.retrievalPerGb[source]!);
    ledger.add(REQUESTS, source, prefix, this.readRequest[source]!);
  }

  /** $ of {@link chargeRead}, without charging. */
  readCost(source: number, loc: number, bytes: number): number {
    return (bytes / BYTES_PER_GB) * (this.egressTo[source]![loc]! + this.retrievalPerGb[source]!) + this.readRequest[source]!;
  }

  /** A copy of `bytes` from provider `source` to provider `dest` (a replica the replication worker makes). */
  chargeCopy(ledger: CostLedger, prefix: number, source: number, dest: number, bytes: number): void {
    this.chargeRead(ledger, prefix, source, this.providerLoc[dest]!, bytes);
    ledger.add(REQUESTS, dest, prefix, this.writeRequest[dest]!);
  }

  /** A write request on `provider` (a cached copy written next to a read). */
  chargeWrite(ledger: CostLedger, prefix: number, provider: number): void {
    ledger.add(REQUESTS, provider, prefix, this.writeRequest[provider]!);
  }

  /** Storage of one copy from `since` to `until`; `ended`: deleted or evicted then, so the minimum duration applies. */
  chargeStorage(ledger: CostLedger, prefix: number, provider: number, bytes: number, since: number, until: number, ended: boolean): void {
    const held = Math.max(0, until - since);
    const billed = ended ? Math.max(held, this.minSeconds[provider]!) : held;
    ledger.add(STORAGE, provider, prefix, bytes * this.storagePerByteSecond[provider]! * billed);
  }

  private uploadRow(loc: number): number[] {
    const near = this.cacheAt[loc]!;
    return this.names.map((p) => (near < 0 ? 0 : this.cost.egressPerGb(this.names[near]!, p)));
  }

  private remember<V>(memo: Map<number, Map<number, V>>, size: number, key: number, value: V): void {
    let inner = memo.get(size);
    if (!inner) {
      if (memo.size >= 500_000) memo.clear();
      memo.set(size, (inner = new Map()));
    }
    inner.set(key, value);
  }
}
