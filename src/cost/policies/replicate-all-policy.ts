import type { SimEvent, SimWorld } from '../world.js';
import { PlacedPolicy } from './placed-policy.js';

/**
 * A copy on every provider, pushed on write: the writer uploads to the provider nearest to it (the
 * router's read order from the writer's location), the replication worker copies from there to
 * the rest; reads from the nearest copy by the router's read order.
 */
export class ReplicateAllPolicy extends PlacedPolicy {
  readonly name = 'replicate-all';
  readonly description = 'a copy on every provider, pushed on write; reads from the nearest';
  private readonly all: number[];

  constructor(world: SimWorld) {
    super(world);
    this.all = world.names.map((_, i) => i);
  }

  protected targets(e: SimEvent): { targets: number[]; uploaded: number } {
    const first = this.world.source(e.policy, this.all, e.size, e.loc);
    return { targets: [first, ...this.all.filter((n) => n !== first)], uploaded: 1 };
  }
}
