import { InvalidArgumentError } from '../../core/errors.js';
import type { SimWorld } from '../world.js';
import { PlacedPolicy } from './placed-policy.js';

/** Every object on one provider, every read from it (the "single region" baseline). */
export class SingleProviderPolicy extends PlacedPolicy {
  readonly name = 'single';
  readonly description: string;
  private readonly only: number[];

  constructor(world: SimWorld, provider: string) {
    super(world);
    const id = world.names.indexOf(provider);
    if (id < 0) throw new InvalidArgumentError(`single-provider baseline: unknown provider "${provider}"; expected one of: ${world.names.join(', ')}`);
    this.only = [id];
    this.description = `one copy on ${provider}; every read from it`;
  }

  protected targets(): { targets: number[]; uploaded: number } {
    return { targets: this.only, uploaded: 1 };
  }
}
