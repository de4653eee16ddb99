import { ProviderUnavailableError } from '../core/index.js';
import type { BlobStore, OpClass } from '../core/index.js';
import type { CostModel } from './cost-model.js';
import type { HealthTracker } from './health-tracker.js';
import type { PlacementPolicy } from './policy.js';

export interface Placement {
  targets: string[];
  writeOrder: string[];
}

/**
 * The router's providers: the stores by name, and the placement rules over them — where a new
 * object goes and which replica a read tries first, by health, cost and weight. Every provider
 * call goes through {@link ProviderSet.call}, which feeds the health tracker.
 */
export class ProviderSet {
  constructor(
    readonly stores: ReadonlyMap<string, BlobStore>,
    private readonly weights: ReadonlyMap<string, number>,
    readonly order: readonly string[],
    readonly health: HealthTracker,
    private readonly cost: CostModel,
  ) {}

  has(p: string): boolean {
    return this.stores.has(p);
  }

  /**
   * Where a new object goes: `targets` (N providers: pins first, then the cheapest by health) and
   * `writeOrder` (providers to write synchronously, best first, then spares for failover). With
   * `from` (where the writer is: a provider name or `cloud:region`), the upload's egress counts too.
   */
  placement(policy: PlacementPolicy, size: number, from?: string): Placement {
    const rank = (p: string): number => this.health.rank(p);
    const put = (p: string): number => (from === undefined ? this.cost.putCost(p, size) : this.cost.putCostFrom(p, size, from));
    const byCost = (a: string, b: string): number =>
      rank(a) - rank(b) || put(a) - put(b) || (this.weights.get(b)! - this.weights.get(a)!) || this.order.indexOf(a) - this.order.indexOf(b);
    const eligible = policy.providers.filter((p) => this.stores.has(p));
    const others = eligible.filter((p) => !policy.pin.includes(p)).sort(byCost);
    const targets = [...policy.pin, ...others].slice(0, policy.replicas);
    const live = (p: string): boolean => rank(p) < 2;
    const pinnedFirst = (a: string, b: string): number => rank(a) - rank(b) || Number(policy.pin.includes(b)) - Number(policy.pin.includes(a)) || byCost(a, b);
    const writeOrder = [...targets.filter(live).sort(pinnedFirst), ...eligible.filter((p) => !targets.includes(p) && live(p)).sort(byCost)];
    return { targets, writeOrder };
  }

  /**
   * Replicas in the order reads should try them; down providers are left out. `from` is where the
   * reader is (a provider name or `cloud:region`; default: the cost model's location).
   */
  readOrder(policy: PlacementPolicy, holders: string[], size: number, from?: string): string[] {
    const usable = holders.filter((p) => this.stores.has(p) && this.health.state(p) !== 'down');
    const latency = (p: string): number => this.health.percentile(p, 50) ?? 0;
    const rank = (p: string): number => this.health.rank(p);
    const cost = (p: string): number => (from === undefined ? this.cost.readCost(p, size) : this.cost.readCostTo(p, size, from));
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

  store(p: string): BlobStore {
    const s = this.stores.get(p);
    if (!s) throw new ProviderUnavailableError(`provider ${p} is not configured`, { provider: p });
    return s;
  }

  /** Calls a provider, feeding latency and outcome to the health tracker (`op`: what kind of call, default read). */
  async call<T>(p: string, fn: () => Promise<T>, op: OpClass = 'read'): Promise<T> {
    const started = performance.now();
    try {
      const v = await fn();
      this.health.record(p, performance.now() - started);
      return v;
    } catch (e) {
      this.health.record(p, performance.now() - started, e, op);
      throw e;
    }
  }
}
