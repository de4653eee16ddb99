import type { Prices } from '../config/schema.js';

/** Bytes in the GB that cloud price lists bill by (GiB). */
export const BYTES_PER_GB = 1024 ** 3;

/** Seconds in the month storage prices are quoted per (AWS bills 730 hours a month; so do we). */
export const SECONDS_PER_MONTH = 730 * 3600;

export interface CostModelOptions {
  /**
   * Where cloudmux runs: a provider name (reads from it cost no egress) or a location
   * `cloud:region` (reads from a provider at that location cost no egress).
   */
  location?: string;
  /** Months of storage a put is charged for when comparing providers (default 1). */
  storageMonths?: number;
  /** Each provider's location, `cloud:region`. Providers without one are only "near" themselves. */
  locations?: Record<string, string>;
}

/**
 * Dollar cost of operations on each provider, from its price table. Only relative order matters to
 * the router, but the figures are real list-price dollars so status pages can show them.
 *
 * Egress from provider P to a place X (a provider or a location `cloud:region`): free when X is P
 * or at P's location; else `egressToGb[X]` when P's price table names X; else
 * `egressInterRegionGb` when X is in P's cloud (and P has that figure); else `egressInternetGb`.
 */
export class CostModel {
  private readonly prices: Map<string, Prices>;
  private readonly location: string | undefined;
  private readonly months: number;
  private readonly locations: Map<string, string>;

  constructor(prices: Record<string, Prices>, opts: CostModelOptions = {}) {
    this.prices = new Map(Object.entries(prices));
    this.location = opts.location;
    this.months = opts.storageMonths ?? 1;
    this.locations = new Map(Object.entries(opts.locations ?? {}));
  }

  /** Storing `bytes` for the comparison horizon plus one class-A request. */
  putCost(provider: string, bytes: number): number {
    const p = this.get(provider);
    return (bytes / BYTES_PER_GB) * p.storageGbMonth * this.months + p.classAPer1k / 1000;
  }

  /**
   * {@link putCost} plus the egress of uploading `bytes` from `from` (a provider name or a location,
   * priced as leaving the provider there; a location with no provider uploads for free).
   */
  putCostFrom(provider: string, bytes: number, from: string | undefined): number {
    return this.putCost(provider, bytes) + (from === undefined ? 0 : (bytes / BYTES_PER_GB) * this.uploadEgressPerGb(from, provider));
  }

  /** $ per GB of an upload from `from` (a provider name or a location) to `to`, priced as egress of the provider at `from`. */
  uploadEgressPerGb(from: string, to: string): number {
    if (!from.includes(':')) return this.egressPerGb(from, to);
    for (const [p, loc] of this.locations) if (loc === from) return this.egressPerGb(p, to);
    return 0;
  }

  /** Reading `bytes` from `provider` to where cloudmux runs: egress plus one class-B request. */
  readCost(provider: string, bytes: number): number {
    return this.readCostTo(provider, bytes, this.location);
  }

  /** Reading `bytes` from `provider` to `to` (a provider name or a location): egress, retrieval fee and one class-B request. */
  readCostTo(provider: string, bytes: number, to: string | undefined): number {
    const p = this.get(provider);
    return (bytes / BYTES_PER_GB) * (this.egressPerGb(provider, to) + (p.retrievalGb ?? 0)) + p.classBPer1k / 1000;
  }

  /** Copying `bytes` from one provider to another: source egress, a read there and a write at the destination. */
  transferCost(from: string, to: string, bytes: number): number {
    const f = this.get(from);
    return (bytes / BYTES_PER_GB) * (this.egressPerGb(from, to) + (f.retrievalGb ?? 0)) + f.classBPer1k / 1000 + this.get(to).classAPer1k / 1000;
  }

  /** $ per GB leaving `from` for `to` (a provider name or a location `cloud:region`) or the internet (undefined). */
  egressPerGb(from: string, to: string | undefined): number {
    if (to === undefined) return this.get(from).egressInternetGb;
    if (to === from) return 0;
    const here = this.locations.get(from);
    const there = to.includes(':') ? to : this.locations.get(to); // provider names never contain ':'
    if (here !== undefined && here === there) return 0;
    const p = this.get(from);
    const named = p.egressToGb[to];
    if (named !== undefined) return named;
    if (here !== undefined && there !== undefined && cloudOf(here) === cloudOf(there)) return p.egressInterRegionGb ?? p.egressInternetGb;
    return p.egressInternetGb;
  }

  /**
   * Storing `bytes` on `provider` for `seconds`. With `ended` (the copy was deleted, overwritten or
   * evicted) the provider's minimum storage duration applies, as the provider bills it.
   */
  storageCost(provider: string, bytes: number, seconds: number, ended = false): number {
    const p = this.get(provider);
    const billed = ended ? Math.max(seconds, (p.minStorageDays ?? 0) * 86_400) : seconds;
    return (bytes / BYTES_PER_GB) * p.storageGbMonth * (billed / SECONDS_PER_MONTH);
  }

  /** $ per byte-second of storage on `provider`. */
  storagePerByteSecond(provider: string): number {
    return this.get(provider).storageGbMonth / BYTES_PER_GB / SECONDS_PER_MONTH;
  }

  /** Minimum billed storage duration on `provider`, in seconds. */
  minStorageSeconds(provider: string): number {
    return (this.get(provider).minStorageDays ?? 0) * 86_400;
  }

  /** One class-A (write) request on `provider`. */
  writeRequest(provider: string): number {
    return this.get(provider).classAPer1k / 1000;
  }

  /** One class-B (read) request on `provider`. */
  readRequest(provider: string): number {
    return this.get(provider).classBPer1k / 1000;
  }

  /** Retrieval fee, $ per GB read from `provider` (0 for standard classes). */
  retrievalPerGb(provider: string): number {
    return this.get(provider).retrievalGb ?? 0;
  }

  /** The location `cloud:region` of `provider`, if known. */
  locationOf(provider: string): string | undefined {
    return this.locations.get(provider);
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

/** `aws` of `aws:us-east-1`. */
export function cloudOf(location: string): string {
  const i = location.indexOf(':');
  return i < 0 ? location : location.slice(0, i);
}

const FREE: Prices = { storageGbMonth: 0, egressInternetGb: 0, egressToGb: {}, classAPer1k: 0, classBPer1k: 0 };
