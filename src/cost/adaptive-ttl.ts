import { BYTES_PER_GB } from '../router/cost-model.js';

/** The prices the learner needs, by provider id (the simulator's {@link SimWorld} provides them; so can a router). */
export interface TtlPricing {
  /** Egress $/GB from provider `source` to provider `cache`'s location. */
  egressBetween(source: number, cache: number): number;
  storagePerByteSecond: ArrayLike<number>;
  readRequest: ArrayLike<number>;
  writeRequest: ArrayLike<number>;
  retrievalPerGb: ArrayLike<number>;
}

export interface AdaptiveTtlOptions {
  /** Reads of one popularity class at one cache before its TTL leaves T_even (default 100). */
  minSamples?: number;
  /** A class's TTL is re-chosen every this many of its reads (default 32). */
  recomputeEvery?: number;
  /** An observation weighs half as much as one this many seconds newer (default 3 days), so the TTL follows a changing workload. */
  halfLifeSeconds?: number;
  /** Candidate TTLs as fractions of the pair's T_even, ascending, starting at 0 (default: 0 and 2^-16 … 2). */
  grid?: number[];
}

const DEFAULT_GRID = [0, ...Array.from({ length: 18 }, (_, k) => 2 ** (k - 16))];

/** Popularity classes: reads of this object version at this cache so far — 1, 2–3, 4–7, 8+. */
const CLASSES = 4;
function classOf(reads: number): number {
  return reads <= 1 ? 0 : reads <= 3 ? 1 : reads <= 7 ? 2 : 3;
}

interface CacheState {
  /**
   * Cost per (popularity class, candidate TTL), row c, column k at index c·K + k, in units of each
   * read's own fetch cost (so pairs with different prices pool their evidence). Each amount is
   * weighted by 2^(time/halfLife), so newer reads weigh more and comparing needs no decay pass.
   */
  readonly costs: Float64Array;
  /** Decisions taken per class. */
  readonly samples: Float64Array;
  /** Chosen TTL per class, as a fraction of T_even. */
  readonly fraction: Float64Array;
  /** Per class, per T_even of a source: decisions waiting for their outcome. */
  readonly pending: Map<number, PendingWindow>[];
}

interface ReadRecord {
  last: number;
  version: number;
  /** Reads of this version at this location so far. */
  reads: number;
  /** The popularity class its last decision was taken in. */
  cls: number;
  state: CacheState;
  /** Storage per T_even of a copy of this object here, in units of its last read's fetch cost. */
  storageUnits: number;
  /** The weight its last commitment was charged with. */
  weight: number;
  /** T_even of the pair its last read was served over. */
  tEven: number;
  /** Where its last decision waits for its outcome (null: it kept no copy, or it settled). */
  window: PendingWindow | null;
  slot: number;
}

/**
 * Decisions of one popularity class at one cache, from sources with one T_even, whose outcome is not
 * known yet (no later read of the object there). Each committed to storage for every candidate T;
 * by `now` only min(T, now − t) of it has been spent. The window keeps, per candidate k, the sums
 * over the decisions still inside T_k (Σ w, Σ w·t) so that the unspent part,
 * Σ w·(T_k − (now − t)), is O(1) per candidate, not a pass over every pending decision.
 * Times are in units of T_even.
 * @internal exported for its test
 */
export class PendingWindow {
  private readonly at: number[] = [];
  private readonly w: number[] = [];
  /** Absolute index of at[0]. */
  private base = 0;
  /** Per candidate: the first absolute index still inside its T. */
  private readonly first: Float64Array;
  private readonly sumW: Float64Array;
  private readonly sumWt: Float64Array;

  constructor(private readonly grid: readonly number[]) {
    this.first = new Float64Array(grid.length);
    this.sumW = new Float64Array(grid.length);
    this.sumWt = new Float64Array(grid.length);
  }

  add(at: number, w: number): number {
    this.at.push(at);
    this.w.push(w);
    for (let k = 1; k < this.grid.length; k++) {
      this.sumW[k]! += w;
      this.sumWt[k]! += w * at;
    }
    return this.base + this.at.length - 1;
  }

  /** The decision at `slot` has its outcome (billed by the caller): it stops being pending. */
  remove(slot: number): void {
    const i = slot - this.base;
    if (i < 0) return; // outside every candidate's T already: in no sum
    const w = this.w[i]!;
    if (w === 0) return;
    const at = this.at[i]!;
    for (let k = 1; k < this.grid.length; k++) {
      if (slot >= this.first[k]!) {
        this.sumW[k]! -= w;
        this.sumWt[k]! -= w * at;
      }
    }
    this.w[i] = 0;
  }

