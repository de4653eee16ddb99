import picomatch from 'picomatch';
import { InvalidArgumentError } from '../core/errors.js';
import type { ConflictPolicy } from './types.js';

/** The policy names `--conflict` accepts (merge takes a merger: `merge:yjs`, `merge:text`). */
export const POLICY_NAMES = ['keep-both', 'newest', 'local', 'remote', 'merge:<merger>'] as const;

const MERGER_NAME = /^[a-z][a-z0-9-]*$/;

/** Parses one policy name. Bad input is InvalidArgument naming what is accepted. */
export function parsePolicy(text: string): ConflictPolicy {
  const t = text.trim();
  if (t === 'keep-both' || t === 'newest' || t === 'local' || t === 'remote') return { kind: t };
  if (t.startsWith('merge:')) {
    const merger = t.slice('merge:'.length);
    if (MERGER_NAME.test(merger)) return { kind: 'merge', merger };
  }
  throw new InvalidArgumentError(`conflict policy ${JSON.stringify(text)}: expected one of ${POLICY_NAMES.join(', ')}`);
}

export function formatPolicy(p: ConflictPolicy): string {
  return p.kind === 'merge' ? `merge:${p.merger}` : p.kind;
}

interface Rule {
  glob: string;
  policy: ConflictPolicy;
  match: (path: string) => boolean;
}

/**
 * Conflict policies chosen per path glob. Rules are `GLOB=POLICY` (first match wins, `**` crosses
 * `/`, dotfiles match) or a bare `POLICY`, which sets the default (keep-both when none is given).
 */
export class ConflictPolicies {
  private readonly rules: Rule[];
  readonly fallback: ConflictPolicy;

  constructor(specs: readonly string[] = []) {
    const rules: Rule[] = [];
    let fallback: ConflictPolicy = { kind: 'keep-both' };
    for (const spec of specs) {
      const eq = spec.lastIndexOf('=');
      if (eq < 0) {
        fallback = parsePolicy(spec);
        continue;
      }
      const glob = spec.slice(0, eq).trim();
      if (glob === '') throw new InvalidArgumentError(`conflict rule ${JSON.stringify(spec)}: empty glob (expected GLOB=POLICY)`);
      const policy = parsePolicy(spec.slice(eq + 1));
      rules.push({ glob, policy, match: picomatch(glob, { dot: true }) });
    }
    this.rules = rules;
    this.fallback = fallback;
  }

  policyFor(path: string): ConflictPolicy {
    for (const r of this.rules) if (r.match(path)) return r.policy;
    return this.fallback;
  }

  /** The merger names the rules use (checked against the registry before a round starts). */
  mergers(): string[] {
    const all = [...this.rules.map((r) => r.policy), this.fallback];
    return [...new Set(all.flatMap((p) => (p.kind === 'merge' ? [p.merger] : [])))];
  }

  /** `GLOB=POLICY` lines and the default, for status output. */
  describe(): string[] {
    return [...this.rules.map((r) => `${r.glob}=${formatPolicy(r.policy)}`), `*=${formatPolicy(this.fallback)} (default)`];
  }
}
