import { optimalSchedule } from '../optimum.js';
import type { SimEvent, SimWorld } from '../world.js';
import type { PlacedObject } from './placed-policy.js';
import { StaticPlacementPolicy } from './static-placement-policy.js';

/** Reads of one object version at one location, waiting for the version to end. */
interface PendingReads {
  loc: number;
  times: number[];
  bytes: number[];
  sources: number[];
}

/**
 * The offline optimum over copies left by reads, with full knowledge of the trace: the same base
 * copies as the copy-on-read policies (writer-aware placement), and per object version and reader
 * location the cheapest schedule of keeping or re-fetching a copy between reads
 * ({@link optimalSchedule}). Reads are collected until the version ends (a write, a delete, the end
 * of the trace), then the schedule is solved and billed through the same charging functions as
 * every other policy.
 */
export class OptimumPolicy extends StaticPlacementPolicy {
  override readonly name = 'optimum';
  override readonly description = 'offline optimum: per object version and location, keep or re-fetch a copy between reads (dynamic programme)';
  private readonly pending = new Map<PlacedObject, PendingReads[]>();

  constructor(world: SimWorld) {
    super(world, true);
  }

  protected override serve(e: SimEvent, obj: PlacedObject): void {
    const cache = this.world.cacheProviderAt(e.loc);
    if (cache < 0 || obj.holders.includes(cache)) return super.serve(e, obj);
    const source = this.world.source(obj.policy, obj.holders, obj.size, e.loc);
    let list = this.pending.get(obj);
    if (!list) this.pending.set(obj, (list = []));
    let reads = list.find((r) => r.loc === e.loc);
    if (!reads) list.push((reads = { loc: e.loc, times: [], bytes: [], sources: [] }));
    reads.times.push(e.time);
    reads.bytes.push(e.size);
    reads.sources.push(source);
  }

  protected override endVersion(obj: PlacedObject, at: number): void {
    this.settle(obj);
    super.endVersion(obj, at);
  }

  override finish(end: number): void {
    for (const obj of this.objects) if (obj) this.settle(obj);
    super.finish(end);
  }

  /** Solves and bills the pending reads of one object version. */
  private settle(obj: PlacedObject): void {
    const list = this.pending.get(obj);
    if (!list) return;
    this.pending.delete(obj);
    const w = this.world;
    for (const r of list) {
      const cache = w.cacheProviderAt(r.loc);
      const n = r.times.length;
      const fetch = new Float64Array(n);
      const create = new Float64Array(n);
      const hit = new Float64Array(n);
      for (let j = 0; j < n; j++) {
        fetch[j] = w.readCost(r.sources[j]!, r.loc, r.bytes[j]!);
        create[j] = w.readCost(r.sources[j]!, r.loc, Math.max(r.bytes[j]!, obj.size)) + w.writeRequest[cache]!;
        hit[j] = w.readCost(cache, r.loc, r.bytes[j]!);
      }
      const schedule = optimalSchedule({
        times: r.times, fetch, create, hit,
        storagePerSecond: w.storagePerByteSecond[cache]! * obj.size,
        minSeconds: w.minSeconds[cache]!,
      });
      this.bill(obj, cache, r, schedule.runs);
    }
  }

  private bill(obj: PlacedObject, cache: number, r: PendingReads, runs: [number, number][]): void {
    const w = this.world;
    let next = 0;
    const fetchUpTo = (end: number): void => {
      for (; next < end; next++) {
        this.countRead(r.sources[next]!, r.loc);
        w.chargeRead(this.ledger, obj.policy, r.sources[next]!, r.loc, r.bytes[next]!);
      }
    };
    for (const [i, j] of runs) {
      fetchUpTo(i);
      this.countRead(r.sources[i]!, r.loc);
      w.chargeRead(this.ledger, obj.policy, r.sources[i]!, r.loc, Math.max(r.bytes[i]!, obj.size));
      w.chargeWrite(this.ledger, obj.policy, cache);
      this.ledger.counters.copiesCreated++;
      for (let m = i + 1; m <= j; m++) {
        this.ledger.counters.localReads++;
        w.chargeRead(this.ledger, obj.policy, cache, r.loc, r.bytes[m]!);
      }
      w.chargeStorage(this.ledger, obj.policy, cache, obj.size, r.times[i]!, r.times[j]!, true);
      next = j + 1;
    }
    fetchUpTo(r.times.length);
  }
}
