import type { MeasuredOp } from '../layers/instrumented.js';
import type { CostModel } from '../router/cost-model.js';
import { BYTES_PER_GB, SECONDS_PER_MONTH } from '../router/cost-model.js';
import type { PolicySet } from '../router/policy.js';
import type { StateStore } from '../state/types.js';

/** Modelled dollars of one provider or prefix. */
export interface SpendLine {
  /** Storage run rate: $ per month for what is stored now. */
  storagePerMonth: number;
  /** Bytes stored now (base copies and copies left by reads). */
  storedBytes: number;
  /** $ of egress (and retrieval fees) for the operations observed since `since`. */
  egress: number;
  /** $ of requests observed since `since`. */
  requests: number;
}

export interface SpendReport {
  /** Observed spend counts from here. */
  since: Date;
  byProvider: Record<string, SpendLine>;
  byPrefix: Record<string, SpendLine>;
  /** Sums over providers (what this process's own operations cost, plus storage). */
  total: SpendLine;
  /** Why storage is missing, when the state store could not say. */
  storageError?: string;
}

/** Operations billed as class A (writes, listings) and class B (reads); deletes are free. */
const CLASS_A: ReadonlySet<MeasuredOp> = new Set(['put', 'copy', 'list', 'updateMetadata']);
const CLASS_B: ReadonlySet<MeasuredOp> = new Set(['get', 'head']);
/** Outcomes of requests that never reached the provider. */
const NOT_SENT = new Set(['ProviderUnavailable', 'Aborted']);

/**
 * What the operations a process observes and the bytes the catalog holds cost, by the router's
 * price table ({@link CostModel}): per provider, and per placement-policy prefix where the
 * operation's key is known (copies and deletes of the replication worker). Storage is a run
 * rate from the catalog (bytes held now × $/GB-month), egress and requests accumulate from
 * what was observed. A model, not a bill: list prices, no free tiers or discounts (docs/cost.md).
 */
export class SpendMeter {
  readonly since = new Date();
  private readonly providers = new Map<string, { egress: number; requests: number }>();
  private readonly prefixes = new Map<string, { egress: number; requests: number }>();

  /** `model`: the price table and policies to price with (a function, so a daemon's config reload is followed). */
  constructor(private readonly model: () => { cost: CostModel; policies: PolicySet }) {}

  private get cost(): CostModel {
    return this.model().cost;
  }

  private get policies(): PolicySet {
    return this.model().policies;
  }

  /** One provider operation (an instrumentation sample): its request and, for a get body, the egress to where this process runs. */
  observeOperation(provider: string, s: { op: MeasuredOp; outcome: string; bytes?: number }): void {
    if (NOT_SENT.has(s.outcome)) return;
    const line = this.line(this.providers, provider);
    if (CLASS_A.has(s.op)) line.requests += this.cost.writeRequest(provider);
    else if (CLASS_B.has(s.op)) line.requests += this.cost.readRequest(provider);
    else if (s.op === 'getBody' && s.bytes) line.egress += this.cost.readCost(provider, s.bytes) - this.cost.readRequest(provider);
  }

  /**
   * A replica copied from `source` to `dest` (the replication worker), attributed to the key's
   * prefix and priced provider to provider. Per provider, the same copy shows as its observed
   * operations (the get body priced as egress to this process, through which it streamed).
   */
  observeCopy(key: string, source: string, dest: string, bytes: number): void {
    const gb = bytes / BYTES_PER_GB;
    const p = this.line(this.prefixes, this.policies.for(key).prefix);
    p.egress += gb * (this.cost.egressPerGb(source, dest) + this.cost.retrievalPerGb(source));
    p.requests += this.cost.readRequest(source) + this.cost.writeRequest(dest);
  }

  /** The report: observed spend so far, storage from `state` now. */
  async report(state: StateStore): Promise<SpendReport> {
    const zero = (): SpendLine => ({ storagePerMonth: 0, storedBytes: 0, egress: 0, requests: 0 });
    const byProvider: Record<string, SpendLine> = {};
    const byPrefix: Record<string, SpendLine> = {};
    for (const [p, l] of this.providers) byProvider[p] = { ...zero(), ...l };
    for (const [p, l] of this.prefixes) byPrefix[p] = { ...zero(), ...l };
    let storageError: string | undefined;
    try {
      const rows = state.storedBytes ? await state.storedBytes(this.policies.all().map((p) => p.prefix)) : [];
      for (const r of rows) {
        const perMonth = this.cost.storageCost(r.provider, r.bytes, SECONDS_PER_MONTH);
        for (const line of [(byProvider[r.provider] ??= zero()), (byPrefix[r.prefix] ??= zero())]) {
          line.storagePerMonth += perMonth;
          line.storedBytes += r.bytes;
        }
      }
    } catch (e) {
      storageError = e instanceof Error ? e.message : String(e);
    }
    const total = zero();
    for (const l of Object.values(byProvider)) {
      total.storagePerMonth += l.storagePerMonth;
      total.storedBytes += l.storedBytes;
      total.egress += l.egress;
      total.requests += l.requests;
    }
    return { since: this.since, byProvider, byPrefix, total, ...(storageError ? { storageError } : {}) };
  }

  private line(m: Map<string, { egress: number; requests: number }>, k: string): { egress: number; requests: number } {
    let l = m.get(k);
    if (!l) m.set(k, (l = { egress: 0, requests: 0 }));
    return l;
  }
}
