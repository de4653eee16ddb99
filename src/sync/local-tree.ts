import { createHash } from 'node:crypto';
import { createReadStream, type BigIntStats } from 'node:fs';
import { link, lstat, mkdir, open, opendir, readFile, rename, rmdir, unlink } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { IntegrityError, InvalidArgumentError } from '../core/errors.js';
import { keyProblem } from '../core/keys.js';
import { tagOfTempName, writerGone, writerTag } from '../../providers/fs/writer-tag.js';
import type { FileStamp } from './types.js';

/** The directory at the local root that holds the sync state; never synced. */
export const STATE_DIR = '.cloudmux-sync';
/**
 * Temp files of writes carry this in their name (the fs store's too): never synced; a scan removes
 * those whose writer is known to be gone (writer-tag.ts), or older than {@link TEMP_TTL_MS}.
 */
export const TEMP_MARK = '.cloudmux-tmp-';
/** The fs store's hidden directory (metadata, locks) when the local root is also an fs store root (offlineFirst); never synced. */
export const FS_STORE_DIR = '.cloudmux';
const TEMP_TTL_MS = 60 * 60 * 1000;
/** Files up to this size are hashed from one read (a stream costs more than the bytes for small files). */
const SMALL_FILE = 256 * 1024;
/** Files of one directory stat'ed at once by a scan. */
const STAT_BATCH = 32;

/**
 * Runs a local write's check-and-commit step for a path exclusively against other writers of
 * the directory (offlineFirst passes the fs store's key lock). Default: none.
 */
export type LocalLock = <T>(path: string, fn: () => Promise<T>) => Promise<T>;

/** One local file as a scan found it. `sha256` is the base's when the stamp matched it (not re-read). */
export interface ScannedFile {
  stamp: FileStamp;
  sha256: string;
}

/** Why a path was left out of a round: it is neither synced nor taken as deleted. */
export interface SkippedPath {
  path: string;
  /**
   * `too-large`: above the device profile's maxFileSize (on the side that holds it); `metered`:
   * not of the critical class, and the link is metered (it moves when the link is not).
   */
  reason: 'unstable' | 'unreadable' | 'invalid-name' | 'not-a-file' | 'too-large' | 'metered';
  detail?: string;
}

export interface LocalScan {
  files: Map<string, ScannedFile>;
  /** Paths seen but not examined this round (a deletion is never inferred for these). */
  skipped: SkippedPath[];
  /** Files whose bytes were read (the stamp did not match the base). */
  hashed: number;
}

export type WriteOutcome = { outcome: 'written'; stamp: FileStamp } | { outcome: 'deferred'; reason: string };

/** True when two stamps name the same bytes (same inode, size, mtime and ctime). */
export function sameStamp(a: FileStamp | undefined, b: FileStamp | undefined): boolean {
  if (!a || !b) return a === b;
  return a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

function stampOf(st: BigIntStats): FileStamp {
  return { ino: st.ino.toString(), size: Number(st.size), mtimeNs: st.mtimeNs.toString(), ctimeNs: st.ctimeNs.toString() };
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | null)?.code;
}

/**
 * The local directory of a sync pair, read and written directly (plain files, no sidecars).
 *
 * # Contract
 * - Writes are atomic: bytes go to a temp file in the same directory, are fsynced, then renamed
 *   (or hard-linked, for create-only) into place, and the directory is fsynced.
 * - Nothing local is clobbered: just before a write, delete or move takes effect the target is
 *   stat'ed again, and if it is not the file that was examined (or exists where none was), the
 *   step is deferred (`deferred`) to the next round, which will examine it afresh. Creates are
 *   atomic no-clobber (link fails if the name exists); replacing a file leaves a window of one
 *   stat + rename in which another program's write can be lost — no POSIX call closes it.
 */
export class LocalTree {
  private readonly lock: LocalLock;

  /** `accept`: the paths a scan looks at (a device profile's scope); others are not stat'ed, read or reported. */
  constructor(readonly root: string, private readonly opts: { fsync?: boolean; lock?: LocalLock; accept?: (path: string) => boolean } = {}) {
    this.lock = opts.lock ?? ((_path, fn) => fn());
  }

  abs(path: string): string {
    return join(this.root, ...path.split('/'));
  }

  /** The file's stamp now, or undefined when absent (or not a regular file). */
  async stamp(path: string): Promise<FileStamp | undefined> {
    try {
      const st = await lstat(this.abs(path), { bigint: true });
      return st.isFile() ? stampOf(st) : undefined;
    } catch (e) {
      if (errno(e) === 'ENOENT' || errno(e) === 'ENOTDIR') return undefined;
      throw e;
    }
  }

