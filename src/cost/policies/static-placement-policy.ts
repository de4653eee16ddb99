import type { SimEvent, SimWorld } from '../world.js';
import { PlacedPolicy } from './placed-policy.js';

/**
 * The router's placement: the policy's N replicas on the providers it ranks cheapest, the first
 * `writeQuorum` uploaded by the writer and the rest copied by the replication worker; reads from
 * the copy cheapest to move to the reader. No copy on read.
 *
 * `writerAware: false` is today's router (ranking by a month of storage plus a write request);
 * `true` also counts the upload's egress from the writer's location, so objects land near their
 * writer (the router does this when it knows its location).
 */
export class StaticPlacementPolicy extends PlacedPolicy {
  readonly name: string;
  readonly description: string;

  constructor(world: SimWorld, protected readonly writerAware = false) {
    super(world);
    this.name = writerAware ? 'write-local' : 'static';
    this.description = writerAware
      ? "placement that counts the writer's upload egress (objects land near their writer); reads from the cheapest copy; no copy on read"
      : "today's placement: the policy's replicas on the cheapest providers by storage + write; reads from the cheapest copy; no copy on read";
  }

  protected targets(e: SimEvent): { targets: number[]; uploaded: number } {
    const targets = this.world.placement(e.policy, e.size, this.writerAware ? e.loc : -1);
    return { targets, uploaded: Math.min(this.world.writeQuorum(e.policy), targets.length) };
  }
}
