/**
 * The escaped layout (`layout: 'escaped'`; plain-layout.ts is the default): how keys map to paths
 * under the store root, and how directory entries map back to keys. Its marker is `<root>/%layout`.
 *
 * # Layout
 * A key's segments (split on `/`) become directories, its last segment the data file:
 *
 *     photos/2024/cat.jpg  ->  <root>/photos%d/2024%d/cat.jpg
 *                              <root>/photos%d/2024%d/cat.jpg%m<inode>   (sidecar: meta of that inode)
 *
 * Directories carry the marker `%d`, so `a` (file `a`) and `a/b` (directory `a%d`) never collide,
 * as on S3, GCS and Azure. Names are the key's own characters, except that `%` is written `%25`:
 * a `%` followed by two upper-case hex digits is an escaped byte, a `%` followed by a lower-case
 * letter starts a marker, so no key can ever produce a reserved name:
 *
 * - `<name>%d`          directory of the keys `<name>/…`
 * - `<piece>%c`         chunk directory of a long segment (below)
 * - `<name>%m<inode>`   sidecar: metadata of the data file `<name>` while it is that inode
 * - `<name>%t<hex>`     temp file of a put in flight (or a crash leftover)
 * - `<name>%l`          per-key lock file
 * - `%e`                the empty rest of a long segment that ends exactly at a chunk boundary
 *
 * File names are limited (255 bytes) but a key segment may be 1024 bytes. A segment whose cost
 * (bytes, `%` counting 3) reaches {@link CHUNK_COST} is cut at the first byte where the cost of the
 * piece reaches it; the piece becomes a `%c` directory and the rest is placed inside it, cut again
 * if still long. The cut depends only on the bytes before it, so every name that starts with a
 * piece lands in that piece's directory: walking directories in sorted order still yields keys in
 * UTF-8 byte order. A cut may split a UTF-8 character; the split bytes are written `%XX` so that
 * every name stays valid UTF-8.
 *
 * Listing order: each entry stands for a contiguous range of keys starting with its decoded bytes
 * (plus `/` for `%d` directories), so sorting the entries of one directory by those bytes and
 * descending in that order lists keys in UTF-8 byte order, reading one directory at a time.
 */

/** Cost (bytes; an escaped `%` counts 3) at which a segment is cut into a chunk directory. */
export const CHUNK_COST = 192;

const SLASH = 0x2f;
const PERCENT = 0x25;
const ESCAPE = /%[0-9A-F]{2}/y;
const HEX = '0123456789ABCDEF';

/** Where one key lives, relative to the root: directory components and the data file name. */
export interface ObjectPath {
  dirs: string[];
  name: string;
}

export function objectPath(key: string): ObjectPath {
  const dirs: string[] = [];
  const segments = key.split('/');
  let name = '';
  segments.forEach((segment, i) => {
    let rest = Buffer.from(segment, 'utf8');
    for (let cut = cutPoint(rest); cut > 0; cut = cutPoint(rest)) {
      dirs.push(`${encodeBytes(rest.subarray(0, cut))}%c`);
      rest = rest.subarray(cut);
    }
    const base = rest.byteLength === 0 ? '%e' : encodeBytes(rest);
    if (i === segments.length - 1) name = base;
    else dirs.push(`${base}%d`);
  });
  return { dirs, name };
}

/** The first index at which the cost of `bytes[0, i)` reaches CHUNK_COST, or -1 when it never does. */
export function cutPoint(bytes: Uint8Array): number {
  let cost = 0;
  for (let i = 0; i < bytes.length; i++) {
    cost += bytes[i] === PERCENT ? 3 : 1;
    if (cost >= CHUNK_COST) return i + 1;
  }
  return -1;
}

/**
 * The file-name form of some bytes of a segment: UTF-8 text with `%` as `%25`; bytes of a character
 * split by a chunk cut as `%XX`; `.` and `..` escaped so that no name is a path step.
 */
