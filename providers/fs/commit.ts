import { rename, rmdir, unlink } from 'node:fs/promises';
import { AlreadyExistsError, NotFoundError, PreconditionFailedError, ProviderError, TransientError, throwIfAborted } from '../../src/core/index.js';
import { PROVIDER } from './errors.js';
import { isMissing, lstatMaybe, syncDir } from './file-ops.js';
import { directoryClash, removeSidecarsExcept, type FsRoot, type Location } from './root.js';
import { derivedEtag, type Sidecar } from './sidecar.js';
import { placeStampedSidecar, readSidecar, writeTempSidecar } from './sidecar-io.js';

export interface CommitConditions {
  ifNoneMatch?: '*';
  ifMatch?: string;
  signal?: AbortSignal;
}

/**
 * Makes a prepared put or copy visible, under the key's lock: checks the conditions against the
 * object there now, renames the sidecar (named after the new inode, so readers of the old data
 * still find theirs), then the data file (the commit point), then drops the old sidecar. `sidecar`
 * is stamped with the temp file's mtime and ctime.
 */
export async function commit(fsr: FsRoot, loc: Location, dataTemp: string, sidecarTemp: string, sidecar: Sidecar, cond: CommitConditions): Promise<void> {
  const key = sidecar.key;
  await fsr.withLock(loc, key, cond.signal, async () => {
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
      const etag = (await readSidecar(fsr, loc, cur, key)).current?.etag ?? derivedEtag(cur);
      if (etag !== cond.ifMatch) throw new PreconditionFailedError(`etag is ${etag}, not ${cond.ifMatch}`, { provider: PROVIDER, key });
    }
    throwIfAborted(cond.signal, { provider: PROVIDER, key });
    const inode = BigInt(sidecar.inode);
    const sidecarPath = await fsr.placeSidecar(loc, sidecarTemp, inode);
    try {
      await rename(dataTemp, loc.data);
    } catch (e) {
      await unlink(sidecarPath).catch(() => undefined);
      if (isMissing(e)) throw new TransientError('the temp file vanished before commit (removed as a stale leftover?)', { provider: PROVIDER, key, cause: e });
      if ((e as NodeJS.ErrnoException).code === 'EISDIR' && loc.metaDirs) throw directoryClash(loc);
      throw e;
    }
    if (fsr.options.fsync) await Promise.all([syncDir(loc.dir), loc.metaDirs ? syncDir(fsr.sidecarDir(loc)) : undefined]);
    // Sidecars of other inodes here are crash leftovers (no other writer renames one in while we
    // hold the lock).
    if (loc.metaDirs) await removeSidecarsExcept(fsr.sidecarDir(loc), inode);
    else if (cur && cur.ino !== inode) await unlink(fsr.sidecarPath(loc, cur.ino)).catch(() => undefined);
    // The rename moved the data file's ctime: record the new one (and seal it), unless another
    // program has touched the file already (then readers check the bytes). Not fsynced: a lost
    // refresh only costs readers one digest of bytes that turn out the same.
    const now = await lstatMaybe(loc.data);
    if (now?.ino === inode && Number(now.size) === sidecar.size && String(now.mtimeNs) === sidecar.mtimeNs) {
      await placeStampedSidecar(fsr, loc, sidecar, now, false);
    } else if (loc.metaDirs && !(await lstatMaybe(sidecarPath))) {
      // The sweep of a directory of orphaned sidecars raced us: put ours back.
      await fsr.placeSidecar(loc, await writeTempSidecar(fsr, loc, sidecar), inode);
    }
  });
}