  /** Adds to `out[k]` the storage committed but not spent by `now`, for every candidate. */
  unspent(now: number, out: Float64Array): void {
    const end = this.base + this.at.length;
    for (let k = 1; k < this.grid.length; k++) {
      const f = this.grid[k]!;
      let j = this.first[k]!;
      while (j < end && this.at[j - this.base]! <= now - f) {
        const w = this.w[j - this.base]!;
        this.sumW[k]! -= w;
        this.sumWt[k]! -= w * this.at[j - this.base]!;
        j++;
      }
      this.first[k] = j;
      out[k]! += this.sumW[k]! * (f - now) + this.sumWt[k]!;
    }
    // Entries outside every candidate's T are done with.
    const drop = this.first[this.grid.length - 1]! - this.base;
    if (drop > 4096 && drop * 2 > this.at.length) {
      this.at.splice(0, drop);
      this.w.splice(0, drop);
      this.base += drop;
    }
  }

  scale(f: number): void {
    for (let i = 0; i < this.w.length; i++) this.w[i]! *= f;
    for (let k = 0; k < this.grid.length; k++) {
      this.sumW[k]! *= f;
      this.sumWt[k]! *= f;
    }
  }
}

/**
 * SkyStore-style adaptive TTL for copies left by reads. For each (source provider, cache provider)
 * pair it starts at the break-even time T_even = egress $/GB ÷ storage $/GB-second — keeping a copy
 * longer than that between two reads costs more than fetching again — and then adapts from the
 * observed inter-read gaps at the cache's location, with the per-object access statistics (last
 * read, reads so far) it keeps per object and location.
 *
 * How it adapts: for every candidate TTL it keeps the dollars a copy-on-read cache with that TTL
 * would have spent on the reads seen so far (a shadow cache per candidate, all evaluated at once
 * from each read's gap). A read after gap g costs, under TTL T: a hit (one read request, storage
 * for g) when g ≤ T, else a fetch (egress + request). Each read that keeps a copy commits to a
 * write request (unless it was a hit) and storage for T; the storage is refunded down to g when the
 * next read comes within T, so a copy never read again costs its full TTL at once — no censoring
 * bias towards long TTLs. Candidates are compared separately per popularity class (how many times
 * the object was read at that location), because a first read predicts a return far less than an
 * eighth does; a class may learn TTL 0, i.e. "copy only from the second read on". Candidates are
 * fractions of each pair's T_even and costs are in units of each read's fetch cost, so the reads of
 * every source at one cache pool their evidence (the TTL still differs per pair through T_even).
 * Minimum storage durations are not in the shadow costs (standard classes have none).
 */
export class AdaptiveTtl {
  private readonly grid: number[];
  private readonly minSamples: number;
  private readonly every: number;
  private readonly halfLife: number;
  private readonly caches = new Map<number, CacheState>();
  private readonly records = new Map<number, ReadRecord>();
  private base = 0;

  constructor(private readonly prices: TtlPricing, opts: AdaptiveTtlOptions = {}) {
    this.grid = opts.grid ?? DEFAULT_GRID;
    this.minSamples = opts.minSamples ?? 100;
    this.every = opts.recomputeEvery ?? 32;
    this.halfLife = opts.halfLifeSeconds ?? 3 * 86_400;
  }

  /** The break-even TTL of a copy on `cache` of data from `source`, in seconds. */
  tEven(source: number, cache: number): number {
    const egress = this.prices.egressBetween(source, cache);
    const storagePerGbSecond = this.prices.storagePerByteSecond[cache]! * BYTES_PER_GB;
    if (egress === 0) return 0;
    return storagePerGbSecond === 0 ? Infinity : egress / storagePerGbSecond;
  }

