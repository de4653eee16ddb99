/**
 * Sidecars on disk: reading the one of a data file's inode (with its seal, the sidecar file's own
 * mtime), writing one, and the object at a key now with a sidecar that can be believed: when the
 * sidecar is missing or in doubt, the digests are recomputed from the bytes (one full read), so the
 * store never reports a digest or etag for bytes it no longer holds.
 */
import type { BigIntStats } from 'node:fs';
import { lstat, open, unlink, type FileHandle } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { MultiHasher, NotFoundError, SHA256_KEY, TransientError, throwIfAborted, userMetadata } from '../../src/core/index.js';
import { PROVIDER } from './errors.js';
import { CREATE_FLAGS, DEFAULT_CONTENT_TYPE, RACE_RETRIES, READ_CHUNK, READ_FLAGS, isMissing, lstatMaybe } from './file-ops.js';
import { symlinkRefused, type FsRoot, type Location } from './root.js';
import { derivedEtag, judgeSidecar, mtimeOf, sameState, stamped, type Sidecar, type SidecarReading } from './sidecar.js';

/** The object currently at a key: its data file's stat and its (possibly recomputed) sidecar. */
export interface Current {
  loc: Location;
  st: BigIntStats;
  sidecar: Sidecar;
}

/** How long a sealed write waits, at most, for the file system's clock to pass the data's ctime. */
const SEAL_TRIES = 50;

export function readSidecar(fsr: FsRoot, loc: Location, st: BigIntStats, key: string): Promise<SidecarReading> {
  return readSidecarAt(fsr, fsr.sidecarPath(loc, st.ino), key, st);
}

/** Reads and judges the sidecar at `path` for a data file in state `st` ({} when there is none). */
export async function readSidecarAt(fsr: FsRoot, path: string, key: string, st: BigIntStats): Promise<SidecarReading> {
  let fh: FileHandle;
  try {
    fh = await open(path, READ_FLAGS);
  } catch (e) {
    if (isMissing(e)) return {};
    throw e;
  }
  try {
    const seal = (await fh.stat({ bigint: true })).mtimeNs;
    const reading = judgeSidecar(await fh.readFile('utf8'), key, st, seal);
    if (reading.current && fsr.distrusted.has(distrustId(path, reading.current.etag))) return { stale: reading.current };
    return reading;
  } finally {
    await fh.close();
  }
}

/**
 * Writes `sidecar` to a temp file and returns its path. With `seal`, the file's mtime is made
 * later than `seal` (the data file's ctime) before it is closed, waiting for the file system's
 * clock to tick if need be (at most ~SEAL_TRIES ms): a sidecar sealed in the same tick as the
 * data's last change is doubted by readers (see Sidecar).
 */
export async function writeTempSidecar(fsr: FsRoot, loc: Location, sidecar: Sidecar, seal?: bigint, sync = fsr.options.fsync): Promise<string> {
  const path = fsr.sidecarTempPath(loc);
  const create = () => open(path, CREATE_FLAGS, 0o666);
  const fh = loc.metaDirs ? await fsr.inHiddenDir(loc.root, create, () => true) : await create();
  try {
    await fh.writeFile(JSON.stringify(sidecar));
    if (seal !== undefined) {
      // JSON allows trailing whitespace: each newline moves the file's mtime to the clock's now.
      // The first is written at once (after a stat, Linux's multigrain timestamps make it a fine
      // one); later ones wait for a coarse clock to tick.
      for (let i = 0; i < SEAL_TRIES && (await fh.stat({ bigint: true })).mtimeNs <= seal; i++) {
        if (i > 0) await sleep(1);
        await fh.write('\n');
      }
    }
    if (sync) await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlink(path).catch(() => undefined);
    throw e;
  }
  await fh.close();
  return path;
}

/** Writes `sidecar` stamped with the data file's state `st` and sealed, and renames it into place. */
export async function placeStampedSidecar(fsr: FsRoot, loc: Location, sidecar: Sidecar, st: BigIntStats, sync = fsr.options.fsync): Promise<string> {
  return fsr.placeSidecar(loc, await writeTempSidecar(fsr, loc, stamped(sidecar, st), st.ctimeNs, sync), st.ino);
}

