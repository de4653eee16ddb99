import { constants as fsConstants, type BigIntStats } from 'node:fs';
import { copyFile, open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  IntegrityError, MultiHasher, NotFoundError, NotModifiedError, NotSupportedError, PreconditionFailedError, ProviderError, SHA256_KEY,
  TransientError, bodyChunks, checkCopy, checkDelete, checkGet, checkPut, checksumMismatches, deleteEach, isCloudmuxError, resolveRange, throwIfAborted,
  validateKey, validateMetadata, validatePrefix,
} from '../../src/core/index.js';
import type {
  BlobStore, Body, Capabilities, CopyOptions, DeleteManyResult, DeleteOptions, GetOptions, GetResult, ListItem, ListOptions,
  ObjectMeta, PresignOptions, PutOptions, SignalOptions, UpdateMetadataOptions,
} from '../../src/core/index.js';
import { commit } from './commit.js';
import { resolveFsOptions, type FsLayout, type FsStoreOptions, type ResolvedFsOptions } from './config.js';
import { PROVIDER, mapFsError } from './errors.js';
import {
  DEFAULT_CONTENT_TYPE, O_NOFOLLOW, RACE_RETRIES, READ_FLAGS, isMissing, lstatMaybe, newEtag, readExactly, syncDir, writeAll,
} from './file-ops.js';
import { listStore } from './listing.js';
import { ObjectBody, bufferSource, fileSource, type ByteSource } from './object-body.js';
import { FsRoot, removeSidecarDir, type Location } from './root.js';
import { derivedEtag, sameState, sidecarMeta, stamped, type Sidecar } from './sidecar.js';
import { currentObject, distrust, placeStampedSidecar, readSidecar, recompute, writeTempSidecar } from './sidecar-io.js';
import { redactInspection } from '../../src/core/redact.js';

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
 * The sidecar is named after the inode of the data file it describes and records its size, mtime
 * and ctime. A crash leaves at worst: temp files, lock files, or sidecars of inodes that are not
 * (or no longer) the data file; none is ever mistaken for an object, and listings delete those
 * older than `leftoverTtlMs` (temp files of writers known dead at once: writer-tag.ts) (plain: a key's stale sidecars are removed by its next write, and the
 * sidecars of objects deleted by hand by the listing that finds them gone). A data file without a
 * sidecar (written by hand) is an object with derived etag and no known digest in listings; head
 * and get recompute its digests once (one full read) and store a fresh sidecar.
 *
 * # Files changed behind the store's back
 * A sidecar is believed only while the data file's inode, size, mtime and ctime (nanoseconds) are
 * the recorded ones and its ctime is older than the sidecar itself (sidecar.ts). Anything else
 * (a same-size rewrite in place, even in the same clock tick; a touch; a chmod) puts it in doubt:
 * head, get and list recompute the digests; the etag and metadata stand when the bytes are the
 * same, else the etag changes. What no stat can show (a disk rotting under the file system; a
 * privileged program that rewrites and then sets the clock back) is caught by a verified read,
 * which fails once with IntegrityError and puts the sidecar in doubt. See docs/fs-store.md.
 *
 * # Read-only
 * With `readOnly`, nothing under the root is ever created, changed or removed (see config.ts and
 * docs/fs-store.md): for sources and read-only commands.
 *
 * # Limits
 * POSIX file systems (Linux, macOS); the root must be case- and normalization-sensitive, since keys
 * differing only in case or Unicode normalization are different objects. Hard links, rename,
 * O_NOFOLLOW and O_EXCL must work (not FAT). No versions, no presigned URLs.
 *
 * # Where each job lives
 * This file holds the BlobStore operations. root.ts: the root, its layout and every path of a key
 * (and the per-key lock); commit.ts: making a prepared write visible; sidecar.ts / sidecar-io.ts:
 * the metadata format and its files; listing.ts: the walk; sweep.ts: crash leftovers;
 * object-body.ts: the body a get streams; writer-tag.ts: who wrote a temp file (alive or not);
 * file-ops.ts: small file-system operations.
 */
export class FsStore implements BlobStore {
  readonly provider = PROVIDER;
  readonly capabilities: Capabilities = {
    conditionalPut: true,
    versioning: false,
    nativeChecksums: [],
    presign: false,
    streaming: true,
    conditionalDelete: true,
  };
  readonly options: Readonly<ResolvedFsOptions>;
  private readonly fsr: FsRoot;

