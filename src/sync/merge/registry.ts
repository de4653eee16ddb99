import { InvalidConfigError } from '../../core/errors.js';
import type { MergeInput, MergeResult, Merger } from './types.js';

/** A merger whose implementation is loaded on first use (so yjs and diff3 load only for users of merge). */
type MergerFactory = () => Promise<Merger>;

import { DEFAULT_MERGE_MAX_BYTES, TEXT_MERGE_MAX_BYTES } from './limits.js';

const NAME = /^[a-z][a-z0-9-]{0,31}$/;

/**
 * Mergers by name. `getMerger` answers synchronously (config validation can call it), and the
 * returned merger loads its implementation on first `merge`.
 */
export class MergerRegistry {
  private readonly factories = new Map<string, { factory: MergerFactory; maxBytes: number }>();

  /** Adds a merger (or a lazily loaded one). InvalidConfig for a bad or taken name. */
  register(merger: Merger | { name: string; maxBytes: number; load: MergerFactory }): void {
    if (!NAME.test(merger.name)) throw new InvalidConfigError(`merger name must match ${NAME.source}, got ${JSON.stringify(merger.name)}`);
    if (this.factories.has(merger.name)) throw new InvalidConfigError(`a merger named ${merger.name} is already registered`);
    const factory: MergerFactory = 'load' in merger ? merger.load : async () => merger;
    this.factories.set(merger.name, { factory, maxBytes: merger.maxBytes });
  }

  /** The merger called `name`. InvalidConfig naming the known ones when there is none. */
  get(name: string): Merger {
    const entry = this.factories.get(name);
    if (!entry) throw new InvalidConfigError(`unknown merger ${JSON.stringify(name)}; known: ${this.names().join(', ') || '(none)'}`);
    let loaded: Promise<Merger> | undefined;
    return {
      name,
      maxBytes: entry.maxBytes,
      merge: async (input: MergeInput): Promise<MergeResult> => {
        loaded ??= entry.factory();
        return (await loaded).merge(input);
      },
    };
  }

  names(): string[] {
    return [...this.factories.keys()].sort();
  }
}

/** The registry `getMerger` reads: the built-ins `yjs` and `text`, and any a caller adds. */
export const mergers = new MergerRegistry();
mergers.register({ name: 'yjs', maxBytes: DEFAULT_MERGE_MAX_BYTES, load: async () => (await import('./yjs-merger.js')).createYjsMerger() });
mergers.register({ name: 'text', maxBytes: TEXT_MERGE_MAX_BYTES, load: async () => (await import('./text-merger.js')).createTextMerger() });

/** The merger called `name` from the default registry; InvalidConfig for an unknown name. */
export function getMerger(name: string): Merger {
  return mergers.get(name);
}
