import { CostLedger } from '../ledger.js';
import type { SimEvent, SimWorld } from '../world.js';

/** A placement policy under simulation: it sees the trace one event at a time and bills its ledger. */
export interface SimPolicy {
  readonly name: string;
  /** One line for reports: what the policy does. */
  readonly description: string;
  readonly ledger: CostLedger;
  apply(e: SimEvent): void;
  /** The trace ended at `end`: bill what is still stored up to then. */
  finish(end: number): void;
}

/** A copy left at a reader's location by a copy-on-read policy. */
export interface CachedCopy {
  provider: number;
  since: number;
  expires: number;
}

/** One object version as a policy holds it. */
export interface PlacedObject {
  size: number;
  /** Providers holding its base copies (ids). */
  holders: number[];
  /** When the base copies were written. */
  since: number;
  /** Placement policy index (the ledger's prefix row). */
  policy: number;
  /** Bumped by every write: copies and statistics of an older version are void. */
  version: number;
  /** Copy-on-read policies: copies at readers' locations. */
  cached?: CachedCopy[];
}

/**
 * Base of every simulated policy: puts place an object's base copies (where, decided by the
 * subclass), overwrites and deletes end the old version's copies (billing minimum durations),
 * gets are served by {@link PlacedPolicy.serve}. A get of a key never put is taken to be an object
 * that existed before the trace began: placed where a put would have placed it, with no upload.
 */
export abstract class PlacedPolicy implements SimPolicy {
  abstract readonly name: string;
  abstract readonly description: string;
  readonly ledger: CostLedger;
  /** By object id ({@link SimEvent.id}); undefined once deleted. */
  protected readonly objects: (PlacedObject | undefined)[] = [];
  private versions = 0;

  constructor(protected readonly world: SimWorld) {
    this.ledger = new CostLedger(world.names, world.prefixes);
  }

  /** Providers that hold a new object's base copies, and how many of them the writer uploads itself (the replication worker copies the rest from the first). */
  protected abstract targets(e: SimEvent): { targets: number[]; uploaded: number };

  apply(e: SimEvent): void {
    if (e.op === 'get') this.get(e);
    else if (e.op === 'put') this.put(e);
    else this.remove(e);
  }

  private put(e: SimEvent): void {
    this.ledger.counters.puts++;
    const old = this.objects[e.id];
    if (old) this.endVersion(old, e.time);
    const { targets, uploaded } = this.targets(e);
    for (let i = 0; i < targets.length; i++) {
      if (i < uploaded) this.world.chargeUpload(this.ledger, e.policy, e.loc, targets[i]!, e.size);
      else this.world.chargeCopy(this.ledger, e.policy, targets[0]!, targets[i]!, e.size);
    }
    this.objects[e.id] = { size: e.size, holders: targets, since: e.time, policy: e.policy, version: ++this.versions };
  }

  private get(e: SimEvent): void {
    this.ledger.counters.gets++;
    let obj = this.objects[e.id];
    if (!obj) {
      this.ledger.counters.preexisting++;
      obj = { size: e.size, holders: this.targets(e).targets, since: e.time, policy: e.policy, version: ++this.versions };
      this.objects[e.id] = obj;
    }
    this.serve(e, obj);
  }

  private remove(e: SimEvent): void {
    this.ledger.counters.deletes++;
    const old = this.objects[e.id];
    if (!old) return;
    this.endVersion(old, e.time);
    this.objects[e.id] = undefined;
  }

  /** Serves a get: by default from the base copy the router's read order picks for the reader's location. */
  protected serve(e: SimEvent, obj: PlacedObject): void {
    const source = this.world.source(obj.policy, obj.holders, obj.size, e.loc);
    this.countRead(source, e.loc);
    this.world.chargeRead(this.ledger, obj.policy, source, e.loc, e.size);
  }

  protected countRead(source: number, loc: number): void {
    if (this.world.providerLoc[source] === loc) this.ledger.counters.localReads++;
    else this.ledger.counters.remoteReads++;
  }

  /** A write or delete at `at` ends this version: its base copies are deleted (minimum durations apply). */
  protected endVersion(obj: PlacedObject, at: number): void {
    for (const p of obj.holders) this.world.chargeStorage(this.ledger, obj.policy, p, obj.size, obj.since, at, true);
  }

  finish(end: number): void {
    for (const obj of this.objects) {
      if (obj) for (const p of obj.holders) this.world.chargeStorage(this.ledger, obj.policy, p, obj.size, obj.since, end, false);
    }
  }
}