  /**
   * Walks the tree, stats every file, and reads (hashes) only files whose stamp differs from
   * `known` (the base). A file that changes while being hashed is `unstable` and left out of this
   * round; leftover temp files of interrupted writes are removed.
   */
  async scan(known: (path: string) => { stamp?: FileStamp; sha256: string } | undefined, concurrency = 8): Promise<LocalScan> {
    const files = new Map<string, ScannedFile>();
    const skipped: SkippedPath[] = [];
    const toHash: { path: string; stamp: FileStamp }[] = [];
    // One directory is read at a time per walker (`concurrency` walkers), and its files are
    // stat'ed together: a walk awaiting one lstat after another spent 1.5 s on 2,000 files
    // under load (bench/sync.ts, the quiet round).
    const visit = async (dir: string, prefix: string, more: (dir: string, prefix: string) => void): Promise<void> => {
      let handle;
      try {
        handle = await opendir(dir);
      } catch (e) {
        if (errno(e) === 'ENOENT' && prefix === '') return;
        skipped.push({ path: prefix.slice(0, -1) || '.', reason: 'unreadable', detail: errno(e) });
        return;
      }
      const toStat: { path: string; full: string }[] = [];
      for await (const ent of handle) {
        const name = ent.name;
        const path = prefix + name;
        const full = join(dir, name);
        if (prefix === '' && (name === STATE_DIR || name === FS_STORE_DIR)) continue;
        if (name.includes(TEMP_MARK)) {
          await sweepTemp(full, name);
          continue;
        }
        if (ent.isDirectory()) {
          more(full, `${path}/`);
          continue;
        }
        if (this.opts.accept && !this.opts.accept(path)) continue;
        if (!ent.isFile()) {
          skipped.push({ path, reason: 'not-a-file' });
          continue;
        }
        const problem = keyProblem(path);
        if (problem) {
          skipped.push({ path, reason: 'invalid-name', detail: problem });
          continue;
        }
        toStat.push({ path, full });
      }
      for (let i = 0; i < toStat.length; i += STAT_BATCH) {
        await Promise.all(toStat.slice(i, i + STAT_BATCH).map(async ({ path, full }) => {
          let st: BigIntStats;
          try {
            st = await lstat(full, { bigint: true });
          } catch (e) {
            if (errno(e) !== 'ENOENT') skipped.push({ path, reason: 'unreadable', detail: errno(e) });
            return;
          }
          const stamp = stampOf(st);
          const k = known(path);
          if (k && sameStamp(k.stamp, stamp)) files.set(path, { stamp, sha256: k.sha256 });
          else toHash.push({ path, stamp });
        }));
      }
    };
    await new Promise<void>((done, fail) => {
      const queue: [string, string][] = [[this.root, '']];
      let active = 0;
      const pump = (): void => {
        if (queue.length === 0 && active === 0) return done();
        while (active < Math.max(1, concurrency) && queue.length > 0) {
          const [dir, prefix] = queue.shift()!;
          active++;
          visit(dir, prefix, (d, p) => queue.push([d, p])).then(() => {
            active--;
            pump();
          }, fail);
        }
      };
      pump();
    });
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < toHash.length) {
        const item = toHash[next++]!;
        try {
          const sha256 = await this.hash(item.path, item.stamp.size);
          const after = await this.stamp(item.path);
          if (after === undefined) continue; // gone meanwhile: absent this round
          if (!sameStamp(after, item.stamp)) skipped.push({ path: item.path, reason: 'unstable' });
          else files.set(item.path, { stamp: item.stamp, sha256 });
        } catch (e) {
          if (errno(e) === 'ENOENT') continue;
          skipped.push({ path: item.path, reason: 'unreadable', detail: errno(e) ?? (e as Error).message });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
    // Walkers finish in any order; callers get paths in key order.
    const byPath = <T,>(a: [string, T] | { path: string }, b: [string, T] | { path: string }): number => {
      const x = Array.isArray(a) ? a[0] : a.path;
      const y = Array.isArray(b) ? b[0] : b.path;
      return x < y ? -1 : x > y ? 1 : 0;
    };
    return { files: new Map([...files].sort(byPath)), skipped: skipped.sort(byPath), hashed: toHash.length };
  }

  /** SHA-256 of the file; one readFile when it is small (`size` as stat'ed), else streamed. */
  async hash(path: string, size?: number): Promise<string> {
    if (size !== undefined && size <= SMALL_FILE) return createHash('sha256').update(await readFile(this.abs(path))).digest('hex');
    const h = createHash('sha256');
    for await (const chunk of createReadStream(this.abs(path))) h.update(chunk as Buffer);
    return h.digest('hex');
  }

  read(path: string): Readable {
    return createReadStream(this.abs(path));
  }

  /**
   * Writes `body` to `path` atomically, if `path` is still what was examined (`examined`
   * undefined: absent). With `expectSha256`, bytes that do not match are IntegrityError and
   * nothing is written.
   */
  async write(path: string, body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, examined: FileStamp | undefined, expectSha256?: string): Promise<WriteOutcome> {
    const target = this.abs(path);
    const dir = dirname(target);
    try {
      await mkdir(dir, { recursive: true });
    } catch (e) {
      if (errno(e) === 'EEXIST' || errno(e) === 'ENOTDIR') return { outcome: 'deferred', reason: 'a parent of the path is a file here' };
      throw e;
    }
    const temp = join(dir, `${TEMP_MARK}${writerTag()}`);
    const fh = await open(temp, 'wx', 0o644);
    let committed = false;
    try {
      const h = createHash('sha256');
      try {
        for await (const chunk of body) {
          h.update(chunk);
          await fh.write(chunk);
        }
        if (this.opts.fsync !== false) await fh.sync();
      } finally {
        await fh.close();
      }
      const sha = h.digest('hex');
      if (expectSha256 !== undefined && sha !== expectSha256) {
        throw new IntegrityError(`bytes of ${path} do not match their recorded SHA-256; nothing was written`, { key: path });
      }
      return await this.lock(path, async (): Promise<WriteOutcome> => {
        const now = await this.stamp(path);
        if (examined === undefined) {
          if (now !== undefined) return { outcome: 'deferred', reason: 'a file appeared at the path' };
          try {
            await link(temp, target);
          } catch (e) {
            if (errno(e) === 'EEXIST') return { outcome: 'deferred', reason: 'a file appeared at the path' };
            throw e;
          }
          // Before the stamp is taken: dropping the temp name changes the inode's ctime.
          await unlink(temp);
          committed = true;
        } else {
          if (!sameStamp(now, examined)) return { outcome: 'deferred', reason: 'the file changed since it was examined' };
          await rename(temp, target);
          committed = true;
        }
        await this.syncDir(dir);
        const stamp = await this.stamp(path);
        if (!stamp) return { outcome: 'deferred', reason: 'the file vanished after the write' };
        return { outcome: 'written', stamp };
      });
    } finally {
      if (!committed) await unlink(temp).catch(() => undefined);
    }
  }

  /** Deletes `path` if it is still the examined file; prunes directories left empty. */
  async remove(path: string, examined: FileStamp): Promise<'removed' | 'deferred'> {
    const outcome = await this.lock(path, async () => {
      const now = await this.stamp(path);
      if (now === undefined) return 'removed' as const;
      if (!sameStamp(now, examined)) return 'deferred' as const;
      await unlink(this.abs(path));
      return 'removed' as const;
    });
    if (outcome === 'removed') await this.pruneEmptyParents(path);
    return outcome;
  }

  /**
   * Moves `from` (if still the examined file) to `to` (only if absent): link + unlink, so an
   * existing `to` is never replaced.
   */
  async move(from: string, to: string, examined: FileStamp): Promise<WriteOutcome> {
    const target = this.abs(to);
    // Both paths locked, in one order (no other writer holds two).
    const [first, second] = from < to ? [from, to] : [to, from];
    const moved = await this.lock(first, () => this.lock(second, async (): Promise<WriteOutcome | undefined> => {
      const now = await this.stamp(from);
      if (!sameStamp(now, examined)) return { outcome: 'deferred', reason: 'the file changed since it was examined' };
      try {
        await mkdir(dirname(target), { recursive: true });
        await link(this.abs(from), target);
      } catch (e) {
        const code = errno(e);
        if (code === 'EEXIST' || code === 'ENOTDIR') return { outcome: 'deferred', reason: 'the target path is taken' };
        throw e;
      }
      await unlink(this.abs(from));
      return undefined;
    }));
    if (moved) return moved;
    await this.syncDir(dirname(target));
    await this.pruneEmptyParents(from);
    const stamp = await this.stamp(to);
    if (!stamp) return { outcome: 'deferred', reason: 'the file vanished after the move' };
    return { outcome: 'written', stamp };
  }

  private async pruneEmptyParents(path: string): Promise<void> {
    const parts = path.split('/');
    for (let i = parts.length - 1; i > 0; i--) {
      try {
        await rmdir(join(this.root, ...parts.slice(0, i)));
      } catch {
        return; // not empty (or gone): stop
      }
    }
  }

  private async syncDir(dir: string): Promise<void> {
    if (this.opts.fsync === false) return;
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } catch (e) {
      if (errno(e) !== 'EINVAL' && errno(e) !== 'EISDIR') throw e;
    } finally {
      await fh.close();
    }
  }

  /** The path of a local directory as the state's default location uses it. */
  static defaultStatePath(root: string): string {
    return `${root.endsWith(sep) ? root : root + sep}${STATE_DIR}${sep}state.db`;
  }
}

/**
 * A temp file met by a scan: removed when its writer is known to be gone (same host, process
 * ended), or when it is older than an hour where that cannot be told; a live writer's is kept
 * (the fs store's puts under offlineFirst write theirs in the same directories).
 */
async function sweepTemp(full: string, name: string): Promise<void> {
  const gone = writerGone(tagOfTempName(name));
  if (gone === false) return;
  if (gone === undefined) {
    const st = await lstat(full).catch(() => undefined);
    if (!st || Date.now() - st.mtimeMs < TEMP_TTL_MS) return;
  }
  await unlink(full).catch(() => undefined);
}

/** Checks a device id: it appears in file names and object metadata. */
export function checkDevice(device: string): string {
  if (!/^[A-Za-z0-9_]{1,40}$/.test(device)) {
    throw new InvalidArgumentError(`device id ${JSON.stringify(device)}: use 1-40 letters, digits or _ (it appears in conflict file names and object metadata)`);
  }
  return device;
}
