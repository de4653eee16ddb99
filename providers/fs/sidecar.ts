import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import type { Checksums, ObjectMeta, ObjectSummary } from '../../src/core/types.js';

/**
 * The metadata of one data file, kept beside it as `<name>%m<inode>` (escaped layout) or in
 * `.cloudmux/meta/<key>/<inode>.json` (plain), JSON, written atomically. It names the inode, size,
 * mtime and ctime (nanoseconds) of the bytes it describes, as they were when it was written.
 *
 * # When a sidecar is believed
 * Only when the data file's inode, size, mtime and ctime are exactly the recorded ones AND the
 * data file's ctime is older than the sidecar file's own mtime (its seal). Every write to the
 * data file, and every change of its mtime (utimes), sets its ctime to the file system's "now",
 * so a change after the sidecar was written leaves a ctime at or after the seal. The strict
 * comparison covers file systems whose clock ticks coarsely (a rewrite in the same tick as the
 * seal keeps the ctime): such a "racy" sidecar is doubted too (git's racy-clean rule).
 * Otherwise the sidecar is stale: its claims are checked against a fresh digest of the bytes
 * (sidecar-io.ts, recompute), never reported as they are.
 */
export interface Sidecar {
  v: 1;
  key: string;
  /** Inode of the data file (decimal), the link between the two files. */
  inode: string;
  size: number;
  /** The data file's mtime and ctime in nanoseconds (decimal) when this sidecar was written; absent in sidecars of older versions (doubted). */
  mtimeNs?: string;
  ctimeNs?: string;
  etag: string;
  lastModified: string;
  contentType: string;
  metadata: Record<string, string>;
  checksums: Checksums;
}

/** What a sidecar file says about a data file, judged against the data file's stat. */
export interface SidecarReading {
  /** Present when the sidecar can be believed for exactly these bytes (see Sidecar). */
  current?: Sidecar;
  /**
   * A sidecar of this inode that cannot be believed as it is: the file was changed (size, mtime
   * or ctime differ) or may have been (racy seal). Its digests must be checked against the bytes.
   */
  stale?: Sidecar;
}

/**
 * Judges a sidecar's text against the data file's stat. `sealNs` is the sidecar file's mtime
 * (nanoseconds); `distrusted` forces doubt (a verified read found the bytes differ).
 */
export function judgeSidecar(raw: string, key: string, st: BigIntStats, sealNs: bigint, distrusted = false): SidecarReading {
  let sc: Sidecar;
  try {
    sc = JSON.parse(raw) as Sidecar;
  } catch {
    return {};
  }
  if (sc?.v !== 1 || sc.key !== key || sc.inode !== String(st.ino) || typeof sc.etag !== 'string' || typeof sc.metadata !== 'object' || sc.metadata === null) return {};
  const believed = !distrusted && sc.size === Number(st.size) && sc.mtimeNs === String(st.mtimeNs) && sc.ctimeNs === String(st.ctimeNs) && st.ctimeNs < sealNs;
  return believed ? { current: sc } : { stale: sc };
}

/** The sidecar with the data file's current mtime and ctime recorded. */
export function stamped(sc: Sidecar, st: BigIntStats): Sidecar {
  return { ...sc, mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs) };
}

/** True when two stats describe the same file in the same state (inode, size, mtime, ctime). */
export function sameState(a: BigIntStats, b: BigIntStats): boolean {
  return a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

export function sidecarMeta(sc: Sidecar): ObjectMeta {
  return {
    key: sc.key,
    size: sc.size,
    etag: sc.etag,
    lastModified: new Date(sc.lastModified),
    contentType: sc.contentType,
    metadata: { ...sc.metadata },
    checksums: { ...sc.checksums },
  };
}

export function sidecarSummary(sc: Sidecar): ObjectSummary {
  return { key: sc.key, size: sc.size, etag: sc.etag, lastModified: new Date(sc.lastModified), checksums: { ...sc.checksums } };
}

/**
 * The etag of a data file that has no sidecar: a digest of what identifies its state on disk
 * (inode, size, mtime, ctime), so listings and the recomputed sidecar agree and any rewrite
 * changes it. `sha256` tells apart bytes that changed without changing the stat (a rewrite in
 * the same clock tick).
 */
export function derivedEtag(st: BigIntStats, sha256?: string): string {
  const id = `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}${sha256 === undefined ? '' : `:${sha256}`}`;
  return createHash('sha256').update(id).digest('hex').slice(0, 32);
}

export function mtimeOf(st: BigIntStats): Date {
  return new Date(Number(st.mtimeNs / 1_000_000n));
}
