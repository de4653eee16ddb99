import { randomBytes } from 'node:crypto';
import { constants as fsConstants, type BigIntStats } from 'node:fs';
import { copyFile, lstat, mkdir, open, opendir, readdir, readFile, realpath, rename, rm, rmdir, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import {
  AccessDeniedError, AlreadyExistsError, IntegrityError, InvalidConfigError, InvalidKeyError, MultiHasher, NotFoundError, NotModifiedError,
  NotSupportedError, PreconditionFailedError, ProviderError, SHA256_KEY, TransientError, bodyChunks, checkCopy, checkGet, holdErrors,
  checkPut, checksumMismatches, isCloudmuxError, keyProblem, resolveRange, throwIfAborted, userMetadata, validateKey, validateMetadata,
  validatePrefix, deleteEach,
} from '../../src/core/index.js';
import type {
  BlobStore, Body, Capabilities, Checksums, CopyOptions, DeleteManyResult, GetOptions, GetResult, ListItem, ListOptions,
  ObjectMeta, ObjectSummary, PresignOptions, PutOptions, SignalOptions, UpdateMetadataOptions,
} from '../../src/core/index.js';
import { resolveFsOptions, type FsLayout, type FsStoreOptions, type ResolvedFsOptions } from './config.js';
import { PROVIDER, mapFsError } from './errors.js';
import { lockName, objectPath, parseEntry, sidecarName, tempName } from './layout.js';
import {
  ESCAPED_MARKER, HIDDEN_DIR, PLAIN_MARKER, isReservedName, parsePlainSidecarName, plainKeyProblem, plainLockName, plainSidecarName, plainTempName,
} from './plain-layout.js';
import { withKeyLock } from './lock.js';
import { derivedEtag, judgeSidecar, mtimeOf, sidecarMeta, sidecarSummary, type Sidecar, type SidecarReading } from './sidecar.js';

const O_NOFOLLOW = fsConstants.O_NOFOLLOW ?? 0;
const READ_FLAGS = fsConstants.O_RDONLY | O_NOFOLLOW;
const CREATE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | O_NOFOLLOW;
const READ_CHUNK = 128 * 1024;
const DEFAULT_CONTENT_TYPE = 'application/octet-stream';
/** Retries when a concurrent writer or delete changes the file between two looks at it. */
const RACE_RETRIES = 8;

/** Where one key lives on disk. */
interface Location {
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
interface RootInfo {
  root: string;
  layout: FsLayout;
}

/** One directory being listed: where its entries live and, for plain, where their sidecars do. */
interface Cursor {
  dir: string;
  /** The key bytes every entry below starts with. */
  keyBytes: Buffer;
  /** Escaped: inside a chunk directory (`%e` names are valid there). */
  inChunk?: boolean;
  /** Plain: the sidecar directory mirroring `dir`. */
  metaDir?: string;
  atTop: boolean;
}

/** One listed entry, in key order within its directory. */
interface Entry {
  kind: 'data' | 'dir';
  /** The key bytes it stands for (a directory's end with its `/` or are a chunk's piece). */
  bytes: Buffer;
  path: string;
  /** Data entries: where the sidecar of a given inode would be. */
  sidecarPath?: (inode: bigint) => string;
  /** Directory entries: the cursor to descend with. */
  sub?: Omit<Cursor, 'keyBytes'>;
}

const META = 'meta';
const LOCKS = 'locks';
const TMP = 'tmp';

/** The object currently at a key: its data file's stat and its (possibly recomputed) sidecar. */
interface Current {
  loc: Location;
  st: BigIntStats;
  sidecar: Sidecar;
}

interface WalkContext {
  prefix: Buffer;
  startAfter?: Buffer;
  delimiter?: Buffer;
  signal?: AbortSignal;
  /** The last common prefix emitted, so each is emitted once. */
  lastPrefix?: string;
  /** Existence probe: yield objects without stat-ing them. */
  probe: boolean;
}

/**
 * A directory on local disk as a BlobStore, in one of two on-disk layouts:
 * - `plain` (the default for new roots, plain-layout.ts): key `a/b` is the file `<root>/a/b`, so
 *   any directory tree is a store and every store is a tree ls, tar and rclone read as it is;
 *   metadata, locks and sidecar temp files live under `<root>/.cloudmux/`. It cannot hold a
 *   segment over 255 bytes, nor a key that is both an object and a directory of objects
 *   (InvalidKey before anything is written).
 * - `escaped` (layout.ts): every valid key, with `%d` directory names.
 *
 * The layout of a root is recorded in a marker file on the first write; without one, a root whose
 * top level holds escaped-layout entries is opened as escaped (see FsStoreOptions.layout).
 *
 * # Contract (beyond BlobStore's)
 * - Puts stream into a temp file in the key's own directory while hashing (SHA-256, MD5, CRC32C),
 *   fsync it, write the sidecar for the temp file's inode, then rename the sidecar and the data file
 *   into place under the key's lock. The data rename is the commit point: readers see the old
 *   bytes with the old sidecar or the new bytes with the new one, never a mix or a part.
 * - Conditional puts and copies, updateMetadata and delete hold a per-key lock (in-process queue +
 *   O_EXCL lock file), so `ifNoneMatch`/`ifMatch` are atomic across processes sharing the root.
 * - get opens the data file first and reads everything from that descriptor, so an overwrite or
 *   delete during a read never changes what the read returns.
 * - Keys can never reach outside the root: they are validated and encoded (no `.`, `..` or `/` in a
 *   name), every directory is checked to be a real directory (no symlink) and files are opened with
 *   O_NOFOLLOW; a symlink planted inside the root fails the call with AccessDenied.
 * - list walks one directory at a time (read whole, sorted, then descended in order): memory is
 *   bounded by the entries of the directories on the current path, not by the store.
 *
 * # Crash recovery
 * The sidecar is named after the inode of the data file it describes and carries its size. A crash
 * leaves at worst: temp files, lock files, or sidecars of inodes that are not (or no longer)
 * the data file; none is ever mistaken for an object, and listings delete those older than
 * `leftoverTtlMs` (plain: a key's stale sidecars are removed by its next write, and the sidecars
 * of objects deleted by hand by the listing that finds them gone). A data file without a matching sidecar (written by hand, or rewritten in place to
 * another size) is an object with derived etag and no known digest in listings; head and get then
 * recompute its digests once (one full read) and store a fresh sidecar. A file rewritten in place
 * at the same size keeps its old sidecar, so `verify` reports the changed bytes as IntegrityError
 * rather than blessing them.
 *
 * # Limits
 * POSIX file systems (Linux, macOS); the root must be case- and normalization-sensitive, since keys
 * differing only in case or Unicode normalization are different objects. Hard links, rename,
 * O_NOFOLLOW and O_EXCL must work (not FAT). No versions, no presigned URLs.
 */
export class FsStore implements BlobStore {
  readonly provider = PROVIDER;
  readonly capabilities: Capabilities = {
    conditionalPut: true,
    versioning: false,
    nativeChecksums: [],
    presign: false,
    streaming: true,
  };
  readonly options: Readonly<ResolvedFsOptions>;
  private rootReady: Promise<RootInfo> | undefined;
  private writesReady: Promise<void> | undefined;

  constructor(options: FsStoreOptions) {
    this.options = resolveFsOptions(options);
  }

  // ----------------------------------------------------------------------------------------------
  // Writes

  async put(key: string, body: Body, opts: PutOptions = {}): Promise<ObjectMeta> {
    checkPut(PROVIDER, this.capabilities, key, opts);
    const ctx = { op: 'put', key, signal: opts.signal };
    const temps: string[] = [];
    try {
      const { loc, fh, path } = await this.createTemp(key);
      temps.push(path);
      const hasher = new MultiHasher(['md5', 'crc32c']);
      let st: BigIntStats;
      try {
        let writeFailure: unknown;
        try {
          for await (const chunk of bodyChunks(body)) {
            throwIfAborted(opts.signal, { provider: PROVIDER, key });
            hasher.update(chunk);
            await writeAll(fh, chunk).catch((e: unknown) => {
              writeFailure = e;
              throw e;
            });
          }
        } catch (e) {
          if (e === writeFailure || isCloudmuxError(e) || opts.signal?.aborted) throw e;
          throw new ProviderError(`reading the body failed: ${(e as Error)?.message ?? String(e)}`, { provider: PROVIDER, key, cause: e });
        }
        throwIfAborted(opts.signal, { provider: PROVIDER, key });
        if (this.options.fsync) await fh.sync();
        st = await fh.stat({ bigint: true });
      } finally {
        await fh.close();
      }
      const checksums = hasher.digest();
      if (opts.expect && checksumMismatches(opts.expect, checksums).length > 0) {
        throw new IntegrityError('body does not match the expected checksums; nothing was written', { provider: PROVIDER, key });
      }
      const sidecar: Sidecar = {
        v: 1,
        key,
        inode: String(st.ino),
        size: hasher.bytes,
        etag: newEtag(),
        lastModified: new Date().toISOString(),
        contentType: opts.contentType ?? DEFAULT_CONTENT_TYPE,
        metadata: { ...opts.metadata, [SHA256_KEY]: checksums.sha256! },
        checksums,
      };
      temps.push(await this.writeTempSidecar(loc, sidecar));
      await this.commit(loc, temps[0]!, temps[1]!, sidecar, { ifNoneMatch: opts.ifNoneMatch, ifMatch: opts.ifMatch, signal: opts.signal });
      return sidecarMeta(sidecar);
    } catch (e) {
      await Promise.all(temps.map((t) => unlink(t).catch(() => undefined)));
      throw mapFsError(e, ctx);
    }
  }

  async copy(src: string, dst: string, opts: CopyOptions = {}): Promise<ObjectMeta> {
    checkCopy(PROVIDER, this.capabilities, src, dst, opts);
    const ctx = { op: 'copy', key: src, signal: opts.signal };
    const temps: string[] = [];
    try {
      for (let attempt = 0; ; attempt++) {
        const source = await this.current(src, opts.signal);
        if (opts.sourceIfMatch !== undefined && opts.sourceIfMatch !== source.sidecar.etag) {
          throw new PreconditionFailedError(`source etag is ${source.sidecar.etag}, not ${opts.sourceIfMatch}`, { provider: PROVIDER, key: src });
        }
        const { loc, fh, path } = await this.createTemp(dst);
        temps.push(path);
        await fh.close();
        // FICLONE: a reflink where the file system has them (btrfs, XFS, APFS), a plain copy elsewhere.
        await copyFile(source.loc.data, path, fsConstants.COPYFILE_FICLONE);
        throwIfAborted(opts.signal, { provider: PROVIDER, key: dst });
        const after = await lstatMaybe(source.loc.data);
        const copied = await open(path, fsConstants.O_RDONLY | O_NOFOLLOW);
        let st: BigIntStats;
        try {
          st = await copied.stat({ bigint: true });
          if (this.options.fsync) await copied.sync();
        } finally {
          await copied.close();
        }
        if (!after || after.ino !== source.st.ino || Number(st.size) !== source.sidecar.size) {
          // The source was replaced while copying: what we copied may be the newer bytes.
          await unlink(temps.pop()!).catch(() => undefined);
          if (attempt >= RACE_RETRIES) throw new TransientError('the source kept changing during the copy', { provider: PROVIDER, key: src });
          continue;
        }
        const replace = opts.metadata !== undefined;
        const from = source.sidecar;
        const sidecar: Sidecar = {
          v: 1,
          key: dst,
          inode: String(st.ino),
          size: from.size,
          etag: newEtag(),
          lastModified: new Date().toISOString(),
          contentType: (replace ? opts.contentType : (opts.contentType ?? from.contentType)) ?? DEFAULT_CONTENT_TYPE,
          metadata: replace ? { ...opts.metadata, [SHA256_KEY]: from.checksums.sha256! } : { ...from.metadata },
          checksums: { ...from.checksums },
        };
        temps.push(await this.writeTempSidecar(loc, sidecar));
        await this.commit(loc, temps[0]!, temps[1]!, sidecar, { ifNoneMatch: opts.ifNoneMatch, signal: opts.signal });
        return sidecarMeta(sidecar);
      }
    } catch (e) {
      await Promise.all(temps.map((t) => unlink(t).catch(() => undefined)));
      throw mapFsError(e, ctx);
    }
  }

  async updateMetadata(key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
    validateKey(key, PROVIDER);
    validateMetadata(opts.metadata, PROVIDER, key);
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    const ctx = { op: 'updateMetadata', key, signal: opts.signal };
    try {
      for (let attempt = 0; ; attempt++) {
        // Outside the lock: a missing sidecar is recomputed (which takes the lock itself).
        const seen = await this.current(key, opts.signal);
        const done = await this.withLock(seen.loc, key, opts.signal, async () => {
          const st = await lstatMaybe(seen.loc.data);
          if (!st || st.ino !== seen.st.ino) return undefined;
          const reading = await this.readSidecar(seen.loc, st, key);
          if (!reading.current) return undefined;
          const cur = reading.current;
          if (opts.ifMatch !== undefined && opts.ifMatch !== cur.etag) {
            throw new PreconditionFailedError(`etag is ${cur.etag}, not ${opts.ifMatch}`, { provider: PROVIDER, key });
          }
          const next: Sidecar = {
            ...cur,
            etag: newEtag(),
            lastModified: new Date().toISOString(),
            contentType: opts.contentType ?? cur.contentType,
            metadata: { [SHA256_KEY]: cur.checksums.sha256!, ...opts.metadata },
          };
          const temp = await this.writeTempSidecar(seen.loc, next);
          await this.placeSidecar(seen.loc, temp, st.ino);
          if (this.options.fsync) await syncDir(this.sidecarDir(seen.loc));
          return next;
        });
        if (done) return sidecarMeta(done);
        if (attempt >= RACE_RETRIES) throw new TransientError('the object kept changing', { provider: PROVIDER, key });
      }
    } catch (e) {
      throw mapFsError(e, ctx);
    }
  }

  async delete(key: string, opts: SignalOptions = {}): Promise<void> {
    validateKey(key, PROVIDER);
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    const ctx = { op: 'delete', key, signal: opts.signal };
    try {
      let loc: Location;
      try {
        loc = await this.locate(key, false);
      } catch (e) {
        if (isMissing(e)) return;
        throw e;
      }
      try {
        await this.withLock(loc, key, opts.signal, async () => {
          const st = await lstatMaybe(loc.data);
          if (!st || !st.isFile()) return;
          await unlink(loc.data);
          await unlink(this.sidecarPath(loc, st.ino)).catch(() => undefined);
          if (this.options.fsync) await syncDir(loc.dir);
          if (loc.metaDirs) await removeSidecarDir(join(loc.root, ...loc.metaDirs));
        });
      } catch (e) {
        // The directory vanished under us (a concurrent delete pruned it): the object is gone too.
        if (isMissing(e)) return;
        throw e;
      }
      await this.pruneEmptyDirs(loc);
    } catch (e) {
      throw mapFsError(e, ctx);
    }
  }

  async deleteMany(keys: Iterable<string>, opts: SignalOptions = {}): Promise<DeleteManyResult> {
    return deleteEach(keys, 8, (key) => this.delete(key, opts), PROVIDER);
  }

  // ----------------------------------------------------------------------------------------------
  // Reads

  async head(key: string, opts: SignalOptions = {}): Promise<ObjectMeta> {
    validateKey(key, PROVIDER);
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    try {
      return sidecarMeta((await this.current(key, opts.signal)).sidecar);
    } catch (e) {
      throw mapFsError(e, { op: 'head', key, signal: opts.signal });
    }
  }

  async get(key: string, opts: GetOptions = {}): Promise<GetResult> {
    checkGet(PROVIDER, key, opts);
    const ctx = { op: 'get', key, signal: opts.signal };
    let fh: FileHandle | undefined;
    try {
      const loc = await this.locate(key, false);
      let sidecar: Sidecar | undefined;
      let st: BigIntStats;
      for (let attempt = 0; ; attempt++) {
        // The descriptor first: whatever happens to the path now, these bytes stay readable.
        fh = await open(loc.data, READ_FLAGS);
        st = await fh.stat({ bigint: true });
        if (!st.isFile()) throw new NotFoundError(`no object at ${key}`, { provider: PROVIDER, key });
        const reading = await this.readSidecar(loc, st, key);
        sidecar = reading.current;
        if (sidecar) break;
        const now = await lstatMaybe(loc.data);
        if (now && now.ino === st.ino) {
          sidecar = await this.recompute(key, loc, fh, st, reading.stale);
          break;
        }
        // Replaced between open and the sidecar read (its sidecar already removed): read the new one.
        await fh.close();
        fh = undefined;
        if (attempt >= RACE_RETRIES) throw new TransientError('the object kept changing', { provider: PROVIDER, key });
      }
      const meta = sidecarMeta(sidecar);
      if (opts.ifMatch !== undefined && opts.ifMatch !== meta.etag) {
        throw new PreconditionFailedError(`etag is ${meta.etag}, not ${opts.ifMatch}`, { provider: PROVIDER, key });
      }
      if (opts.ifNoneMatch !== undefined && (opts.ifNoneMatch === meta.etag || opts.ifNoneMatch === '*')) {
        throw new NotModifiedError('etag matches ifNoneMatch', { provider: PROVIDER, key });
      }
      const range = opts.range ? resolveRange(opts.range, meta.size, PROVIDER, key) : undefined;
      const start = range?.offset ?? 0;
      const length = range?.length ?? meta.size;
      const check = opts.verify && !range ? { expected: meta.checksums, size: meta.size } : undefined;
      let source: ByteSource;
      if (length <= this.options.smallObjectBytes) {
        const buf = await readExactly(fh, start, length);
        await fh.close();
        fh = undefined;
        source = bufferSource(buf, start);
      } else {
        source = fileSource(fh);
        fh = undefined;
      }
      const body = new ObjectBody(source, start, length, key, check, opts.signal);
      return range ? { meta, body, range } : { meta, body };
    } catch (e) {
      await fh?.close().catch(() => undefined);
      throw mapFsError(e, ctx);
    }
  }

  async *list(opts: ListOptions = {}): AsyncGenerator<ListItem> {
    const prefix = opts.prefix ?? '';
    validatePrefix(prefix, PROVIDER);
    throwIfAborted(opts.signal, { provider: PROVIDER });
    const ctx: WalkContext = {
      prefix: Buffer.from(prefix, 'utf8'),
      startAfter: opts.startAfter === undefined ? undefined : Buffer.from(opts.startAfter, 'utf8'),
      delimiter: opts.delimiter ? Buffer.from(opts.delimiter, 'utf8') : undefined,
      signal: opts.signal,
      probe: false,
    };
    try {
      const { root, layout } = await this.ready();
      if (layout === 'plain') {
        if (this.options.sweepOnList) await this.sweepHidden(root);
        yield* this.walk({ dir: root, keyBytes: Buffer.alloc(0), metaDir: join(root, HIDDEN_DIR, META), atTop: true }, ctx);
      } else {
        yield* this.walk({ dir: root, keyBytes: Buffer.alloc(0), inChunk: false, atTop: true }, ctx);
      }
    } catch (e) {
      throw mapFsError(e, { op: 'list', signal: opts.signal });
    }
  }

  async presign(key: string, _opts: PresignOptions): Promise<string> {
    throw new NotSupportedError('the fs store cannot presign URLs', { provider: PROVIDER, key });
  }

  async close(): Promise<void> {}

  toString(): string {
    return pathToFileURL(this.options.root).href;
  }

  /**
   * The path of the file holding `key`'s bytes (whether or not it exists), for diagnostics and
   * tests. Writing to it bypasses every guarantee of the store.
   */
  async dataPath(key: string): Promise<string> {
    validateKey(key, PROVIDER);
    return (await this.locate(key, false, false)).data;
  }

  /** The layout this store reads and writes (resolved on first use: see FsStoreOptions.layout). */
  async layout(): Promise<FsLayout> {
    return (await this.ready()).layout;
  }

  // ----------------------------------------------------------------------------------------------
  // Internals: the root and its layout

  private realRoot(): Promise<string> {
    return this.ready().then((r) => r.root);
  }

  private ready(): Promise<RootInfo> {
    this.rootReady ??= (async () => {
      const root = this.options.root;
      if (this.options.createRoot) await mkdir(root, { recursive: true });
      const real = await realpath(root);
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
  private prepareWrites(root: string, layout: FsLayout): Promise<void> {
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

  // ----------------------------------------------------------------------------------------------
  // Internals: paths

  /**
   * The key's location. With `create`, makes the directories one by one, refusing anything that is
   * not a real directory; with `check` (and without create), checks that the existing path has no
   * symlink in it (NotFound-ish errors when it does not exist). Plain: InvalidKey for what the
   * layout cannot hold, before any I/O on the key's path.
   */
  private async locate(key: string, create: boolean, check = true): Promise<Location> {
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
  private async createTemp(key: string): Promise<{ loc: Location; fh: FileHandle; path: string }> {
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

  private tempPath(loc: Location): string {
    return loc.metaDirs ? join(loc.dir, plainTempName(randomHex())) : join(loc.dir, tempName(loc.name, randomHex()));
  }

  /** Where a sidecar is written before it is renamed into place (same file system). */
  private sidecarTempPath(loc: Location): string {
    return loc.metaDirs ? join(loc.root, HIDDEN_DIR, TMP, plainTempName(randomHex())) : this.tempPath(loc);
  }

  private sidecarDir(loc: Location): string {
    return loc.metaDirs ? join(loc.root, ...loc.metaDirs) : loc.dir;
  }

  private sidecarPath(loc: Location, inode: bigint): string {
    return loc.metaDirs ? join(loc.root, ...loc.metaDirs, plainSidecarName(inode)) : join(loc.dir, sidecarName(loc.name, inode));
  }

  /** Renames a written temp sidecar to be the sidecar of `inode` (removing the temp on failure). */
  private async placeSidecar(loc: Location, temp: string, inode: bigint): Promise<string> {
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

  private async pruneEmptyDirs(loc: Location): Promise<void> {
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

  private withLock<T>(loc: Location, key: string, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
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

  /**
   * Plain: runs `fn`, which creates a file in the hidden directory; if that directory vanished
   * (removed by hand while the store was open), makes it again and retries once. `fromCreate`
   * tells a missing hidden directory from other ENOENTs `fn` may meet.
   */
  private async inHiddenDir<T>(root: string, fn: () => Promise<T>, fromCreate: (e: unknown) => boolean): Promise<T> {
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

  // ----------------------------------------------------------------------------------------------
  // Internals: metadata

  private async readSidecar(loc: Location, st: BigIntStats, key: string): Promise<SidecarReading> {
    try {
      return judgeSidecar(await readFile(this.sidecarPath(loc, st.ino), 'utf8'), key, st);
    } catch (e) {
      if (isMissing(e)) return {};
      throw e;
    }
  }

  private async writeTempSidecar(loc: Location, sidecar: Sidecar): Promise<string> {
    const path = this.sidecarTempPath(loc);
    const create = () => open(path, CREATE_FLAGS, 0o666);
    const fh = loc.metaDirs ? await this.inHiddenDir(loc.root, create, () => true) : await create();
    try {
      await fh.writeFile(JSON.stringify(sidecar));
      if (this.options.fsync) await fh.sync();
    } catch (e) {
      await fh.close().catch(() => undefined);
      await unlink(path).catch(() => undefined);
      throw e;
    }
    await fh.close();
    return path;
  }

  /** The object at `key` now, with a trustworthy sidecar (recomputed if missing). NotFound when absent. */
  private async current(key: string, signal: AbortSignal | undefined): Promise<Current> {
    const loc = await this.locate(key, false);
    for (let attempt = 0; ; attempt++) {
      throwIfAborted(signal, { provider: PROVIDER, key });
      const st = await lstat(loc.data, { bigint: true });
      if (st.isSymbolicLink()) throw symlinkRefused(key);
      if (!st.isFile()) throw new NotFoundError(`no object at ${key}`, { provider: PROVIDER, key });
      const reading = await this.readSidecar(loc, st, key);
      if (reading.current) return { loc, st, sidecar: reading.current };
      const fh = await open(loc.data, READ_FLAGS);
      try {
        const fst = await fh.stat({ bigint: true });
        if (fst.ino === st.ino) return { loc, st: fst, sidecar: await this.recompute(key, loc, fh, fst, reading.stale) };
      } finally {
        await fh.close();
      }
      if (attempt >= RACE_RETRIES) throw new TransientError('the object kept changing', { provider: PROVIDER, key });
    }
  }

  /**
   * A sidecar for a data file that has none (crash, or a file written by hand): digests from one
   * full read of `fh`, etag derived from the file's identity (what listings already showed), user
   * metadata kept from a stale sidecar of the same inode. Stored so that this happens once.
   */
  private async recompute(key: string, loc: Location, fh: FileHandle, st: BigIntStats, stale: Sidecar | undefined): Promise<Sidecar> {
    const hasher = new MultiHasher(['md5', 'crc32c']);
    const buf = Buffer.allocUnsafe(READ_CHUNK);
    for (let pos = 0; ;) {
      const { bytesRead } = await fh.read(buf, 0, buf.byteLength, pos);
      if (bytesRead === 0) break;
      hasher.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
    const checksums = hasher.digest();
    const sidecar: Sidecar = {
      v: 1,
      key,
      inode: String(st.ino),
      size: hasher.bytes,
      etag: derivedEtag(st),
      lastModified: mtimeOf(st).toISOString(),
      contentType: stale?.contentType ?? DEFAULT_CONTENT_TYPE,
      metadata: { ...userMetadata(stale?.metadata ?? {}), [SHA256_KEY]: checksums.sha256! },
      checksums,
    };
    if (hasher.bytes !== Number(st.size)) return sidecar; // Being rewritten in place right now: do not record.
    await this.withLock(loc, key, undefined, async () => {
      const now = await lstatMaybe(loc.data);
      if (!now || now.ino !== st.ino || (await this.readSidecar(loc, now, key)).current) return;
      await this.placeSidecar(loc, await this.writeTempSidecar(loc, sidecar), st.ino);
    }).catch(() => undefined); // Best effort: the caller has its answer either way.
    return sidecar;
  }

  /**
   * Makes a prepared put or copy visible, under the key's lock: checks the conditions against the
   * object there now, renames the sidecar (named after the new inode, so readers of the old data
   * still find theirs), then the data file (the commit point), then drops the old sidecar.
   */
  private async commit(loc: Location, dataTemp: string, sidecarTemp: string, sidecar: Sidecar, cond: { ifNoneMatch?: '*'; ifMatch?: string; signal?: AbortSignal }): Promise<void> {
    const key = sidecar.key;
    await this.withLock(loc, key, cond.signal, async () => {
      let cur = await lstatMaybe(loc.data);
      // Plain: an empty directory (left by hand) gives way; one holding anything is a clash.
      if (cur?.isDirectory() && loc.metaDirs) {
        await rmdir(loc.data).catch((e: unknown) => {
          if (!isMissing(e)) throw directoryClash(loc);
        });
        cur = await lstatMaybe(loc.data);
      }
      if (cur && !cur.isFile()) throw new ProviderError(`something that is not an object file sits at the path of ${JSON.stringify(key)}`, { provider: PROVIDER, key });
      if (cond.ifNoneMatch === '*' && cur) throw new AlreadyExistsError(`${key} already exists`, { provider: PROVIDER, key });
      if (cond.ifMatch !== undefined) {
        if (!cur) throw new NotFoundError(`no object at ${key} to compare with ifMatch`, { provider: PROVIDER, key });
        const etag = (await this.readSidecar(loc, cur, key)).current?.etag ?? derivedEtag(cur);
        if (etag !== cond.ifMatch) throw new PreconditionFailedError(`etag is ${etag}, not ${cond.ifMatch}`, { provider: PROVIDER, key });
      }
      throwIfAborted(cond.signal, { provider: PROVIDER, key });
      const inode = BigInt(sidecar.inode);
      const sidecarPath = await this.placeSidecar(loc, sidecarTemp, inode);
      try {
        await rename(dataTemp, loc.data);
      } catch (e) {
        await unlink(sidecarPath).catch(() => undefined);
        if (isMissing(e)) throw new TransientError('the temp file vanished before commit (removed as a stale leftover?)', { provider: PROVIDER, key, cause: e });
        if ((e as NodeJS.ErrnoException).code === 'EISDIR' && loc.metaDirs) throw directoryClash(loc);
        throw e;
      }
      if (this.options.fsync) await Promise.all([syncDir(loc.dir), loc.metaDirs ? syncDir(this.sidecarDir(loc)) : undefined]);
      if (loc.metaDirs) {
        // Sidecars of other inodes here are crash leftovers (no other writer renames one in while
        // we hold the lock). And the sweep of a directory of orphaned sidecars may have raced us:
        // put ours back if so.
        await removeSidecarsExcept(this.sidecarDir(loc), inode);
        if (!(await lstatMaybe(sidecarPath))) await this.placeSidecar(loc, await this.writeTempSidecar(loc, sidecar), inode);
      } else if (cur && cur.ino !== inode) {
        await unlink(this.sidecarPath(loc, cur.ino)).catch(() => undefined);
      }
    });
  }

  // ----------------------------------------------------------------------------------------------
  // Internals: listing

  private async *walk(cur: Cursor, ctx: WalkContext): AsyncGenerator<ListItem> {
    const entries = cur.metaDir === undefined ? await this.readEscapedEntries(cur) : await this.readPlainEntries(cur);
    for (const e of entries) {
      throwIfAborted(ctx.signal, { provider: PROVIDER });
      const full = cur.keyBytes.byteLength === 0 ? e.bytes : Buffer.concat([cur.keyBytes, e.bytes]);
      if (e.kind === 'data') {
        if (!startsWith(full, ctx.prefix)) continue;
        if (ctx.startAfter && Buffer.compare(full, ctx.startAfter) <= 0) continue;
        const key = full.toString('utf8');
        if (keyProblem(key) || Buffer.byteLength(key, 'utf8') !== full.byteLength) continue;
        const rolled = rolledUp(full, ctx);
        if (rolled !== undefined) {
          if (rolled !== ctx.lastPrefix) {
            ctx.lastPrefix = rolled;
            yield { type: 'prefix', prefix: rolled };
          }
          continue;
        }
        if (ctx.probe) {
          yield { type: 'object', key, size: 0, etag: '', lastModified: new Date(0) };
          continue;
        }
        const summary = await this.summary(e, key);
        if (summary) yield { type: 'object', ...summary };
        continue;
      }
      // A directory: every key below it starts with `full`.
      const n = Math.min(full.byteLength, ctx.prefix.byteLength);
      if (!full.subarray(0, n).equals(ctx.prefix.subarray(0, n))) continue;
      if (ctx.startAfter && !startsWith(ctx.startAfter, full) && Buffer.compare(full, ctx.startAfter) < 0) continue;
      const sub: Cursor = { ...e.sub!, keyBytes: full };
      const rolled = rolledUp(full, ctx);
      if (rolled !== undefined) {
        if (rolled === ctx.lastPrefix) continue;
        if (await this.hasObject(sub, ctx)) {
          ctx.lastPrefix = rolled;
          yield { type: 'prefix', prefix: rolled };
        }
        continue;
      }
      yield* this.walk(sub, ctx);
    }
  }

  private async hasObject(cur: Cursor, ctx: WalkContext): Promise<boolean> {
    const probe: WalkContext = { ...ctx, delimiter: undefined, probe: true };
    for await (const _ of this.walk(cur, probe)) return true;
    return false;
  }

  /** The escaped-layout entries of one directory in key order; crash leftovers met on the way are removed. */
  private async readEscapedEntries(cur: Cursor): Promise<Entry[]> {
    const { dir, inChunk } = cur;
    let handle;
    try {
      handle = await opendir(dir);
    } catch (e) {
      if (isMissing(e)) return [];
      throw e;
    }
    const entries: Entry[] = [];
    const leftovers: string[] = [];
    const sidecars = new Map<string, { name: string; inode: bigint }[]>();
    const dataNames = new Set<string>();
    for await (const d of handle) {
      const p = parseEntry(d.name);
      if (!p) continue;
      const path = join(dir, d.name);
      if (p.kind === 'data') {
        if (!d.isFile() || (p.base === '%e' && !inChunk)) continue;
        dataNames.add(p.base);
        entries.push({ kind: 'data', bytes: p.bytes, path, sidecarPath: (ino) => join(dir, sidecarName(p.base, ino)) });
      } else if (p.kind === 'dir' || p.kind === 'chunk') {
        if (!d.isDirectory() || (p.base === '%e' && !inChunk)) continue;
        entries.push({ kind: 'dir', bytes: p.bytes, path, sub: { dir: path, inChunk: p.kind === 'chunk', atTop: false } });
      } else if (p.kind === 'sidecar') {
        const list = sidecars.get(p.base) ?? [];
        list.push({ name: d.name, inode: p.inode! });
        sidecars.set(p.base, list);
      } else {
        leftovers.push(d.name);
      }
    }
    entries.sort((a, b) => Buffer.compare(a.bytes, b.bytes));
    if (this.options.sweepOnList) await this.sweepEscaped(dir, leftovers, sidecars, dataNames);
    return entries;
  }

  /**
   * The plain-layout entries of one directory in key order: files are objects, directories the
   * keys below them; the store's own names, symlinks, other file types and names that are not valid
   * UTF-8 are skipped. Crash leftovers and orphaned sidecars met on the way are removed.
   */
  private async readPlainEntries(cur: Cursor): Promise<Entry[]> {
    const { dir, metaDir, atTop } = cur;
    let dirents;
    try {
      dirents = await readdir(dir, { withFileTypes: true, encoding: 'buffer' });
    } catch (e) {
      if (isMissing(e)) return [];
      throw e;
    }
    const entries: Entry[] = [];
    const leftovers: string[] = [];
    const names = new Set<string>();
    for (const d of dirents) {
      const raw = d.name as unknown as Buffer;
      const name = raw.toString('utf8');
      if (!Buffer.from(name, 'utf8').equals(raw)) continue;
      if (isReservedName(name, atTop)) {
        if (!atTop || name !== HIDDEN_DIR) leftovers.push(name);
        continue;
      }
      const path = join(dir, name);
      if (d.isFile()) {
        names.add(name);
        entries.push({ kind: 'data', bytes: raw, path, sidecarPath: (ino) => join(metaDir!, name, plainSidecarName(ino)) });
      } else if (d.isDirectory()) {
        names.add(name);
        entries.push({ kind: 'dir', bytes: Buffer.concat([raw, Buffer.from('/')]), path, sub: { dir: path, metaDir: join(metaDir!, name), atTop: false } });
      }
    }
    entries.sort((a, b) => Buffer.compare(a.bytes, b.bytes));
    if (this.options.sweepOnList) await this.sweepPlain(cur, leftovers, names);
    return entries;
  }

  /**
   * Removes escaped-layout crash leftovers untouched for `leftoverTtlMs`: temp and lock files, and
   * sidecars of inodes that are not their data file's. Only bases with no data file or several
   * sidecars cost a stat; the common case (one sidecar per object) costs nothing.
   */
  private async sweepEscaped(dir: string, leftovers: string[], sidecars: Map<string, { name: string; inode: bigint }[]>, dataNames: Set<string>): Promise<void> {
    const candidates = [...leftovers];
    for (const [base, list] of sidecars) {
      if (!dataNames.has(base)) {
        candidates.push(...list.map((s) => s.name));
      } else if (list.length > 1) {
        const st = await lstatMaybe(join(dir, base));
        for (const s of list) if (!st || s.inode !== st.ino) candidates.push(s.name);
      }
    }
    await this.removeOldFiles(candidates.map((name) => join(dir, name)));
  }

  /**
   * Plain: removes old temp files of `cur.dir`, and sidecar directories mirroring it whose object
   * is gone (deleted by hand), under that key's lock and only when untouched for `leftoverTtlMs`.
   * One extra readdir per listed directory; none when the store never wrote metadata there.
   */
  private async sweepPlain(cur: Cursor, leftovers: string[], names: Set<string>): Promise<void> {
    await this.removeOldFiles(leftovers.map((name) => join(cur.dir, name)));
    let metaEntries;
    try {
      metaEntries = await readdir(cur.metaDir!, { withFileTypes: true });
    } catch {
      return;
    }
    const cutoff = Date.now() - this.options.leftoverTtlMs;
    const base = cur.keyBytes.toString('utf8');
    for (const d of metaEntries) {
      const path = join(cur.metaDir!, d.name);
      // A file here is a sidecar of this directory back when it was an object.
      if (!d.isDirectory()) {
        if (!cur.atTop) await this.removeOldFiles([path]);
        continue;
      }
      if (names.has(d.name) || (cur.atTop && d.name === HIDDEN_DIR)) continue;
      const key = `${base}${d.name}`;
      if (keyProblem(key) || plainKeyProblem(key)) continue;
      const loc = await this.locate(key, false, false).catch(() => undefined);
      if (!loc) continue;
      await this.withLock(loc, key, undefined, async () => {
        const [data, meta] = await Promise.all([lstatMaybe(loc.data), lstatMaybe(path)]);
        if (data || !meta || Number(meta.mtimeMs) >= cutoff) return;
        await rm(path, { recursive: true, force: true });
      }).catch(() => undefined);
    }
  }

  /** Plain: old files in `.cloudmux/tmp` and `.cloudmux/locks` (held locks are young). */
  private async sweepHidden(root: string): Promise<void> {
    for (const sub of [TMP, LOCKS]) {
      const dir = join(root, HIDDEN_DIR, sub);
      const names = await readdir(dir).catch(() => [] as string[]);
      await this.removeOldFiles(names.map((n) => join(dir, n)));
    }
  }

  private async removeOldFiles(paths: string[]): Promise<void> {
    const cutoff = Date.now() - this.options.leftoverTtlMs;
    for (const path of paths) {
      try {
        const st = await lstat(path);
        if (st.isFile() && st.mtimeMs < cutoff) await unlink(path);
      } catch {
        // Gone already or not ours to judge.
      }
    }
  }

  private async summary(e: Entry, key: string): Promise<ObjectSummary | undefined> {
    for (let attempt = 0; attempt < 2; attempt++) {
      const st = await lstatMaybe(e.path);
      if (!st || !st.isFile()) return undefined;
      let raw: string | undefined;
      try {
        raw = await readFile(e.sidecarPath!(st.ino), 'utf8');
      } catch (err) {
        if (!isMissing(err)) throw err;
      }
      const reading = raw === undefined ? {} : judgeSidecar(raw, key, st);
      if (reading.current) return sidecarSummary(reading.current);
      const again = await lstatMaybe(e.path);
      if (again && again.ino !== st.ino) continue; // Replaced meanwhile: describe the new one.
      return { key, size: Number(st.size), etag: derivedEtag(st), lastModified: mtimeOf(st) };
    }
    return undefined;
  }
}

// ------------------------------------------------------------------------------------------------
// Reading bodies

interface ByteSource {
  /** Up to `length` bytes at `position`; empty at the end of the file. */
  read(position: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

function fileSource(fh: FileHandle): ByteSource {
  return {
    async read(position, length) {
      const { bytesRead, buffer } = await fh.read(Buffer.allocUnsafe(length), 0, length, position);
      return buffer.subarray(0, bytesRead);
    },
    close: () => fh.close(),
  };
}

function bufferSource(buf: Buffer, offset: number): ByteSource {
  return {
    async read(position, length) {
      return buf.subarray(position - offset, position - offset + length);
    },
    async close() {},
  };
}

/**
 * The body of a get: reads `[start, start + length)` from the descriptor opened by get, one chunk per
 * pull (bounded memory), closes it when done or destroyed, and with `check` fails at the end with
 * IntegrityError if the bytes are not the ones the sidecar describes.
 */
class ObjectBody extends Readable {
  private position: number;
  private readonly end: number;
  private readonly hasher: MultiHasher | undefined;
  private readonly onAbort: (() => void) | undefined;

  constructor(
    private readonly source: ByteSource,
    start: number,
    length: number,
    private readonly key: string,
    private readonly check: { expected: Checksums; size: number } | undefined,
    private readonly signal: AbortSignal | undefined,
  ) {
    super({ highWaterMark: READ_CHUNK });
    holdErrors(this);
    this.position = start;
    this.end = start + length;
    if (check) this.hasher = new MultiHasher([...(check.expected.md5 ? ['md5' as const] : []), ...(check.expected.crc32c ? ['crc32c' as const] : [])]);
    if (signal) {
      this.onAbort = () => this.destroy(mapFsError(signal.reason, { op: 'get', key, signal }));
      if (signal.aborted) process.nextTick(this.onAbort);
      else signal.addEventListener('abort', this.onAbort, { once: true });
    }
  }

  override _read(): void {
    const n = Math.min(READ_CHUNK, this.end - this.position);
    if (n <= 0) {
      this.finish();
      return;
    }
    this.source.read(this.position, n).then((chunk) => {
      if (this.destroyed) return;
      if (chunk.byteLength === 0) {
        this.destroy(new IntegrityError(`the file ended at byte ${this.position} of ${this.end}: truncated behind the store's back`, { provider: PROVIDER, key: this.key }));
        return;
      }
      this.position += chunk.byteLength;
      this.hasher?.update(chunk);
      this.push(chunk);
      if (this.position >= this.end) this.finish();
    }, (e: unknown) => this.destroy(mapFsError(e, { op: 'get', key: this.key, signal: this.signal })));
  }

  private finish(): void {
    if (this.hasher && this.check) {
      const actual = this.hasher.digest();
      const bad = checksumMismatches(this.check.expected, actual);
      if (this.hasher.bytes !== this.check.size || bad.length > 0) {
        this.destroy(new IntegrityError(`${bad.join(', ') || 'size'} mismatch: the stored bytes are not the bytes that were written`, { provider: PROVIDER, key: this.key }));
        return;
      }
    }
    this.push(null);
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    if (this.onAbort) this.signal?.removeEventListener('abort', this.onAbort);
    this.source.close().then(() => cb(err), () => cb(err));
  }
}

// ------------------------------------------------------------------------------------------------
// Plain layout helpers

/** The layout a root's marker file records, if it has one. */
async function readMarker(root: string): Promise<FsLayout | undefined> {
  const read = (path: string) => readFile(path, { encoding: 'utf8', flag: READ_FLAGS }).then((t) => t.trim(), () => undefined);
  if ((await read(join(root, ...PLAIN_MARKER))) === 'plain') return 'plain';
  if ((await read(join(root, ESCAPED_MARKER))) === 'escaped') return 'escaped';
  return undefined;
}

/** Writes a file unless it exists. */
async function writeNew(path: string, content: string): Promise<void> {
  let fh: FileHandle;
  try {
    fh = await open(path, CREATE_FLAGS, 0o666);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return;
    throw e;
  }
  try {
    await fh.writeFile(content);
  } finally {
    await fh.close();
  }
}

/** A directory that is really one (not a symlink to one), made if missing. */
async function safeMkdir(path: string): Promise<void> {
  try {
    await mkdir(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const st = await lstat(path);
  if (st.isSymbolicLink()) throw new AccessDeniedError('refusing to follow a symlink planted in the store\'s hidden directory', { provider: PROVIDER });
  if (!st.isDirectory()) throw new ProviderError('a file that is not part of the store blocks its hidden directory', { provider: PROVIDER });
}

/**
 * Makes `root/...parts` one directory at a time inside the hidden tree. A file where a directory
 * belongs is an orphaned sidecar (of a key that has since become a directory of keys): removed.
 */
async function mkdirInside(root: string, parts: string[]): Promise<void> {
  let cur = root;
  for (const part of parts) {
    cur = join(cur, part);
    for (let attempt = 0; ; attempt++) {
      try {
        await safeMkdir(cur);
        break;
      } catch (e) {
        if (!(e instanceof ProviderError) || attempt > 0) throw e;
        await unlink(cur).catch(() => undefined);
      }
    }
  }
}

/** Plain: InvalidKey when the key's path is a directory that holds anything (an empty one gives way at commit). */
async function refuseDirectoryOfObjects(loc: Location): Promise<void> {
  const st = await lstatMaybe(loc.data);
  if (!st?.isDirectory()) return;
  const inside = await readdir(loc.data).catch(() => [] as string[]);
  if (inside.length > 0) throw directoryClash(loc);
}

function directoryClash(loc: Location): Error {
  return new InvalidKeyError(
    `plain layout: ${JSON.stringify(loc.key)} cannot be stored because it names a directory that holds objects (${JSON.stringify(`${loc.key}/`)}…), and a path cannot be both a file and a directory; use layout=escaped`,
    { provider: PROVIDER, key: loc.key },
  );
}

/** Plain: removes the sidecars in a key's sidecar directory except the one of `keep`. */
async function removeSidecarsExcept(dir: string, keep: bigint): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    const inode = parsePlainSidecarName(name);
    if (inode !== undefined && inode !== keep) await unlink(join(dir, name)).catch(() => undefined);
  }
}

/** Plain: removes a deleted key's sidecar directory (kept if it holds anything else). */
async function removeSidecarDir(dir: string): Promise<void> {
  await removeSidecarsExcept(dir, -1n);
  await rmdir(dir).catch(() => undefined);
}

// ------------------------------------------------------------------------------------------------
// Small helpers

async function writeAll(fh: FileHandle, chunk: Buffer): Promise<void> {
  for (let off = 0; off < chunk.byteLength;) {
    const { bytesWritten } = await fh.write(chunk, off, chunk.byteLength - off);
    off += bytesWritten;
  }
}

async function readExactly(fh: FileHandle, start: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, start + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return buf.subarray(0, got);
}

async function syncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, fsConstants.O_RDONLY);
    await fh.sync();
  } catch (e) {
    // Some file systems cannot fsync a directory; the renames are still atomic.
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM' && code !== 'ENOTSUP') throw e;
  } finally {
    await fh?.close();
  }
}

async function lstatMaybe(path: string): Promise<BigIntStats | undefined> {
  try {
    return await lstat(path, { bigint: true });
  } catch (e) {
    if (isMissing(e)) return undefined;
    throw e;
  }
}

function isMissing(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function startsWith(buf: Buffer, prefix: Buffer): boolean {
  return buf.byteLength >= prefix.byteLength && buf.subarray(0, prefix.byteLength).equals(prefix);
}

/** The common prefix `full` rolls up into with a delimiter, when the delimiter lies inside it after the prefix. */
function rolledUp(full: Buffer, ctx: WalkContext): string | undefined {
  if (!ctx.delimiter || !startsWith(full, ctx.prefix)) return undefined;
  const i = full.indexOf(ctx.delimiter, ctx.prefix.byteLength);
  return i < 0 ? undefined : full.subarray(0, i + ctx.delimiter.byteLength).toString('utf8');
}

function symlinkRefused(key: string): Error {
  return new AccessDeniedError(`refusing to follow a symlink inside the store on the path of ${JSON.stringify(key)}`, { provider: PROVIDER, key });
}

function newEtag(): string {
  return randomBytes(16).toString('hex');
}

function randomHex(): string {
  return randomBytes(8).toString('hex');
}
