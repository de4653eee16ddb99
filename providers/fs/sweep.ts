/**
 * Sweeping crash leftovers, by the listings that meet them (never an object): temp files of
 * writers known to be dead at once, and temp files of unknown writers, lock files and orphaned
 * sidecars once untouched for `leftoverTtlMs` (a put in flight keeps its temp file fresh, a held
 * lock is young). Read-only stores sweep nothing.
 */
import { lstat, readdir, rm, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { keyProblem } from '../../src/core/index.js';
import { lstatMaybe } from './file-ops.js';
import type { Cursor } from './listing.js';
import { HIDDEN_DIR, plainKeyProblem } from './plain-layout.js';
import { LOCKS, TMP, type FsRoot } from './root.js';
import { tagOfTempName, writerGone } from './writer-tag.js';

/**
 * Removes escaped-layout crash leftovers untouched for `leftoverTtlMs`: temp and lock files, and
 * sidecars of inodes that are not their data file's. Only bases with no data file or several
 * sidecars cost a stat; the common case (one sidecar per object) costs nothing.
 */
export async function sweepEscaped(fsr: FsRoot, dir: string, leftovers: string[], sidecars: Map<string, { name: string; inode: bigint }[]>, dataNames: Set<string>): Promise<void> {
  const candidates = [...leftovers];
  for (const [base, list] of sidecars) {
    if (!dataNames.has(base)) {
      candidates.push(...list.map((s) => s.name));
    } else if (list.length > 1) {
      const st = await lstatMaybe(join(dir, base));
      for (const s of list) if (!st || s.inode !== st.ino) candidates.push(s.name);
    }
  }
  await removeOldFiles(fsr, candidates.map((name) => join(dir, name)));
}

/**
 * Plain: removes old temp files of `cur.dir`, and sidecar directories mirroring it whose object
 * is gone (deleted by hand), under that key's lock and only when untouched for `leftoverTtlMs`.
 * One extra readdir per listed directory; none when the store never wrote metadata there.
 */
export async function sweepPlain(fsr: FsRoot, cur: Cursor, leftovers: string[], names: Set<string>): Promise<void> {
  await removeOldFiles(fsr, leftovers.map((name) => join(cur.dir, name)));
  let metaEntries;
  try {
    metaEntries = await readdir(cur.metaDir!, { withFileTypes: true });
  } catch {
    return;
  }
  const cutoff = Date.now() - fsr.options.leftoverTtlMs;
  const base = cur.keyBytes.toString('utf8');
  for (const d of metaEntries) {
    const path = join(cur.metaDir!, d.name);
    // A file here is a sidecar of this directory back when it was an object.
    if (!d.isDirectory()) {
      if (!cur.atTop) await removeOldFiles(fsr, [path]);
      continue;
    }
    if (names.has(d.name) || (cur.atTop && d.name === HIDDEN_DIR)) continue;
    const key = `${base}${d.name}`;
    if (keyProblem(key) || plainKeyProblem(key)) continue;
    const loc = await fsr.locate(key, false, false).catch(() => undefined);
    if (!loc) continue;
    await fsr.withLock(loc, key, undefined, async () => {
      const [data, meta] = await Promise.all([lstatMaybe(loc.data), lstatMaybe(path)]);
      if (data || !meta || Number(meta.mtimeMs) >= cutoff) return;
      await rm(path, { recursive: true, force: true });
    }).catch(() => undefined);
  }
}

/** Plain: old files in `.cloudmux/tmp` and `.cloudmux/locks` (held locks are young). */
export async function sweepHidden(fsr: FsRoot, root: string): Promise<void> {
  for (const sub of [TMP, LOCKS]) {
    const dir = join(root, HIDDEN_DIR, sub);
    const names = await readdir(dir).catch(() => [] as string[]);
    await removeOldFiles(fsr, names.map((n) => join(dir, n)));
  }
}

/**
 * Removes leftover files: a temp file whose writer is known to be gone (writer-tag.ts: this host,
 * pid not running or started at another time) at once, one whose writer may be alive never, and
 * anything else (lock files, orphaned sidecars, temp files of other hosts or older versions) once
 * untouched for `leftoverTtlMs`.
 */
async function removeOldFiles(fsr: FsRoot, paths: string[]): Promise<void> {
  const cutoff = Date.now() - fsr.options.leftoverTtlMs;
  for (const path of paths) {
    try {
      const st = await lstat(path);
      if (!st.isFile()) continue;
      const gone = writerGone(tagOfTempName(basename(path)));
      if (gone === true || (gone === undefined && st.mtimeMs < cutoff)) await unlink(path);
    } catch {
      // Gone already or not ours to judge.
    }
  }
}