  /**
   * A read of object `object` (a number unique per object) at version `version`, whose copy
   * would be fetched from `source`: learns from it, and returns the TTL to give (or extend) the
   * copy on `cache` now. Call it for every such read, hit or miss.
   */
  observe(object: number, version: number, source: number, cache: number, size: number, now: number): number {
    const id = object * 32 + cache;
    const state = this.state(cache);
    const tEven = this.tEven(source, cache);
    const w = this.weight(now);
    const gb = size / BYTES_PER_GB;
    const p = this.prices;
    const fetch = gb * (p.egressBetween(source, cache) + p.retrievalPerGb[source]!) + p.readRequest[source]!;
    if (!(fetch > 0) || !Number.isFinite(tEven)) return tEven; // nothing to save, or storage is free
    const hitW = ((p.readRequest[cache]! + gb * p.retrievalPerGb[cache]!) / fetch) * w;
    const createW = (p.writeRequest[cache]! / fetch) * w;
    const storageUnits = (p.storagePerByteSecond[cache]! * size * tEven) / fetch;
    const storageW = storageUnits * w;
    const f = this.grid;
    const K = f.length;
    const rec = this.records.get(id);
    const known = rec !== undefined && rec.version === version;
    // The gap since the previous read, in units of the T_even its decision was taken with.
    const gap = known ? (now - rec!.last) / rec!.tEven : Infinity;
    if (rec !== undefined && rec.window !== null) {
      rec.window.remove(rec.slot);
      rec.window = null;
      const row = rec.cls * K;
      const before = rec.state.costs;
      const refund = rec.storageUnits * rec.weight;
      if (known) {
        // The previous read's decision (its class's row) meets its outcome.
        before[row]! += w;
        for (let k = 1; k < K; k++) {
          if (gap <= f[k]!) before[row + k]! += hitW - refund * (f[k]! - gap);
          else before[row + k]! += w;
        }
      } else {
        // The object changed: the copy its previous read kept was void from then on.
        const held = (now - rec.last) / rec.tEven;
        for (let k = 1; k < K; k++) if (held < f[k]!) before[row + k]! -= refund * (f[k]! - held);
      }
    }
    const reads = known ? rec!.reads + 1 : 1;
    // This read's decision (its class's row): keeping a copy commits to storage for T, and a write unless it is a hit.
    const cls = classOf(reads);
    const row = cls * K;
    const c = state.costs;
    for (let k = 1; k < K; k++) c[row + k]! += storageW * f[k]! + (gap <= f[k]! ? 0 : createW);
    const window = this.window(state, cls, tEven);
    const slot = window.add(now / tEven, storageW);
    const next = { last: now, version, reads, cls, state, storageUnits, weight: w, tEven, window, slot };
    if (rec === undefined) this.records.set(id, next);
    else Object.assign(rec, next);
    const n = ++state.samples[cls]!;
    if (n >= this.minSamples && n % this.every === 0) this.choose(state, cls, now);
    return state.fraction[cls]! * tEven;
  }

  /** The TTL a first read (popularity class 0) of data from `source` gets now on `cache`. */
  ttl(source: number, cache: number): number {
    return this.state(cache).fraction[0]! * this.tEven(source, cache);
  }

  /** Forgets an object's read records at every cache (it was deleted). */
  forget(object: number): void {
    for (const cache of this.caches.keys()) {
      const rec = this.records.get(object * 32 + cache);
      rec?.window?.remove(rec.slot);
      this.records.delete(object * 32 + cache);
    }
  }

  /** Per cache provider: the chosen TTL per popularity class (reads so far: 1, 2–3, 4–7, 8+) as a fraction of T_even, and the reads it learnt from. */
  snapshot(): { cache: number; fractions: number[]; samples: number }[] {
    return [...this.caches].map(([cache, s]) => ({ cache, fractions: [...s.fraction], samples: s.samples.reduce((a, b) => a + b, 0) }));
  }

  /**
   * Picks the class's candidate that spent least so far. A decision still waiting for its outcome
   * counts the storage it has used up to now, not the whole T it committed to: the shadow caches'
   * spend so far, which is what a bill up to now would show.
   */
  private choose(state: CacheState, cls: number, now: number): void {
    const K = this.grid.length;
    const row = cls * K;
    const unspent = new Float64Array(K);
    for (const [tEven, window] of state.pending[cls]!) window.unspent(now / tEven, unspent);
    let best = 0;
    let bestCost = state.costs[row]!;
    for (let k = 1; k < K; k++) {
      const cost = state.costs[row + k]! - unspent[k]!;
      if (cost < bestCost) {
        best = k;
        bestCost = cost;
      }
    }
    state.fraction[cls] = this.grid[best]!;
  }

  private window(state: CacheState, cls: number, tEven: number): PendingWindow {
    const byTEven = state.pending[cls]!;
    let w = byTEven.get(tEven);
    if (!w) byTEven.set(tEven, (w = new PendingWindow(this.grid)));
    return w;
  }

  /** 2^((now − base)/halfLife), rebased (every weight and cost scaled down alike) before it can overflow. */
  private weight(now: number): number {
    let e = (now - this.base) / this.halfLife;
    if (e > 500) {
      const f = Math.pow(2, -e);
      for (const p of this.caches.values()) for (let k = 0; k < p.costs.length; k++) p.costs[k]! *= f;
      for (const r of this.records.values()) r.weight *= f;
      for (const p of this.caches.values()) for (const byTEven of p.pending) for (const w of byTEven.values()) w.scale(f);
      this.base = now;
      e = 0;
    }
    return Math.pow(2, e);
  }

  private state(cache: number): CacheState {
    let s = this.caches.get(cache);
    if (!s) {
      s = { costs: new Float64Array(CLASSES * this.grid.length), samples: new Float64Array(CLASSES), fraction: new Float64Array(CLASSES).fill(1), pending: Array.from({ length: CLASSES }, () => new Map()) };
      this.caches.set(cache, s);
    }
    return s;
  }
}
