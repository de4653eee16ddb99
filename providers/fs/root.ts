/**
 * The store's root directory and where each key lives in it: the root resolved on first use with
 * its layout, the hidden tree made before the first write, a key's data, temp and sidecar paths
 * (directories made and checked on the way: no symlink is ever followed), and the per-key lock.
 */
import { lstat, mkdir, open, opendir, readdir, readFile, realpath, rename, rmdir, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { AccessDeniedError, InvalidConfigError, InvalidKeyError, NotFoundError, ProviderError } from '../../src/core/index.js';
import type { FsLayout, ResolvedFsOptions } from './config.js';
import { PROVIDER } from './errors.js';
import { CREATE_FLAGS, READ_FLAGS, RACE_RETRIES, isMissing, lstatMaybe, mkdirInside, safeMkdir, writeNew } from './file-ops.js';
import { lockName, objectPath, parseEntry, sidecarName, tempName } from './layout.js';
import { withKeyLock } from './lock.js';
import { writerTag } from './writer-tag.js';
import {
  ESCAPED_MARKER, HIDDEN_DIR, PLAIN_MARKER, parsePlainSidecarName, plainKeyProblem, plainLockName, plainSidecarName, plainTempName,
} from './plain-layout.js';

export const META = 'meta';
export const LOCKS = 'locks';
export const TMP = 'tmp';

/** Where one key lives on disk. */
export interface Location {
  key: string;
  /** The store's real root. */
  root: string;
  dir: string;
  name: string;
  data: string;
  /** The data file's directories, relative to the root. */
  dirs: string[];
  /** Plain layout: the key's sidecar directory, relative to the root (`.cloudmux/meta/<segments>`). */
  metaDirs?: string[];
}

/** The root as resolved on first use: its real path and the layout it holds. */
export interface RootInfo {
  root: string;
  layout: FsLayout;
  /** Read-only with createRoot: the root does not exist (yet), so the store holds nothing. */
  missing?: boolean;
}

export class FsRoot {
  private rootReady: Promise<RootInfo> | undefined;
  private writesReady: Promise<void> | undefined;
  /** Sidecars (path and etag) a verified read proved wrong; see sidecar-io.ts, distrust. */
  readonly distrusted = new Set<string>();

  constructor(readonly options: Readonly<ResolvedFsOptions>) {}

  /** Read-only: nothing under the root is ever created, changed or removed. */
  get readOnly(): boolean {
    return this.options.readOnly;
  }

  /**
   * The root, resolved once. A missing root is made (createRoot), or InvalidConfig (createRoot
   * false); read-only, it is never made: with createRoot it is an empty store (a destination not
   * written yet; looked for again on every call), without it NotFound.
   */
  ready(): Promise<RootInfo> {
    this.rootReady ??= (async (): Promise<RootInfo> => {
      const root = this.options.root;
      if (this.options.createRoot && !this.readOnly) await mkdir(root, { recursive: true });
      let real: string;
      try {
        real = await realpath(root);
      } catch (e) {
        if (!this.readOnly || !isMissing(e)) throw e;
        if (!this.options.createRoot) throw new NotFoundError(`fs store root ${root} does not exist`, { provider: PROVIDER, cause: e });
        this.rootReady = undefined;
        return { root, layout: this.options.layout ?? 'plain', missing: true };
      }
      const st = await lstat(real);
      if (!st.isDirectory()) throw new InvalidConfigError(`fs store root ${root} is not a directory`, { provider: PROVIDER });
      return { root: real, layout: await this.resolveLayout(real) };
    })().catch((e: unknown) => {
      this.rootReady = undefined;
      if (isMissing(e)) throw new InvalidConfigError(`fs store root ${this.options.root} does not exist (createRoot is false)`, { provider: PROVIDER, cause: e });
      throw e;
    });
    return this.rootReady;
  }

  /** AccessDenied before anything is done when the store is read-only. */
  assertWritable(key?: string): void {
    if (this.readOnly) throw new AccessDeniedError(`the fs store ${this.options.root} was opened read-only`, { provider: PROVIDER, key });
  }

  /**
   * The layout of the root: its marker if it has one (an explicit option that contradicts it is
   * InvalidConfig), else the explicit option, else escaped when the top level holds what only the
   * escaped layout writes (`%d` / `%c` directories, `%m` sidecars), else plain.
   */
  private async resolveLayout(root: string): Promise<FsLayout> {
    const wanted = this.options.layout;
    const marked = await readMarker(root);
    if (marked) {
      if (wanted && wanted !== marked) {
        throw new InvalidConfigError(`fs store root ${this.options.root} holds a ${marked}-layout store; it cannot be opened with layout=${wanted}`, { provider: PROVIDER });
      }
      return marked;
    }
    if (wanted) return wanted;
    const dir = await opendir(root);
    for await (const d of dir) {
      const p = parseEntry(d.name);
      if (!p || !d.name.includes('%')) continue;
      // Leaving the loop closes the directory.
      if ((d.isDirectory() && (p.kind === 'dir' || p.kind === 'chunk')) || (d.isFile() && p.kind === 'sidecar')) return 'escaped';
    }
    return 'plain';
  }

  /**
   * Before the first write: records the layout in the root (so that it is never misread later)
   * and, for plain, makes the hidden directories, each checked to be a real directory.
   */
  prepareWrites(root: string, layout: FsLayout): Promise<void> {
    this.assertWritable();
    this.writesReady ??= (async () => {
      if (layout === 'escaped') {
        await writeNew(join(root, ESCAPED_MARKER), 'escaped\n');
        return;
      }
      for (const sub of [[], [META], [LOCKS], [TMP]]) await safeMkdir(join(root, HIDDEN_DIR, ...sub));
      await writeNew(join(root, ...PLAIN_MARKER), 'plain\n');
    })().catch((e: unknown) => {
      this.writesReady = undefined;
      throw e;
    });
    return this.writesReady;
  }

  /**
   * Plain: runs `fn`, which creates a file in the hidden directory; if that directory vanished
   * (removed by hand while the store was open), makes it again and retries once. `fromCreate`
   * tells a missing hidden directory from other ENOENTs `fn` may meet.
   */
  async inHiddenDir<T>(root: string, fn: () => Promise<T>, fromCreate: (e: unknown) => boolean): Promise<T> {
    await this.prepareWrites(root, 'plain');
    try {
      return await fn();
    } catch (e) {
      if (!isMissing(e) || !fromCreate(e) || (await lstatMaybe(join(root, HIDDEN_DIR, TMP)))) throw e;
      this.writesReady = undefined;
      await this.prepareWrites(root, 'plain');
      return fn();
    }
  }

  /**
   * The key's location. With `create`, makes the directories one by one, refusing anything that is
   * not a real directory; with `check` (and without create), checks that the existing path has no
   * symlink in it (NotFound-ish errors when it does not exist). Plain: InvalidKey for what the
   * layout cannot hold, before any I/O on the key's path.
   */
  async locate(key: string, create: boolean, check = true): Promise<Location> {
    const { root, layout } = await this.ready();
    let loc: Location;
    if (layout === 'plain') {
      const problem = plainKeyProblem(key);
      if (problem) throw new InvalidKeyError(`invalid key ${JSON.stringify(key.slice(0, 200))}: ${problem}`, { provider: PROVIDER, key });
      const segments = key.split('/');
      const dirs = segments.slice(0, -1);
      const dir = join(root, ...dirs);
      loc = { key, root, dir, name: segments[segments.length - 1]!, data: join(dir, segments[segments.length - 1]!), dirs, metaDirs: [HIDDEN_DIR, META, ...segments] };
    } else {
      const p = objectPath(key);
      const dir = join(root, ...p.dirs);
      loc = { key, root, dir, name: p.name, data: join(dir, p.name), dirs: p.dirs };
    }
    if (create) await this.prepareWrites(root, layout);
    if (loc.dirs.length === 0 || (!create && !check)) return loc;
    try {
      // The trailing slash makes a file where a directory belongs ENOTDIR (handled below), not a match.
      const real = await realpath(`${loc.dir}/`);
      if (real === loc.dir) return loc;
      throw symlinkRefused(key);
    } catch (e) {
      if (!create || !isMissing(e)) throw e;
    }
    let cur = root;
    for (const [i, d] of loc.dirs.entries()) {
      cur = join(cur, d);
      try {
        await mkdir(cur);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const st = await lstat(cur);
      if (st.isSymbolicLink()) throw symlinkRefused(key);
      if (st.isDirectory()) continue;
      if (loc.metaDirs) {
        const object = loc.dirs.slice(0, i + 1).join('/');
        throw new InvalidKeyError(`plain layout: ${JSON.stringify(key)} cannot be stored because ${JSON.stringify(object)} is an object (a file), and a path cannot be both a file and a directory; use layout=escaped`, { provider: PROVIDER, key });
      }
      throw new ProviderError(`a file that is not part of the store's layout blocks the path of ${JSON.stringify(key)}`, { provider: PROVIDER, key });
    }
    return loc;
  }

  /** A fresh temp file in the key's directory, retrying if a concurrent delete prunes the directory first. */
  async createTemp(key: string): Promise<{ loc: Location; fh: FileHandle; path: string }> {
    for (let attempt = 0; ; attempt++) {
      const loc = await this.locate(key, true);
      if (loc.metaDirs) await refuseDirectoryOfObjects(loc);
      const path = this.tempPath(loc);
      try {
        return { loc, fh: await open(path, CREATE_FLAGS, 0o666), path };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= RACE_RETRIES) throw e;
      }
    }
  }

  tempPath(loc: Location): string {
    return loc.metaDirs ? join(loc.dir, plainTempName(writerTag())) : join(loc.dir, tempName(loc.name, writerTag()));
  }

  /** Where a sidecar is written before it is renamed into place (same file system). */
  sidecarTempPath(loc: Location): string {
    return loc.metaDirs ? join(loc.root, HIDDEN_DIR, TMP, plainTempName(writerTag())) : this.tempPath(loc);
  }

  sidecarDir(loc: Location): string {
    return loc.metaDirs ? join(loc.root, ...loc.metaDirs) : loc.dir;
  }

  sidecarPath(loc: Location, inode: bigint): string {
    return loc.metaDirs ? join(loc.root, ...loc.metaDirs, plainSidecarName(inode)) : join(loc.dir, sidecarName(loc.name, inode));
  }

  /** Removes the key's directories that a delete left empty, deepest first. */
  async pruneEmptyDirs(loc: Location): Promise<void> {
    const chains = [loc.dirs.map((_, i) => loc.dirs.slice(0, i + 1))];
    // The sidecar tree above the key's own directory (removed under the lock), down to
    // `.cloudmux/meta`, never that directory itself.
    if (loc.metaDirs) chains.push(loc.metaDirs.slice(3).map((_, i) => loc.metaDirs!.slice(0, i + 3)));
    for (const chain of chains) {
      for (let n = chain.length - 1; n >= 0; n--) {
        try {
          await rmdir(join(loc.root, ...chain[n]!));
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') break;
        }
      }
    }
  }

  /** Runs `fn` holding the key's lock (in-process queue + O_EXCL lock file: see lock.ts). */
  withLock<T>(loc: Location, key: string, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    const plain = loc.metaDirs !== undefined;
    const run = (): Promise<T> => withKeyLock(plain ? join(loc.root, HIDDEN_DIR, LOCKS, plainLockName(key)) : join(loc.dir, lockName(loc.name)), {
      timeoutMs: this.options.lockTimeoutMs,
      staleMs: this.options.staleLockMs,
      asidePath: () => this.sidecarTempPath(loc),
      signal,
      key,
    }, fn);
    return plain ? this.inHiddenDir(loc.root, run, (e) => (e as NodeJS.ErrnoException).syscall === 'open') : run();
  }

  /** Renames a written temp sidecar to be the sidecar of `inode` (removing the temp on failure). */
  async placeSidecar(loc: Location, temp: string, inode: bigint): Promise<string> {
    const path = this.sidecarPath(loc, inode);
    for (let attempt = 0; ; attempt++) {
      try {
        // Plain: one realpath proves the key's sidecar directory exists with no symlink on the way;
        // otherwise it is made (and checked) one directory at a time.
        if (loc.metaDirs) {
          const dir = join(loc.root, ...loc.metaDirs);
          if ((await realpath(dir).catch(() => undefined)) !== dir) await mkdirInside(loc.root, loc.metaDirs);
        }
        await rename(temp, path);
        return path;
      } catch (e) {
        // Plain: missing, or pruned by a delete of a neighbouring key right after we made it.
        if (loc.metaDirs && isMissing(e) && attempt < RACE_RETRIES && (await lstatMaybe(temp))) continue;
        await unlink(temp).catch(() => undefined);
        throw e;
      }
    }
  }
}

/** The layout a root's marker file records, if it has one. */
async function readMarker(root: string): Promise<FsLayout | undefined> {
  const read = (path: string) => readFile(path, { encoding: 'utf8', flag: READ_FLAGS }).then((t) => t.trim(), () => undefined);
  if ((await read(join(root, ...PLAIN_MARKER))) === 'plain') return 'plain';
  if ((await read(join(root, ESCAPED_MARKER))) === 'escaped') return 'escaped';
  return undefined;
}

/** Plain: InvalidKey when the key's path is a directory that holds anything (an empty one gives way at commit). */
async function refuseDirectoryOfObjects(loc: Location): Promise<void> {
  const st = await lstatMaybe(loc.data);
  if (!st?.isDirectory()) return;
  const inside = await readdir(loc.data).catch(() => [] as string[]);
  if (inside.length > 0) throw directoryClash(loc);
}

export function directoryClash(loc: Location): Error {
  return new InvalidKeyError(
    `plain layout: ${JSON.stringify(loc.key)} cannot be stored because it names a directory that holds objects (${JSON.stringify(`${loc.key}/`)}…), and a path cannot be both a file and a directory; use layout=escaped`,
    { provider: PROVIDER, key: loc.key },
  );
}

export function symlinkRefused(key: string): Error {
  return new AccessDeniedError(`refusing to follow a symlink inside the store on the path of ${JSON.stringify(key)}`, { provider: PROVIDER, key });
}

/** Plain: removes the sidecars in a key's sidecar directory except the one of `keep`. */
export async function removeSidecarsExcept(dir: string, keep: bigint): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    const inode = parsePlainSidecarName(name);
    if (inode !== undefined && inode !== keep) await unlink(join(dir, name)).catch(() => undefined);
  }
}

/** Plain: removes a deleted key's sidecar directory (kept if it holds anything else). */
export async function removeSidecarDir(dir: string): Promise<void> {
  await removeSidecarsExcept(dir, -1n);
  await rmdir(dir).catch(() => undefined);
}
