/**
 * The plain layout: key `a/b/c.jpg` is the file `<root>/a/b/c.jpg`, so a store is an ordinary
 * directory tree that ls, tar and rclone read as it is, and any directory tree is a store.
 *
 * # What lives where
 *
 *     <root>/a/b/c.jpg                                the object's bytes
 *     <root>/a/b/.cloudmux-tmp-<hex>                  a put in flight (or a crash leftover)
 *     <root>/.cloudmux/layout                         marker: `plain`
 *     <root>/.cloudmux/meta/a/b/c.jpg/<inode>.json    sidecar: metadata of that inode of a/b/c.jpg
 *     <root>/.cloudmux/locks/<sha256 of the key>      per-key lock file
 *     <root>/.cloudmux/tmp/.cloudmux-tmp-<hex>        sidecars being written, locks being judged
 *
 * Sidecars live in a directory per key (named by the key's segments) holding one file per inode,
 * so a segment may use all 255 bytes of a file name, and the commit protocol of the escaped layout
 * (the new inode's sidecar is in place before the data rename) carries over unchanged.
 *
 * # What plain cannot hold (InvalidKey, before anything is written)
 * - a segment longer than {@link MAX_SEGMENT_BYTES} bytes (one file name);
 * - the top-level segment `.cloudmux` and any segment starting `.cloudmux-` (the store's own);
 * - a key whose path crosses an object (`a/b` while `a` is a file), or names a directory that
 *   holds objects (`a` while `a/…` exist): a path is a file or a directory, never both.
 *
 * # Listing order
 * A file stands for its own name, a directory for its name plus `/` (the keys below it): sorting
 * one directory's entries by those bytes and descending in that order yields keys in UTF-8 byte
 * order (`a-b` < `a/…` < `a0`), reading one directory at a time.
 */

import { createHash } from 'node:crypto';

/** The hidden top-level directory holding everything that is not an object. */
export const HIDDEN_DIR = '.cloudmux';
/** Names starting with this are the store's own in every directory (temp files). */
export const RESERVED_PREFIX = '.cloudmux-';
/** Longest segment: one file name on Linux and macOS file systems. */
export const MAX_SEGMENT_BYTES = 255;

/** Marker of a plain store, inside the hidden directory. */
export const PLAIN_MARKER = [HIDDEN_DIR, 'layout'] as const;
/**
 * Marker of an escaped store. No key maps to it in that layout (a key's `%` is written `%25`), and
 * the escaped listing ignores it.
 */
export const ESCAPED_MARKER = '%layout';

/** Why plain cannot hold `key` (already a valid key), or undefined. */
export function plainKeyProblem(key: string): string | undefined {
  const segments = key.split('/');
  if (segments[0] === HIDDEN_DIR) return `the top-level segment ${HIDDEN_DIR} is reserved for the store's metadata in the plain layout`;
  for (const seg of segments) {
    if (seg.startsWith(RESERVED_PREFIX)) return `segments starting ${RESERVED_PREFIX} are reserved for the store's temp files in the plain layout`;
    const bytes = Buffer.byteLength(seg, 'utf8');
    if (bytes > MAX_SEGMENT_BYTES) {
      return `plain layout: a key segment must fit in one file name (${MAX_SEGMENT_BYTES} bytes), this one is ${bytes}; use layout=escaped`;
    }
  }
  return undefined;
}

/** True for names listings never show as objects or directories in the plain layout. */
export function isReservedName(name: string, atTop: boolean): boolean {
  return name.startsWith(RESERVED_PREFIX) || (atTop && name === HIDDEN_DIR);
}

export function plainTempName(random: string): string {
  return `${RESERVED_PREFIX}tmp-${random}`;
}

/** Lock files are named by a digest of the key: keys may be 1024 bytes, names 255. */
export function plainLockName(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

export function plainSidecarName(inode: bigint): string {
  return `${inode}.json`;
}

/** The inode a sidecar file name is for, or undefined when the name is not one. */
export function parsePlainSidecarName(name: string): bigint | undefined {
  const m = /^(\d{1,20})\.json$/.exec(name);
  return m ? BigInt(m[1]!) : undefined;
}
