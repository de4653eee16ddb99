import picomatch from 'picomatch';

/** Transfer priority classes, most urgent first. */
export const PRIORITY_CLASSES = ['critical', 'normal', 'bulk'] as const;
export type PriorityClass = (typeof PRIORITY_CLASSES)[number];

/** Rank stored in the outbox (`priority` column): lower is more urgent. */
export const PRIORITY_RANK: Readonly<Record<PriorityClass, number>> = { critical: 0, normal: 1, bulk: 2 };

export function priorityOfRank(rank: number): PriorityClass {
  return PRIORITY_CLASSES[rank] ?? 'normal';
}

/**
 * Shares of claims when every class has work due: critical 16, normal 4, bulk 1, so a flood of
 * bulk never delays a critical replica by more than one slot in 21, and bulk still gets ~5 % of
 * the slots (never starved) while critical work is owed.
 */
export const DEFAULT_PRIORITY_WEIGHTS: Readonly<Record<PriorityClass, number>> = { critical: 16, normal: 4, bulk: 1 };

/** One rule: every condition it gives must hold (a rule with none matches everything). */
export interface PriorityRule {
  class: PriorityClass;
  /** Globs on the key (picomatch, `**` crosses `/`); one must match. */
  match?: string | string[];
  /** Objects of at least this many bytes. */
  minSize?: number;
  /** Objects of at most this many bytes. */
  maxSize?: number;
  /** Metadata entries that must all be present with these values (where known: listings carry none). */
  metadata?: Record<string, string>;
}

export interface PriorityOptions {
  /** First matching rule wins. */
  rules?: PriorityRule[];
  /** Class of what no rule matches. Default `normal`. */
  default?: PriorityClass;
  /** Claim shares (see DEFAULT_PRIORITY_WEIGHTS); each ≥ 1 so no class starves. */
  weights?: Partial<Record<PriorityClass, number>>;
}

/** What a rule can look at. */
export interface PriorityInput {
  key: string;
  size: number;
  /** Absent where it is not known without a request (migration listings). */
  metadata?: Record<string, string>;
}

/**
 * Assigns a priority class by glob, size or metadata: the one answer the router (outbox entries),
 * migration (dispatch order) and the worker (claims) read. First matching rule wins.
 */
export class PriorityClassifier {
  readonly default: PriorityClass;
  readonly weights: Readonly<Record<PriorityClass, number>>;
  private readonly rules: { rule: PriorityRule; glob?: (key: string) => boolean }[];

  constructor(opts: PriorityOptions = {}) {
    this.default = opts.default ?? 'normal';
    this.weights = { ...DEFAULT_PRIORITY_WEIGHTS, ...opts.weights };
    for (const c of PRIORITY_CLASSES) {
      if (!(this.weights[c] >= 1)) throw new RangeError(`priority weight of ${c} must be ≥ 1 (a class with no share starves), got ${this.weights[c]}`);
    }
    this.rules = (opts.rules ?? []).map((rule) => {
      const globs = rule.match === undefined ? undefined : Array.isArray(rule.match) ? rule.match : [rule.match];
      return globs ? { rule, glob: picomatch(globs, { dot: true }) } : { rule };
    });
  }

  /** True when there are rules (else everything is the default class). */
  get hasRules(): boolean {
    return this.rules.length > 0;
  }

  classify(o: PriorityInput): PriorityClass {
    for (const { rule, glob } of this.rules) {
      if (glob && !glob(o.key)) continue;
      if (rule.minSize !== undefined && !(o.size >= rule.minSize)) continue;
      if (rule.maxSize !== undefined && !(o.size <= rule.maxSize)) continue;
      if (rule.metadata && !Object.entries(rule.metadata).every(([k, v]) => o.metadata?.[k] === v)) continue;
      return rule.class;
    }
    return this.default;
  }
}

/**
 * Smooth weighted round robin over the classes (nginx's algorithm): over any 21 picks with the
 * default weights, 16 are critical, 4 normal, 1 bulk, interleaved rather than in runs.
 */
export class WeightedClassPicker {
  private readonly current: Record<PriorityClass, number> = { critical: 0, normal: 0, bulk: 0 };
  private readonly total: number;

  constructor(private readonly weights: Readonly<Record<PriorityClass, number>> = DEFAULT_PRIORITY_WEIGHTS, private readonly classes: readonly PriorityClass[] = PRIORITY_CLASSES) {
    this.total = classes.reduce((n, c) => n + weights[c], 0);
  }

  next(): PriorityClass {
    let best = this.classes[0]!;
    for (const c of this.classes) {
      this.current[c] += this.weights[c];
      if (this.current[c] > this.current[best]) best = c;
    }
    this.current[best] -= this.total;
    return best;
  }

  /** Slots per class for a claim of `n`. */
  quota(n: number): Record<PriorityClass, number> {
    const q: Record<PriorityClass, number> = { critical: 0, normal: 0, bulk: 0 };
    for (let i = 0; i < n; i++) q[this.next()]++;
    return q;
  }
}
