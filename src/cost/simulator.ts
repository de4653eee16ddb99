import { InvalidArgumentError } from '../core/errors.js';
import { AdaptiveTtl, type AdaptiveTtlOptions } from './adaptive-ttl.js';
import type { CostBreakdown, PolicyCounters } from './ledger.js';
import { adaptiveTtl, alwaysStore, breakEvenTtl, CopyOnReadPolicy, fixedTtl } from './policies/copy-on-read-policy.js';
import { OptimumPolicy } from './policies/optimum-policy.js';
import type { SimPolicy } from './policies/placed-policy.js';
import { ReplicateAllPolicy } from './policies/replicate-all-policy.js';
import { SingleProviderPolicy } from './policies/single-provider-policy.js';
import { StaticPlacementPolicy } from './policies/static-placement-policy.js';
import type { TraceEvent } from './trace.js';
import type { SimEvent, SimWorld } from './world.js';

/** Every policy the simulator knows, in report order. */
export const POLICY_NAMES = ['single', 'replicate-all', 'static', 'write-local', 'always-store', 'fixed-ttl', 't-even', 'adaptive', 'optimum'] as const;
export type PolicyName = (typeof POLICY_NAMES)[number];

export interface SimulationOptions {
  /** Policies to run (default: all). */
  policies?: readonly PolicyName[];
  /** Provider of the `single` baseline (default: the first configured). */
  singleProvider?: string;
  /** TTL of the `fixed-ttl` baseline in seconds (default 1 day). */
  fixedTtlSeconds?: number;
  adaptive?: AdaptiveTtlOptions;
}

export interface PolicyResult {
  name: string;
  description: string;
  cost: CostBreakdown;
  counters: PolicyCounters;
  byProvider: Record<string, CostBreakdown>;
  byPrefix: Record<string, CostBreakdown>;
}

export interface SimulationReport {
  requests: number;
  /** Simulated seconds from the first to the last request. */
  durationSeconds: number;
  policies: PolicyResult[];
  /** Adaptive policy only: per cache provider, the final TTL per popularity class (reads at the location so far: 1, 2–3, 4–7, 8+) as a fraction of T_even, and the reads it learnt from. */
  adaptiveTtls?: { cache: string; fractions: number[]; samples: number }[];
  /** Wall-clock milliseconds the simulation took. */
  elapsedMs: number;
}

/**
 * Replays a trace against every policy at once on a simulated clock (each event's own time; no
 * real waiting) and returns each policy's bill. Each event is applied to every policy before the
 * next is read, so a trace streams through in bounded memory (plus per-object state).
 */
export async function simulate(world: SimWorld, events: AsyncIterable<TraceEvent> | Iterable<TraceEvent>, opts: SimulationOptions = {}): Promise<SimulationReport> {
  const started = performance.now();
  const names = opts.policies ?? POLICY_NAMES;
  for (const n of names) if (!POLICY_NAMES.includes(n)) throw new InvalidArgumentError(`unknown policy "${n}"; expected one of: ${POLICY_NAMES.join(', ')}`);
  const learner = new AdaptiveTtl(world, opts.adaptive);
  const policies = names.map((n) => makePolicy(n, world, learner, opts));
  let requests = 0;
  let first = NaN;
  let last = 0;
  for await (const t of events) {
    if (requests === 0) first = t.time;
    requests++;
    last = t.time;
    const id = world.objectId(t.key);
    const e: SimEvent = { time: t.time, op: t.op, key: t.key, size: t.size, id, loc: world.location(t.location), policy: world.policyOf(id) };
    for (const p of policies) p.apply(e);
  }
  for (const p of policies) p.finish(last);
  return {
    requests,
    durationSeconds: requests === 0 ? 0 : last - first,
    policies: policies.map(result),
    ...(names.includes('adaptive')
      ? { adaptiveTtls: learner.snapshot().map((x) => ({ ...x, cache: world.names[x.cache]! })) }
      : {}),
    elapsedMs: performance.now() - started,
  };
}

function makePolicy(name: PolicyName, world: SimWorld, learner: AdaptiveTtl, opts: SimulationOptions): SimPolicy {
  switch (name) {
    case 'single': return new SingleProviderPolicy(world, opts.singleProvider ?? world.names[0]!);
    case 'replicate-all': return new ReplicateAllPolicy(world);
    case 'static': return new StaticPlacementPolicy(world, false);
    case 'write-local': return new StaticPlacementPolicy(world, true);
    case 'always-store': return new CopyOnReadPolicy(world, alwaysStore());
    case 'fixed-ttl': return new CopyOnReadPolicy(world, fixedTtl(checkTtl(opts.fixedTtlSeconds ?? 86_400)));
    case 't-even': return new CopyOnReadPolicy(world, breakEvenTtl(learner));
    case 'adaptive': return new CopyOnReadPolicy(world, adaptiveTtl(learner));
    case 'optimum': return new OptimumPolicy(world);
  }
}

function checkTtl(s: number): number {
  if (!(s >= 0)) throw new InvalidArgumentError(`fixed TTL must be a number of seconds ≥ 0, got ${s}`);
  return s;
}

function result(p: SimPolicy): PolicyResult {
  return {
    name: p.name,
    description: p.description,
    cost: p.ledger.totals(),
    counters: { ...p.ledger.counters },
    byProvider: p.ledger.providerTotals(),
    byPrefix: p.ledger.prefixTotals(),
  };
}