export function encodeBytes(bytes: Buffer): string {
  let head = 0;
  while (head < bytes.length && head < 3 && isContinuation(bytes[head]!)) head++;
  let tail = bytes.length;
  for (let j = bytes.length - 1; j >= Math.max(head, bytes.length - 3); j--) {
    const b = bytes[j]!;
    if (isContinuation(b)) continue;
    if (b >= 0xc0 && j + sequenceLength(b) > bytes.length) tail = j;
    break;
  }
  const mid = bytes.subarray(head, tail).toString('utf8').replaceAll('%', '%25');
  const out = escapeBytes(bytes.subarray(0, head)) + mid + escapeBytes(bytes.subarray(tail));
  if (out === '.' || out === '..') return out.replaceAll('.', '%2E');
  return out;
}

function isContinuation(b: number): boolean {
  return b >= 0x80 && b < 0xc0;
}

function sequenceLength(lead: number): number {
  if (lead >= 0xf0) return 4;
  if (lead >= 0xe0) return 3;
  return 2;
}

function escapeBytes(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += `%${HEX[b >> 4]}${HEX[b & 15]}`;
  return s;
}

/** Reverses {@link encodeBytes}; undefined when `s` holds a `%` that is not an escape. */
export function decodeBase(s: string): Buffer | undefined {
  const parts: Buffer[] = [];
  let start = 0;
  let i = s.indexOf('%');
  while (i >= 0) {
    ESCAPE.lastIndex = i;
    if (!ESCAPE.test(s)) return undefined;
    if (i > start) parts.push(Buffer.from(s.slice(start, i), 'utf8'));
    parts.push(Buffer.from([parseInt(s.slice(i + 1, i + 3), 16)]));
    start = i + 3;
    i = s.indexOf('%', start);
  }
  if (start < s.length) parts.push(Buffer.from(s.slice(start), 'utf8'));
  return Buffer.concat(parts);
}

export type EntryKind = 'data' | 'dir' | 'chunk' | 'sidecar' | 'temp' | 'lock';

/** One directory entry understood by the layout. */
export interface ParsedEntry {
  kind: EntryKind;
  /** The name's encoded base (`%e` for the empty rest); entries of one object share it. */
  base: string;
  /** The key bytes the entry stands for: the base decoded, plus `/` for a `%d` directory. */
  bytes: Buffer;
  /** For sidecars: the inode of the data file they describe. */
  inode?: bigint;
}

const SUFFIX = /^(?:%([dcl])|%m(\d{1,20})|%t([0-9a-f]{1,64}))?$/;

/**
 * Parses a directory entry name. Undefined for names the layout never writes (a file dropped in by
 * hand with a stray `%`, a non-canonical escape, a plain directory): those are left alone.
 */
export function parseEntry(name: string): ParsedEntry | undefined {
  let markerAt = -1;
  for (let i = name.indexOf('%'); i >= 0; i = name.indexOf('%', i + 3)) {
    ESCAPE.lastIndex = i;
    if (!ESCAPE.test(name)) {
      markerAt = i;
      break;
    }
  }
  let base = markerAt < 0 ? name : name.slice(0, markerAt);
  let suffix = markerAt < 0 ? '' : name.slice(markerAt);
  if (base === '' && suffix.startsWith('%e')) {
    base = '%e';
    suffix = suffix.slice(2);
  }
  const m = SUFFIX.exec(suffix);
  if (!m || base === '') return undefined;
  const bytes = base === '%e' ? Buffer.alloc(0) : decodeBase(base);
  if (!bytes || (base !== '%e' && encodeBytes(bytes) !== base)) return undefined;
  if (bytes.includes(SLASH)) return undefined;
  const cut = cutPoint(bytes);
  if (m[1] === 'c') {
    // A chunk is exactly a cut piece; anything else would break the listing order.
    return cut === bytes.length ? { kind: 'chunk', base, bytes } : undefined;
  }
  if (cut >= 0) return undefined;
  if (m[1] === 'd') return { kind: 'dir', base, bytes: Buffer.concat([bytes, Buffer.from('/')]) };
  if (m[1] === 'l') return { kind: 'lock', base, bytes };
  if (m[2] !== undefined) return { kind: 'sidecar', base, bytes, inode: BigInt(m[2]) };
  if (m[3] !== undefined) return { kind: 'temp', base, bytes };
  return { kind: 'data', base, bytes };
}

export function sidecarName(name: string, inode: bigint): string {
  return `${name}%m${inode}`;
}

export function tempName(name: string, random: string): string {
  return `${name}%t${random}`;
}

export function lockName(name: string): string {
  return `${name}%l`;
}