  constructor(options: FsStoreOptions) {
    this.options = resolveFsOptions(options);
    this.fsr = new FsRoot(this.options);
  }

  // ----------------------------------------------------------------------------------------------
  // Writes

  async put(key: string, body: Body, opts: PutOptions = {}): Promise<ObjectMeta> {
    checkPut(PROVIDER, this.capabilities, key, opts);
    this.fsr.assertWritable(key);
    const ctx = { op: 'put', key, signal: opts.signal };
    const temps: string[] = [];
    try {
      const { loc, fh, path } = await this.fsr.createTemp(key);
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
      const sidecar = stamped({
        v: 1,
        key,
        inode: String(st.ino),
        size: hasher.bytes,
        etag: newEtag(),
        lastModified: new Date().toISOString(),
        contentType: opts.contentType ?? DEFAULT_CONTENT_TYPE,
        metadata: { ...opts.metadata, [SHA256_KEY]: checksums.sha256! },
        checksums,
      }, st);
      temps.push(await writeTempSidecar(this.fsr, loc, sidecar));
      await commit(this.fsr, loc, temps[0]!, temps[1]!, sidecar, { ifNoneMatch: opts.ifNoneMatch, ifMatch: opts.ifMatch, signal: opts.signal });
      return sidecarMeta(sidecar);
    } catch (e) {
      await Promise.all(temps.map((t) => unlink(t).catch(() => undefined)));
      throw mapFsError(e, ctx);
    }
  }

