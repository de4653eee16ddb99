import { IntegrityError } from '../../core/errors.js';
import { checkChunkSizes, type ChunkSizes } from './chunker.js';

/** Metadata name marking an inner object as a chunk manifest; its value is `v<format> <logical size>`. */
export const MANIFEST_MARK = 'cloudmux_chunked';
export const MANIFEST_FORMAT = 'cloudmux-chunked';
export const MANIFEST_VERSION = 1;
/** Where chunks live in the inner store, by default: `<prefix><id[0..2]>/<id>`. */
export const DEFAULT_CHUNK_PREFIX = '.cmx-chunks/';
/** A manifest larger than this is refused as corrupt (≈ 800,000 chunks: a 800 GiB object at 1 MiB). */
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

/** How chunk ids are computed. `hmac-sha256` ids are keyed (ChunkedStoreOptions.idKey). */
export type ChunkIdAlgorithm = 'sha256' | 'hmac-sha256';

/** One chunk of an object: its content id (64 hex digits) and byte count. */
export interface ChunkRef {
  id: string;
  size: number;
}

/**
 * The stored description of a chunked object (docs/chunk-format.md). Everything a reader needs:
 * the chunks in order, the whole object's size and SHA-256, and how ids and cut points were made.
 */
export interface Manifest {
  version: typeof MANIFEST_VERSION;
  size: number;
  sha256: string;
  sizes: ChunkSizes;
  ids: ChunkIdAlgorithm;
  /** For keyed ids: a check value of the id key, so a reader with another key fails clearly. */
  keyCheck?: string;
  chunks: ChunkRef[];
}

const HEX64 = /^[0-9a-f]{64}$/;
const HEX16 = /^[0-9a-f]{16}$/;

/** The manifest as stored: compact JSON, chunks as `[id, size]` pairs. */
export function serializeManifest(m: Manifest): Buffer {
  return Buffer.from(JSON.stringify({
    format: MANIFEST_FORMAT,
    version: m.version,
    size: m.size,
    sha256: m.sha256,
    chunking: { min: m.sizes.min, target: m.sizes.target, max: m.sizes.max },
    ids: m.ids,
    ...(m.keyCheck !== undefined ? { keyCheck: m.keyCheck } : {}),
    chunks: m.chunks.map((c) => [c.id, c.size]),
  }), 'utf8');
}

/**
 * Parses and checks a stored manifest: IntegrityError for anything but a well-formed v1 manifest
 * whose chunk sizes add up to its size (never a partial or guessed object).
 */
export function parseManifest(bytes: Uint8Array, where: { provider?: string; key?: string } = {}): Manifest {
  const bad = (why: string): Error => new IntegrityError(`chunk manifest is invalid: ${why}`, where);
  if (bytes.byteLength > MAX_MANIFEST_BYTES) throw bad(`${bytes.byteLength} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit`);
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    throw bad('not JSON');
  }
  const o = raw as Record<string, unknown>;
  if (o === null || typeof o !== 'object' || o.format !== MANIFEST_FORMAT) throw bad('not a cloudmux chunk manifest');
  if (o.version !== MANIFEST_VERSION) throw bad(`format version ${String(o.version)} is not one this cloudmux reads (1)`);
  const size = o.size;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw bad('size');
  if (typeof o.sha256 !== 'string' || !HEX64.test(o.sha256)) throw bad('sha256');
  const ch = o.chunking as Record<string, unknown> | undefined;
  const sizes = { min: Number(ch?.min), target: Number(ch?.target), max: Number(ch?.max) };
  try {
    checkChunkSizes(sizes);
  } catch {
    throw bad('chunk sizes');
  }
  if (o.ids !== 'sha256' && o.ids !== 'hmac-sha256') throw bad(`chunk id algorithm ${String(o.ids)}`);
  if (o.ids === 'hmac-sha256' && (typeof o.keyCheck !== 'string' || !HEX16.test(o.keyCheck))) throw bad('keyed ids without a key check value');
  if (!Array.isArray(o.chunks)) throw bad('chunks');
  const chunks: ChunkRef[] = [];
  let total = 0;
  for (const c of o.chunks as unknown[]) {
    if (!Array.isArray(c) || c.length !== 2 || typeof c[0] !== 'string' || !HEX64.test(c[0]) || typeof c[1] !== 'number') throw bad('chunk entry');
    const n = c[1];
    if (!Number.isSafeInteger(n) || n <= 0 || n > sizes.max) throw bad('chunk size');
    chunks.push({ id: c[0], size: n });
    total += n;
  }
  if (total !== size) throw bad(`chunk sizes add up to ${total}, not ${size}`);
  return {
    version: MANIFEST_VERSION, size, sha256: o.sha256, sizes, ids: o.ids,
    ...(o.ids === 'hmac-sha256' ? { keyCheck: o.keyCheck as string } : {}), chunks,
  };
}

/** The metadata value marking a manifest of a `size`-byte object. */
export function manifestMark(size: number): string {
  return `v${MANIFEST_VERSION} ${size}`;
}

/** The logical size a manifest mark records, or undefined when `metadata` has no valid mark. */
export function markedSize(metadata: Record<string, string>): number | undefined {
  const v = metadata[MANIFEST_MARK];
  if (v === undefined) return undefined;
  const m = /^v(\d+) (\d+)$/.exec(v);
  if (!m) return undefined;
  const size = Number(m[2]);
  return Number.isSafeInteger(size) ? size : undefined;
}

/** The inner key of a chunk. */
export function chunkKey(prefix: string, id: string): string {
  return `${prefix}${id.slice(0, 2)}/${id}`;
}

/** The chunk id of an inner key under `prefix`, or undefined if the key is not a chunk's. */
export function chunkIdOf(prefix: string, key: string): string | undefined {
  if (!key.startsWith(prefix)) return undefined;
  const rest = key.slice(prefix.length);
  const m = /^([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(rest);
  return m && m[2]!.startsWith(m[1]!) ? m[2] : undefined;
}

/** The chunks covering bytes [offset, offset + length) and where in the first one the range starts. */
export function chunksForRange(m: Manifest, offset: number, length: number): { first: number; last: number; skip: number } {
  let at = 0;
  let first = -1;
  let skip = 0;
  let last = -1;
  const end = offset + length;
  for (let i = 0; i < m.chunks.length; i++) {
    const size = m.chunks[i]!.size;
    if (first < 0 && offset < at + size) {
      first = i;
      skip = offset - at;
    }
    if (first >= 0 && end <= at + size) {
      last = i;
      break;
    }
    at += size;
  }
  return { first, last: last < 0 ? m.chunks.length - 1 : last, skip };
}
