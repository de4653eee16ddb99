import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import type { Checksums, ObjectMeta, ObjectSummary } from '../../src/core/types.js';

/**
 * The metadata of one data file, kept beside it as `<name>%m<inode>` (JSON, written atomically).
 * It names the inode and size of the bytes it describes: a sidecar whose inode or size differs
 * from the data file's is stale and never trusted (see FsStore, "Crash recovery").
 */
export interface Sidecar {
  v: 1;
  key: string;
  /** Inode of the data file (decimal), the link between the two files. */
  inode: string;
  size: number;
  etag: string;
  lastModified: string;
  contentType: string;
  metadata: Record<string, string>;
  checksums: Checksums;
}

/** What a sidecar file says about a data file, judged against the data file's stat. */
export interface SidecarReading {
  /** Present when the sidecar describes exactly these bytes. */
  current?: Sidecar;
  /** A sidecar of this inode whose size no longer matches (the file was rewritten in place). */
  stale?: Sidecar;
}

export function judgeSidecar(raw: string, key: string, st: BigIntStats): SidecarReading {
  let sc: Sidecar;
  try {
    sc = JSON.parse(raw) as Sidecar;
  } catch {
    return {};
  }
  if (sc?.v !== 1 || sc.key !== key || sc.inode !== String(st.ino) || typeof sc.etag !== 'string' || typeof sc.metadata !== 'object' || sc.metadata === null) return {};
  return sc.size === Number(st.size) ? { current: sc } : { stale: sc };
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
 * The etag of a data file that has no trustworthy sidecar: a digest of what identifies its bytes
 * on disk, so listings and the recomputed sidecar agree, and any rewrite changes it.
 */
export function derivedEtag(st: BigIntStats): string {
  return createHash('sha256').update(`${st.ino}:${st.size}:${st.mtimeNs}`).digest('hex').slice(0, 32);
}

export function mtimeOf(st: BigIntStats): Date {
  return new Date(Number(st.mtimeNs / 1_000_000n));
}
