import { InvalidArgumentError } from '../core/errors.js';
import { PriorityClassifier, type PriorityClass, type PriorityRule } from '../core/priority.js';
import { keyFilter } from '../replication/plan.js';
import type { SkippedPath } from './local-tree.js';

/**
 * What a device profile says (a preset, or an entry of `sync.profiles` in the config file).
 * Every field is optional; a profile that `extends` a preset takes the preset's value for each
 * field it does not give (a field given replaces the preset's, lists included).
 */
export interface SyncProfileSpec {
  /** A preset this profile starts from (`mobile`, `desktop`, `server`). */
  extends?: PresetName;
  /** Globs of the paths synced (picomatch, `**` crosses `/`, dotfiles match); none: every path. */
  include?: string[];
  /** Globs of paths never synced, even when an include matches. */
  exclude?: string[];
  /** Files larger than this many bytes (on either side) are skipped and reported. */
  maxFileSize?: number;
  /** Conflict rules, `GLOB=POLICY` or a default `POLICY` (as `--conflict`); `--conflict` rules come first. */
  conflict?: string[];
  /** A metered link: only paths of the critical class move (others wait, reported). */
  metered?: boolean;
  /**
   * Globs of list-only paths (`fetch: false`): a remote file there is known (shown by `sync
   * status`) but not downloaded until `cloudmux sync fetch PATH`; deleting the local copy evicts
   * it (no remote delete). A local file there syncs as usual.
   */
  listOnly?: string[];
  /** Priority classes by glob or size (h19's PriorityClassifier rules; first match wins). */
  priority?: { rules?: Omit<PriorityRule, 'metadata'>[]; default?: PriorityClass };
}

export const PRESET_NAMES = ['mobile', 'desktop', 'server'] as const;
export type PresetName = (typeof PRESET_NAMES)[number];

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

/** Files operating systems and editors leave beside documents. */
const OS_LITTER = ['**/.DS_Store', '**/Thumbs.db', '**/desktop.ini', '**/*.tmp', '**/*.swp', '**/~$*'];

/** Caches and build outputs: regenerated from sources, large, and churning. */
const CACHES_AND_BUILDS = [
  '**/node_modules/**', '**/.cache/**', '**/__pycache__/**', '**/*.pyc', '**/.venv/**', '**/.gradle/**',
  '**/dist/**', '**/build/**', '**/target/**', '**/.next/**', '**/out/**',
];

/**
 * Starting points (docs/sync.md, "Profiles"):
 * - `mobile`: files up to 50 MiB, no caches, build outputs or OS litter; metered: only files up
 *   to 1 MiB (the critical class) move until `--no-metered`.
 * - `desktop`: files up to 4 GiB, no OS litter.
 * - `server`: everything (the same as no profile).
 */
export const PROFILE_PRESETS: Readonly<Record<PresetName, Readonly<SyncProfileSpec>>> = {
  mobile: {
    exclude: [...OS_LITTER, ...CACHES_AND_BUILDS], maxFileSize: 50 * MiB,
    metered: true, priority: { rules: [{ class: 'critical', maxSize: MiB }] },
  },
  desktop: { exclude: OS_LITTER, maxFileSize: 4 * GiB },
  server: {},
};

function isPreset(name: string): name is PresetName {
  return (PRESET_NAMES as readonly string[]).includes(name);
}

/**
 * A device profile in force: which paths this device syncs and how. A path outside the profile is
 * neither pushed, pulled nor deleted on either side; a file above the size cap is skipped and
 * reported, whichever side holds it.
 */
export class SyncProfile {
  readonly include: readonly string[];
  readonly exclude: readonly string[];
  readonly maxFileSize: number | undefined;
  readonly conflict: readonly string[];
  readonly metered: boolean;
  readonly priority: PriorityClassifier;
  readonly listOnly: readonly string[];
  /** The resolved spec (what `sync fetch` reopens the directory with). */
  readonly spec: Readonly<SyncProfileSpec>;
  private readonly filter;
  private readonly listOnlyFilter: (path: string) => boolean;

