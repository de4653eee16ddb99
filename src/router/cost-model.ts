import type { Prices } from '../config/schema.js';

/** Bytes in the GB that cloud price lists bill by (GiB). */
export const BYTES_PER_GB = 1024 ** 3;

export interface CostModelOptions {
  /** The provider cloudmux runs next to: reads from it cost no egress, reads from others cost their egress to it. */
  location?: string;
  /** Months of storage a put is charged for when comparing providers (default 1). */
  storageMonths?: number;
}

/**
 * Dollar cost of operations on each provider, from its price table. Only relative order matters to
 * the router, but the figures are real list-price dollars so status pages can show them.
 */
export class CostModel {
  private readonly prices: Map<string, Prices>;
  private readonly location: string | undefined;
  private readonly months: number;

  constructor(prices: Record<string, Prices>, opts: CostModelOptions = {}) {
    this.prices = new Map(Object.entries(prices));
    this.location = opts.location;
    this.months = opts.storageMonths ?? 1;
  }

  /** Storing `bytes` for the comparison horizon plus one class-A request. */
  putCost(provider: string, bytes: number): number {
    const p = this.get(provider);
    return (bytes / BYTES_PER_GB) * p.storageGbMonth * this.months + p.classAPer1k / 1000;
  }

  /** Reading `bytes` from `provider` to where cloudmux runs: egress plus one class-B request. */
  readCost(provider: string, bytes: number): number {
    const p = this.get(provider);
    return (bytes / BYTES_PER_GB) * this.egressPerGb(provider, this.location) + p.classBPer1k / 1000;
  }

  /** Copying `bytes` from one provider to another: source egress, a read there and a write at the destination. */
  transferCost(from: string, to: string, bytes: number): number {
    return (bytes / BYTES_PER_GB) * this.egressPerGb(from, to) + this.get(from).classBPer1k / 1000 + this.get(to).classAPer1k / 1000;
  }

  /** $ per GB leaving `from` for `to` (a provider name) or the internet (undefined). Same place is free. */
  egressPerGb(from: string, to: string | undefined): number {
    if (to !== undefined && to === from) return 0;
    const p = this.get(from);
    return (to !== undefined ? p.egressToGb[to] : undefined) ?? p.egressInternetGb;
  }

  has(provider: string): boolean {
    return this.prices.has(provider);
  }

  private get(provider: string): Prices {
    const p = this.prices.get(provider);
    if (!p) return FREE;
    return p;
  }
}

const FREE: Prices = { storageGbMonth: 0, egressInternetGb: 0, egressToGb: {}, classAPer1k: 0, classBPer1k: 0 };