  async copy(src: string, dst: string, opts: CopyOptions = {}): Promise<ObjectMeta> {
    checkCopy(PROVIDER, this.capabilities, src, dst, opts);
    this.fsr.assertWritable(dst);
    const ctx = { op: 'copy', key: src, signal: opts.signal };
    const temps: string[] = [];
    try {
      for (let attempt = 0; ; attempt++) {
        const source = await currentObject(this.fsr, src, opts.signal);
        if (opts.sourceIfMatch !== undefined && opts.sourceIfMatch !== source.sidecar.etag) {
          throw new PreconditionFailedError(`source etag is ${source.sidecar.etag}, not ${opts.sourceIfMatch}`, { provider: PROVIDER, key: src });
        }
        const { loc, fh, path } = await this.fsr.createTemp(dst);
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
        if (!after || !sameState(after, source.st) || Number(st.size) !== source.sidecar.size) {
          // The source was replaced while copying: what we copied may be the newer bytes.
          await unlink(temps.pop()!).catch(() => undefined);
          if (attempt >= RACE_RETRIES) throw new TransientError('the source kept changing during the copy', { provider: PROVIDER, key: src });
          continue;
        }
        const replace = opts.metadata !== undefined;
        const from = source.sidecar;
        const sidecar = stamped({
          v: 1,
          key: dst,
          inode: String(st.ino),
          size: from.size,
          etag: newEtag(),
          lastModified: new Date().toISOString(),
          contentType: (replace ? opts.contentType : (opts.contentType ?? from.contentType)) ?? DEFAULT_CONTENT_TYPE,
          metadata: replace ? { ...opts.metadata, [SHA256_KEY]: from.checksums.sha256! } : { ...from.metadata },
          checksums: { ...from.checksums },
        }, st);
        temps.push(await writeTempSidecar(this.fsr, loc, sidecar));
        await commit(this.fsr, loc, temps[0]!, temps[1]!, sidecar, { ifNoneMatch: opts.ifNoneMatch, signal: opts.signal });
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
    this.fsr.assertWritable(key);
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    const ctx = { op: 'updateMetadata', key, signal: opts.signal };
    try {
      for (let attempt = 0; ; attempt++) {
        // Outside the lock: a missing sidecar is recomputed (which takes the lock itself).
        const seen = await currentObject(this.fsr, key, opts.signal);
        const done = await this.fsr.withLock(seen.loc, key, opts.signal, async () => {
          const st = await lstatMaybe(seen.loc.data);
          if (!st || st.ino !== seen.st.ino) return undefined;
          const reading = await readSidecar(this.fsr, seen.loc, st, key);
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
          await placeStampedSidecar(this.fsr, seen.loc, next, st);
          if (this.options.fsync) await syncDir(this.fsr.sidecarDir(seen.loc));
          return next;
        });
        if (done) return sidecarMeta(done);
        if (attempt >= RACE_RETRIES) throw new TransientError('the object kept changing', { provider: PROVIDER, key });
      }
    } catch (e) {
      throw mapFsError(e, ctx);
    }
  }

  async delete(key: string, opts: DeleteOptions = {}): Promise<void> {
    checkDelete(PROVIDER, this.capabilities, key, opts);
    this.fsr.assertWritable(key);
    const ctx = { op: 'delete', key, signal: opts.signal };
    try {
      let loc: Location;
      try {
        loc = await this.fsr.locate(key, false);
      } catch (e) {
        if (isMissing(e)) return;
        throw e;
      }
      try {
        await this.fsr.withLock(loc, key, opts.signal, async () => {
          const st = await lstatMaybe(loc.data);
          if (!st || !st.isFile()) return;
          if (opts.ifMatch !== undefined) {
            // Under the key's lock, so no cloudmux writer moves the object between check and unlink.
            const etag = (await readSidecar(this.fsr, loc, st, key)).current?.etag ?? derivedEtag(st);
            if (etag !== opts.ifMatch) throw new PreconditionFailedError(`etag is ${etag}, not ${opts.ifMatch}; not deleted`, { provider: PROVIDER, key });
          }
          await unlink(loc.data);
          await unlink(this.fsr.sidecarPath(loc, st.ino)).catch(() => undefined);
          if (this.options.fsync) await syncDir(loc.dir);
          if (loc.metaDirs) await removeSidecarDir(join(loc.root, ...loc.metaDirs));
        });
      } catch (e) {
        // The directory vanished under us (a concurrent delete pruned it): the object is gone too.
        if (isMissing(e)) return;
        throw e;
      }
      await this.fsr.pruneEmptyDirs(loc);
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
      return sidecarMeta((await currentObject(this.fsr, key, opts.signal)).sidecar);
    } catch (e) {
      throw mapFsError(e, { op: 'head', key, signal: opts.signal });
    }
  }

  async get(key: string, opts: GetOptions = {}): Promise<GetResult> {
    checkGet(PROVIDER, key, opts);
    const ctx = { op: 'get', key, signal: opts.signal };
    let fh: FileHandle | undefined;
    try {
      const loc = await this.fsr.locate(key, false);
      let sidecar: Sidecar | undefined;
      let st: BigIntStats;
      for (let attempt = 0; ; attempt++) {
        // The descriptor first: whatever happens to the path now, these bytes stay readable.
        fh = await open(loc.data, READ_FLAGS);
        st = await fh.stat({ bigint: true });
        if (!st.isFile()) throw new NotFoundError(`no object at ${key}`, { provider: PROVIDER, key });
        const reading = await readSidecar(this.fsr, loc, st, key);
        sidecar = reading.current;
        if (sidecar) break;
        const now = await lstatMaybe(loc.data);
        if (now && now.ino === st.ino) {
          sidecar = await recompute(this.fsr, key, loc, fh, st, reading.stale);
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
      const described = sidecar;
      const check = opts.verify && !range ? { expected: meta.checksums, size: meta.size, onMismatch: () => distrust(this.fsr, loc, described) } : undefined;
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
    try {
      yield* listStore(this.fsr, { prefix, startAfter: opts.startAfter, delimiter: opts.delimiter, signal: opts.signal });
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
    return (await this.fsr.locate(key, false, false)).data;
  }

  /**
   * Runs `fn` holding `key`'s lock, the one every put, copy, updateMetadata and delete of the key
   * commits under (in this process and across processes sharing the root). For a program that
   * changes the root's files directly (the sync engine's local writes under `offlineFirst`): its
   * check-then-rename cannot then interleave with a commit of the store.
   */
  async withKeyLock<T>(key: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    validateKey(key, PROVIDER);
    const loc = await this.fsr.locate(key, (await this.layout()) === 'escaped');
    return this.fsr.withLock(loc, key, signal, fn);
  }

  /** The layout this store reads and writes (resolved on first use: see FsStoreOptions.layout). */
  async layout(): Promise<FsLayout> {
    return (await this.fsr.ready()).layout;
  }
}
redactInspection(FsStore);
