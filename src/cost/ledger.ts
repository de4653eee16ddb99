/** Dollars by kind. `total` is their sum. */
export interface CostBreakdown {
  storage: number;
  egress: number;
  requests: number;
  /** Retrieval fees of infrequent-access classes. */
  retrieval: number;
  total: number;
}

/** What a policy did, counted. */
export interface PolicyCounters {
  puts: number;
  gets: number;
  deletes: number;
  /** Reads served by a copy at the reader's location (base or cached). */
  localReads: number;
  /** Reads that crossed locations. */
  remoteReads: number;
  /** Copies left at a reader's location (copy on read). */
  copiesCreated: number;
  /** Cached copies that expired (TTL) before a write or delete ended them. */
  copiesExpired: number;
  /** Gets of keys the trace never put (taken to exist before it began). */
  preexisting: number;
}

/** Kinds of dollars, as indexes into a ledger row. */
export const STORAGE = 0;
export const EGRESS = 1;
export const REQUESTS = 2;
export const RETRIEVAL = 3;
export type CostKind = typeof STORAGE | typeof EGRESS | typeof REQUESTS | typeof RETRIEVAL;

/**
 * The bill of one policy: dollars by kind, by provider and by key prefix (the placement policy's
 * prefix), and counters. Rows are indexed by provider and prefix number (the simulator's ids), so
 * that a million requests cost no allocation here.
 */
export class CostLedger {
  private readonly byProvider: Float64Array;
  private readonly byPrefix: Float64Array;
  readonly counters: PolicyCounters = { puts: 0, gets: 0, deletes: 0, localReads: 0, remoteReads: 0, copiesCreated: 0, copiesExpired: 0, preexisting: 0 };

  constructor(private readonly providers: readonly string[], private readonly prefixes: readonly string[]) {
    this.byProvider = new Float64Array(providers.length * 4);
    this.byPrefix = new Float64Array(prefixes.length * 4);
  }

  add(kind: CostKind, provider: number, prefix: number, dollars: number): void {
    this.byProvider[provider * 4 + kind]! += dollars;
    this.byPrefix[prefix * 4 + kind]! += dollars;
  }

  totals(): CostBreakdown {
    const out = breakdown(new Float64Array(4));
    for (const b of Object.values(this.providerTotals())) for (const k of KINDS) out[k] += b[k];
    out.total = out.storage + out.egress + out.requests + out.retrieval;
    return out;
  }

  providerTotals(): Record<string, CostBreakdown> {
    return Object.fromEntries(this.providers.map((p, i) => [p, breakdown(this.byProvider.subarray(i * 4, i * 4 + 4))]));
  }

  prefixTotals(): Record<string, CostBreakdown> {
    return Object.fromEntries(this.prefixes.map((p, i) => [p, breakdown(this.byPrefix.subarray(i * 4, i * 4 + 4))]));
  }
}

const KINDS = ['storage', 'egress', 'requests', 'retrieval'] as const;

function breakdown(row: Float64Array): CostBreakdown {
  const [storage, egress, requests, retrieval] = [row[STORAGE]!, row[EGRESS]!, row[REQUESTS]!, row[RETRIEVAL]!];
  return { storage, egress, requests, retrieval, total: storage + egress + requests + retrieval };
}