/** The object at `key` now, with a sidecar that can be believed (recomputed if missing or doubted). NotFound when absent. */
export async function currentObject(fsr: FsRoot, key: string, signal: AbortSignal | undefined): Promise<Current> {
  const loc = await fsr.locate(key, false);
  for (let attempt = 0; ; attempt++) {
    throwIfAborted(signal, { provider: PROVIDER, key });
    const st = await lstat(loc.data, { bigint: true });
    if (st.isSymbolicLink()) throw symlinkRefused(key);
    if (!st.isFile()) throw new NotFoundError(`no object at ${key}`, { provider: PROVIDER, key });
    const reading = await readSidecar(fsr, loc, st, key);
    if (reading.current) return { loc, st, sidecar: reading.current };
    const fh = await open(loc.data, READ_FLAGS);
    try {
      const fst = await fh.stat({ bigint: true });
      if (fst.ino === st.ino) return { loc, st: fst, sidecar: await recompute(fsr, key, loc, fh, fst, reading.stale) };
    } finally {
      await fh.close();
    }
    if (attempt >= RACE_RETRIES) throw new TransientError('the object kept changing', { provider: PROVIDER, key });
  }
}

/**
 * A sidecar for a data file whose sidecar is missing (crash, a file written by hand) or in doubt
 * (`stale`: the file was, or may have been, changed behind the store's back): digests from one
 * full read of `fh` (in state `st`). When the bytes are still the ones `stale` describes, its etag
 * and metadata stand; otherwise the etag is derived from the file's state (what listings of an
 * unknown file show) and changes with the bytes, and the user metadata and content type carry
 * over. Stored (sealed) so that this happens once, unless the store is read-only or the file
 * changed while it was read.
 */
export async function recompute(fsr: FsRoot, key: string, loc: Location, fh: FileHandle, st: BigIntStats, stale: Sidecar | undefined): Promise<Sidecar> {
  const hasher = new MultiHasher(['md5', 'crc32c']);
  const buf = Buffer.allocUnsafe(READ_CHUNK);
  for (let pos = 0; ;) {
    const { bytesRead } = await fh.read(buf, 0, buf.byteLength, pos);
    if (bytesRead === 0) break;
    hasher.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
  const checksums = hasher.digest();
  const steady = hasher.bytes === Number(st.size) && sameState(st, await fh.stat({ bigint: true }));
  let sidecar: Sidecar;
  if (steady && stale && stale.size === hasher.bytes && stale.checksums?.sha256 === checksums.sha256) {
    sidecar = stamped({ ...stale, checksums: { ...stale.checksums, ...checksums } }, st);
  } else {
    let etag = steady ? derivedEtag(st) : derivedEtag(st, checksums.sha256);
    if (etag === stale?.etag) etag = derivedEtag(st, checksums.sha256);
    sidecar = stamped({
      v: 1,
      key,
      inode: String(st.ino),
      size: hasher.bytes,
      etag,
      lastModified: mtimeOf(st).toISOString(),
      contentType: stale?.contentType ?? DEFAULT_CONTENT_TYPE,
      metadata: { ...userMetadata(stale?.metadata ?? {}), [SHA256_KEY]: checksums.sha256! },
      checksums,
    }, st);
  }
  if (!steady || fsr.readOnly) return sidecar; // Being rewritten right now, or not ours to write: do not record.
  await fsr.withLock(loc, key, undefined, async () => {
    const now = await lstatMaybe(loc.data);
    if (!now || !sameState(now, st) || (await readSidecar(fsr, loc, now, key)).current) return;
    await placeStampedSidecar(fsr, loc, sidecar, st);
  }).catch(() => undefined); // Best effort: the caller has its answer either way.
  return sidecar;
}

/**
 * A verified read found that the bytes of `sidecar`'s inode are not the ones it describes
 * (something fooled the stat check, or the disk rotted): it is doubted from now on, so the next
 * look recomputes the digests and a new etag instead of failing for ever. Read-only stores
 * remember this for their lifetime only.
 */
export async function distrust(fsr: FsRoot, loc: Location, sidecar: Sidecar): Promise<void> {
  const inode = BigInt(sidecar.inode);
  fsr.distrusted.add(distrustId(fsr.sidecarPath(loc, inode), sidecar.etag));
  if (fsr.readOnly) return;
  await fsr.withLock(loc, sidecar.key, undefined, async () => {
    const st = await lstatMaybe(loc.data);
    if (!st || st.ino !== inode) return;
    const reading = await readSidecarAt(fsr, fsr.sidecarPath(loc, inode), sidecar.key, st);
    const cur = reading.current ?? reading.stale;
    if (cur?.etag !== sidecar.etag) return;
    const doubted: Sidecar = { ...cur, mtimeNs: '0', ctimeNs: '0' };
    await fsr.placeSidecar(loc, await writeTempSidecar(fsr, loc, doubted), inode);
  }).catch(() => undefined);
}

function distrustId(sidecarPath: string, etag: string): string {
  return `${sidecarPath}\0${etag}`;
}
