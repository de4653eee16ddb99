import { policySchema, type PolicyConfig } from '../config/schema.js';
import { InvalidConfigError } from '../core/errors.js';

/** A placement policy as the router uses it: every field filled in. */
export type PlacementPolicy = PolicyConfig & { providers: string[] };

/** Policy input: anything the config accepts; omitted fields take their defaults. */
export type PolicyInput = Partial<PolicyConfig>;

/**
 * Chooses the policy for a key: the one with the longest matching prefix. Validates, once, what
 * the config schema validates for a whole file (quorum ≤ replicas ≤ eligible providers, known pins).
 */
export class PolicySet {
  private readonly sorted: PlacementPolicy[];

  constructor(policies: PolicyInput[], providers: string[]) {
    const list = policies.length > 0 ? policies : [{}];
    this.sorted = list.map((p, i) => {
      const parsed = policySchema.safeParse(p);
      if (!parsed.success) throw new InvalidConfigError(`policies[${i}]: ${parsed.error.issues.map((x) => `${x.path.join('.')}: ${x.message}`).join('; ')}`);
      const pol = parsed.data;
      const eligible = pol.providers ?? providers;
      const bad = (msg: string): never => {
        throw new InvalidConfigError(`policies[${i}] (prefix "${pol.prefix}"): ${msg}`);
      };
      for (const n of [...eligible, ...pol.pin]) if (!providers.includes(n)) bad(`unknown provider "${n}"; expected one of: ${providers.join(', ')}`);
      if (pol.writeQuorum > pol.replicas) bad(`writeQuorum ${pol.writeQuorum} is more than replicas ${pol.replicas}`);
      if (pol.replicas > eligible.length) bad(`replicas ${pol.replicas} but only ${eligible.length} eligible providers`);
      if (pol.pin.length > pol.replicas) bad(`${pol.pin.length} pinned providers but only ${pol.replicas} replicas`);
      return { ...pol, providers: [...eligible] };
    }).sort((a, b) => b.prefix.length - a.prefix.length);
    if (!this.sorted.some((p) => p.prefix === '')) throw new InvalidConfigError('no default policy: one policy must have prefix ""');
  }

  for(key: string): PlacementPolicy {
    for (const p of this.sorted) if (key.startsWith(p.prefix)) return p;
    return this.sorted[this.sorted.length - 1]!;
  }

  all(): readonly PlacementPolicy[] {
    return this.sorted;
  }
}