  constructor(readonly name: string, spec: SyncProfileSpec = {}) {
    const base: SyncProfileSpec = spec.extends !== undefined ? PROFILE_PRESETS[spec.extends] : {};
    this.include = spec.include ?? base.include ?? [];
    this.exclude = spec.exclude ?? base.exclude ?? [];
    this.maxFileSize = spec.maxFileSize ?? base.maxFileSize;
    this.conflict = spec.conflict ?? base.conflict ?? [];
    this.metered = spec.metered ?? base.metered ?? false;
    const priority = spec.priority ?? base.priority;
    this.priority = new PriorityClassifier(priority);
    this.listOnly = spec.listOnly ?? base.listOnly ?? [];
    this.listOnlyFilter = this.listOnly.length > 0 ? keyFilter(this.listOnly) : () => false;
    this.spec = {
      include: [...this.include], exclude: [...this.exclude], conflict: [...this.conflict], metered: this.metered, listOnly: [...this.listOnly],
      ...(this.maxFileSize !== undefined ? { maxFileSize: this.maxFileSize } : {}), ...(priority ? { priority } : {}),
    };
    this.filter = keyFilter(this.include, this.exclude);
  }

  /** True when the profile syncs `path` (its size aside). */
  includes(path: string): boolean {
    return this.filter(path);
  }

  /** True for a list-only path (known, not downloaded until fetched). */
  isListOnly(path: string): boolean {
    return this.listOnlyFilter(path);
  }

  /** True when a file of `size` bytes is over the cap. */
  tooLarge(size: number): boolean {
    return this.maxFileSize !== undefined && size > this.maxFileSize;
  }

  /** Moves the entries over the size cap out of a round, into `skipped` (reported; neither side changes). */
  setAsideTooLarge<T>(entries: Map<string, T>, size: (e: T) => number, skipped: SkippedPath[], side: 'local' | 'remote'): void {
    if (this.maxFileSize === undefined) return;
    for (const [path, e] of entries) {
      if (!this.tooLarge(size(e))) continue;
      entries.delete(path);
      skipped.push({ path, reason: 'too-large', detail: `${side} file of ${size(e)} bytes is over the profile's maxFileSize of ${this.maxFileSize}` });
    }
  }

  /**
   * What decides which paths are in scope. When it changes between rounds, the remote is listed
   * again (a change feed only tells what changed, not what came into scope).
   */
  scope(): string {
    if (this.include.length === 0 && this.exclude.length === 0 && this.maxFileSize === undefined && this.listOnly.length === 0) return '';
    return JSON.stringify({ include: this.include, exclude: this.exclude, maxFileSize: this.maxFileSize ?? null, listOnly: this.listOnly });
  }

  /** `--conflict` rules first (first match wins, a later bare policy sets the default), then the profile's. */
  conflictRules(cli: readonly string[] = []): string[] {
    const bare = (r: string): boolean => !r.includes('=');
    return [...cli.filter((r) => !bare(r)), ...this.conflict.filter((r) => !bare(r)), ...this.conflict.filter(bare), ...cli.filter(bare)];
  }

  toString(): string {
    return `SyncProfile(${this.name})`;
  }
}

/**
 * The profile `--profile NAME` names: an entry of the config's `sync.profiles` (which may extend
 * a preset and may take a preset's name to change it), else a preset. Unknown names are
 * InvalidArgument naming what exists.
 */
export function resolveProfile(name: string, defined: Readonly<Record<string, SyncProfileSpec>> = {}): SyncProfile {
  const own = Object.hasOwn(defined, name) ? defined[name] : undefined;
  // An entry named like a preset changes that preset (unless it says what it extends).
  if (own) return new SyncProfile(name, isPreset(name) && own.extends === undefined ? { extends: name, ...own } : own);
  if (isPreset(name)) return new SyncProfile(name, { extends: name });
  const known = [...new Set([...PRESET_NAMES, ...Object.keys(defined)])].join(', ');
  throw new InvalidArgumentError(`sync profile ${JSON.stringify(name)}: no such profile; expected one of: ${known}`);
}
