import { InvalidKeyError } from './errors.js';

export const MAX_KEY_BYTES = 1024;

/**
 * The portable key rules, the intersection of what S3, GCS, Azure and a POSIX file system accept
 * without escaping or silent rewriting. Enforced before any I/O.
 *
 * - valid UTF-8 (no lone surrogates), 1..1024 bytes
 * - no control characters (U+0000–U+001F, U+007F–U+009F)
 * - no backslash (Azure and Windows rewrite it to `/`)
 * - no leading `/`, no trailing `/`, no empty, `.` or `..` segment
 */
export function keyProblem(key: unknown): string | undefined {
  if (typeof key !== 'string') return 'key must be a string';
  if (key.length === 0) return 'key is empty';
  if (/[\uD800-\uDFFF]/u.test(key)) return 'key is not valid UTF-8 (lone surrogate)';
  const bytes = Buffer.byteLength(key, 'utf8');
  if (bytes > MAX_KEY_BYTES) return `key is ${bytes} bytes; the limit is ${MAX_KEY_BYTES}`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(key)) return 'key contains a control character';
  if (key.includes('\\')) return 'key contains a backslash';
  if (key.startsWith('/')) return 'key starts with /';
  if (key.endsWith('/')) return 'key ends with /';
  for (const seg of key.split('/')) {
    if (seg === '') return 'key has an empty segment (//)';
    if (seg === '.' || seg === '..') return `key has a "${seg}" segment`;
  }
  return undefined;
}

/** Throws InvalidKey unless `key` follows the portable rules. */
export function validateKey(key: string, provider?: string): void {
  const problem = keyProblem(key);
  if (problem) throw new InvalidKeyError(`invalid key ${JSON.stringify(String(key).slice(0, 200))}: ${problem}`, { key: String(key), provider });
}

/**
 * Prefixes for list: same rules as keys, except that a prefix may be empty and may end with `/`,
 * and its last segment may be partial.
 */
export function validatePrefix(prefix: string, provider?: string): void {
  if (prefix === '') return;
  const trimmed = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  const problem = trimmed === '' ? 'prefix is "/"' : keyProblem(trimmed);
  if (problem) throw new InvalidKeyError(`invalid prefix ${JSON.stringify(prefix.slice(0, 200))}: ${problem}`, { key: prefix, provider });
}

/**
 * Compares two keys in UTF-8 byte order, the order every provider lists in. JavaScript's `<` on
 * strings compares UTF-16 code units and differs for characters outside the BMP.
 */
export function compareKeys(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // A surrogate (0xD800–0xDFFF) encodes a code point ≥ 0x10000, which sorts after every BMP
    // code point in UTF-8, including 0xE000–0xFFFF.
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs !== ys) return xs ? 1 : -1;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

/** Joins a store prefix and a key with exactly one `/`. */
export function joinKey(prefix: string, key: string): string {
  if (!prefix) return key;
  return prefix.endsWith('/') ? prefix + key : `${prefix}/${key}`;
}
