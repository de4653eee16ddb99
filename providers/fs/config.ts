import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidConfigError } from '../../src/core/errors.js';
import { PROVIDER } from './errors.js';

/**
 * How keys map to files. `plain`: key `a/b/c.jpg` is the file `<root>/a/b/c.jpg`, metadata in the
 * hidden tree `<root>/.cloudmux/` (what ls, tar, rclone and users expect; a segment must fit in one
 * file name, and a key cannot be both an object and a directory of objects). `escaped`: every valid
 * key fits (see layout.ts), at the price of `%d` directory names.
 */
export type FsLayout = 'plain' | 'escaped';

export const LAYOUTS: readonly FsLayout[] = ['plain', 'escaped'];

export interface FsStoreOptions {
  /** The directory that holds the store. Relative paths resolve against the working directory. */
  root: string;
  /**
   * The on-disk layout. Default: the layout the root already records (its marker file) or holds
   * (an escaped tree, recognised by its `%d` directories and `%m` sidecars at the top), else
   * `plain`. An explicit layout that contradicts the root's marker is InvalidConfig on first use,
   * so an existing store is never misread.
   */
  layout?: FsLayout;
  /** Create the root (and its parents) when missing. Default true. */
  createRoot?: boolean;
  /** fsync data, sidecars and directories before a write returns, so it survives a power cut. Default true. */
  fsync?: boolean;
  /**
   * Temp files, lock files and orphaned sidecars untouched for this long are crash leftovers;
   * listings remove those they meet. Default 1 hour (a put in flight keeps its temp file fresh).
   * Temp files of writers known to be dead (this host, pid gone) go at once, and those of live
   * writers never (writer-tag.ts).
   */
  leftoverTtlMs?: number;
  /** Remove crash leftovers met while listing. Default true. */
  sweepOnList?: boolean;
  /** How long a write waits for another writer's lock on the same key before failing Transient. Default 30 s. */
  lockTimeoutMs?: number;
  /**
   * A lock file held this long by a process that cannot be confirmed alive (another host) is
   * broken. Locks are held for a few file operations, never while a body streams. Default 60 s.
   * On the same host, a lock whose process is gone is broken at once.
   */
  staleLockMs?: number;
  /** Objects up to this size are read whole on get and their file closed at once. Default 64 KiB. */
  smallObjectBytes?: number;
  /**
   * Never create, change or remove anything under the root: the root must exist, writes fail
   * with AccessDenied, listings sweep nothing, and digests recomputed for files without a
   * believable sidecar are not stored (they are recomputed on the next look). For sources and
   * read-only commands. Default false.
   */
  readOnly?: boolean;
}

export type ResolvedFsOptions = Required<Omit<FsStoreOptions, 'layout'>> & { layout?: FsLayout };

export const DEFAULTS: Omit<ResolvedFsOptions, 'root' | 'layout'> = {
  createRoot: true,
  fsync: true,
  leftoverTtlMs: 60 * 60 * 1000,
  sweepOnList: true,
  lockTimeoutMs: 30_000,
  staleLockMs: 60_000,
  smallObjectBytes: 64 * 1024,
  readOnly: false,
};

/** Options with their defaults filled in; InvalidConfig for values that make no sense. */
export function resolveFsOptions(opts: FsStoreOptions): ResolvedFsOptions {
  if (typeof opts.root !== 'string' || opts.root === '') throw new InvalidConfigError('fs store needs a root directory', { provider: PROVIDER });
  const out: ResolvedFsOptions = { ...DEFAULTS, ...stripUndefined(opts), root: resolve(opts.root) };
  if (out.layout !== undefined && !LAYOUTS.includes(out.layout)) {
    throw new InvalidConfigError(`fs option layout must be ${LAYOUTS.join(' or ')}, got ${String(out.layout)}`, { provider: PROVIDER });
  }
  for (const name of ['leftoverTtlMs', 'lockTimeoutMs', 'staleLockMs', 'smallObjectBytes'] as const) {
    const v = out[name];
    if (!Number.isSafeInteger(v) || v < 0) throw new InvalidConfigError(`fs option ${name} must be a non-negative integer, got ${String(v)}`, { provider: PROVIDER });
  }
  return out;
}

const URL_PARAMS: Record<string, keyof Omit<FsStoreOptions, 'root'>> = {
  create: 'createRoot',
  fsync: 'fsync',
  leftover_ttl_ms: 'leftoverTtlMs',
  sweep: 'sweepOnList',
  lock_timeout_ms: 'lockTimeoutMs',
  stale_lock_ms: 'staleLockMs',
  small_object_bytes: 'smallObjectBytes',
  layout: 'layout',
  read_only: 'readOnly',
};

/**
 * Options from a `file:///abs/path?fsync=false` URL (host empty or `localhost`), overridden by
 * `extra` (typed options from config files). Unknown query parameters are InvalidConfig, so a typo
 * does not silently fall back to a default.
 */
export function optionsFromUrl(url: URL, extra: Record<string, unknown> = {}): FsStoreOptions {
  if (url.protocol !== 'file:') throw new InvalidConfigError(`fs store URLs are file:///path, got ${url.protocol}`, { provider: PROVIDER });
  if (url.host !== '' && url.host !== 'localhost') throw new InvalidConfigError(`file URLs name a local path; host ${url.host} is not supported`, { provider: PROVIDER });
  const root = fileURLToPath(url);
  if (!isAbsolute(root)) throw new InvalidConfigError('fs store root must be absolute', { provider: PROVIDER });
  const opts: FsStoreOptions = { root };
  const bag = opts as unknown as Record<string, unknown>;
  for (const [param, value] of url.searchParams) {
    const name = URL_PARAMS[param];
    if (!name) throw new InvalidConfigError(`unknown fs store parameter ${param}; known: ${Object.keys(URL_PARAMS).join(', ')}`, { provider: PROVIDER });
    bag[name] = parseParam(param, name, value);
  }
  for (const [name, value] of Object.entries(extra)) {
    if (value === undefined) continue;
    if (name !== 'root' && !(Object.values(URL_PARAMS) as string[]).includes(name)) {
      throw new InvalidConfigError(`unknown fs store option ${name}`, { provider: PROVIDER });
    }
    bag[name] = value;
  }
  return opts;
}

function parseParam(param: string, name: string, value: string): boolean | number | string {
  if (name === 'layout') {
    if ((LAYOUTS as readonly string[]).includes(value)) return value;
    throw new InvalidConfigError(`fs store parameter layout must be ${LAYOUTS.join(' or ')}, got ${value}`, { provider: PROVIDER });
  }
  if (name === 'createRoot' || name === 'fsync' || name === 'sweepOnList' || name === 'readOnly') {
    if (value === 'true' || value === '1') return true;
    if (value === 'false' || value === '0') return false;
    throw new InvalidConfigError(`fs store parameter ${param} must be true or false, got ${value}`, { provider: PROVIDER });
  }
  const n = Number(value);
  if (value === '' || !Number.isSafeInteger(n) || n < 0) throw new InvalidConfigError(`fs store parameter ${param} must be a non-negative integer, got ${value}`, { provider: PROVIDER });
  return n;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
