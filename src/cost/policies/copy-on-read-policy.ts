import type { AdaptiveTtl } from '../adaptive-ttl.js';
import type { SimEvent, SimWorld } from '../world.js';
import type { PlacedObject } from './placed-policy.js';
import { StaticPlacementPolicy } from './static-placement-policy.js';

/** How long a copy left by a read lives after its last read. */
export interface TtlRule {
  readonly name: string;
  readonly description: string;
  /**
   * Seconds a copy on `cache` lives after this read of object id `object` (0: leave no copy; Infinity: keep
   * until the object changes). Called once for every read at a location with a cache provider and
   * no base copy, hit or miss, in time order — adaptive rules learn from these calls.
   */
  ttl(object: number, version: number, source: number, cache: number, size: number, now: number): number;
}

/**
 * Base copies placed near their writer (writer-aware placement), plus copy on read: a read at a
 * location that holds no copy leaves one on the provider there, which lives `ttl` after each read
 * of it. A write or delete ends every cached copy (a cached copy holds one version; it is never
 * served stale). An expired copy is billed up to its expiry (the replication worker evicts it then)
 * with the provider's minimum storage duration. The bill is the trace window's: a copy still live
 * when the trace ends is billed up to the end, like the base copies.
 */
export class CopyOnReadPolicy extends StaticPlacementPolicy {
  override readonly name: string;
  override readonly description: string;

  constructor(world: SimWorld, private readonly rule: TtlRule) {
    super(world, true);
    this.name = rule.name;
    this.description = rule.description;
  }

  protected override serve(e: SimEvent, obj: PlacedObject): void {
    const cache = this.world.cacheProviderAt(e.loc);
    if (cache < 0 || obj.holders.includes(cache)) return super.serve(e, obj);
    const source = this.world.source(obj.policy, obj.holders, obj.size, e.loc);
    const ttl = this.rule.ttl(e.id, obj.version, source, cache, obj.size, e.time);
    const copies = (obj.cached ??= []);
    const at = copies.findIndex((c) => c.provider === cache);
    if (at >= 0) {
      const copy = copies[at]!;
      if (copy.expires >= e.time) {
        this.ledger.counters.localReads++;
        this.world.chargeRead(this.ledger, obj.policy, cache, e.loc, e.size);
        copy.expires = Math.max(copy.expires, e.time + ttl);
        return;
      }
      this.ledger.counters.copiesExpired++;
      this.world.chargeStorage(this.ledger, obj.policy, cache, obj.size, copy.since, copy.expires, true);
      copies.splice(at, 1);
    }
    this.countRead(source, e.loc);
    if (ttl <= 0) {
      this.world.chargeRead(this.ledger, obj.policy, source, e.loc, e.size);
      return;
    }
    // The whole object comes over (a range read still leaves a whole copy), and is written there.
    this.world.chargeRead(this.ledger, obj.policy, source, e.loc, Math.max(e.size, obj.size));
    this.world.chargeWrite(this.ledger, obj.policy, cache);
    this.ledger.counters.copiesCreated++;
    copies.push({ provider: cache, since: e.time, expires: e.time + ttl });
  }

  protected override endVersion(obj: PlacedObject, at: number): void {
    super.endVersion(obj, at);
    for (const c of obj.cached ?? []) {
      if (c.expires < at) this.ledger.counters.copiesExpired++;
      this.world.chargeStorage(this.ledger, obj.policy, c.provider, obj.size, c.since, Math.min(c.expires, at), true);
    }
    obj.cached = undefined;
  }

  override finish(end: number): void {
    super.finish(end);
    for (const obj of this.objects) {
      if (!obj) continue;
      for (const c of obj.cached ?? []) {
        const expired = c.expires <= end;
        if (expired) this.ledger.counters.copiesExpired++;
        this.world.chargeStorage(this.ledger, obj.policy, c.provider, obj.size, c.since, Math.min(c.expires, end), expired);
      }
      obj.cached = undefined;
    }
  }
}

/** A fixed TTL for every pair. */
export function fixedTtl(seconds: number, name = 'fixed-ttl'): TtlRule {
  return { name, description: `copy on read, kept ${formatSeconds(seconds)} after the last read`, ttl: () => seconds };
}

/** Keep every copy until the object changes (TTL ∞). */
export function alwaysStore(): TtlRule {
  return { name: 'always-store', description: 'copy on read, kept until the object changes', ttl: () => Infinity };
}

/** TTL = T_even of the pair, never adapted (the classic break-even rule; at most 2× the optimum per gap). */
export function breakEvenTtl(learner: AdaptiveTtl): TtlRule {
  return { name: 't-even', description: 'copy on read, kept T_even = egress $/GB ÷ storage $/GB-s after the last read', ttl: (_k, _v, s, c) => learner.tEven(s, c) };
}

/** SkyStore-style: start at T_even, adapt per pair from observed inter-read gaps ({@link AdaptiveTtl}). */
export function adaptiveTtl(learner: AdaptiveTtl): TtlRule {
  return {
    name: 'adaptive',
    description: 'copy on read, TTL per (source, cache) pair from T_even, adapted to the observed inter-read gaps',
    ttl: (object, version, source, cache, size, now) => learner.observe(object, version, source, cache, size, now),
  };
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '∞';
  if (s >= 86_400) return `${+(s / 86_400).toFixed(1)}d`;
  if (s >= 3600) return `${+(s / 3600).toFixed(1)}h`;
  if (s >= 60) return `${+(s / 60).toFixed(1)}m`;
  return `${+s.toFixed(1)}s`;
}
