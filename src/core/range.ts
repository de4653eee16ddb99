import { InvalidRangeError } from './errors.js';
import type { ByteRange } from './types.js';

/** Rejects malformed ranges before any I/O. */
export function validateRange(range: ByteRange | undefined, provider?: string, key?: string): void {
  if (!range) return;
  const bad = (msg: string): never => {
    throw new InvalidRangeError(msg, { provider, key });
  };
  if ('suffix' in range) {
    if (!Number.isSafeInteger(range.suffix) || range.suffix < 1) bad(`suffix must be a positive integer, got ${range.suffix}`);
    return;
  }
  if (!Number.isSafeInteger(range.offset) || range.offset < 0) bad(`offset must be a non-negative integer, got ${range.offset}`);
  if (range.length !== undefined && (!Number.isSafeInteger(range.length) || range.length < 1)) bad(`length must be a positive integer, got ${range.length}`);
}

/**
 * The concrete `{offset, length}` of a range over an object of `size` bytes: lengths past the end
 * clamp, a suffix longer than the object is the whole object, an offset at or past the end of a
 * non-empty object is InvalidRange (an empty object reads as empty from offset 0).
 */
export function resolveRange(range: ByteRange, size: number, provider?: string, key?: string): { offset: number; length: number } {
  validateRange(range, provider, key);
  if ('suffix' in range) {
    const length = Math.min(range.suffix, size);
    return { offset: size - length, length };
  }
  if (range.offset >= size && !(size === 0 && range.offset === 0)) {
    throw new InvalidRangeError(`offset ${range.offset} is at or past the end of a ${size}-byte object`, { provider, key });
  }
  const length = Math.min(range.length ?? size - range.offset, size - range.offset);
  return { offset: range.offset, length };
}

/** HTTP `Range` header value for a range (suffix form for suffixes). */
export function rangeHeader(range: ByteRange): string {
  if ('suffix' in range) return `bytes=-${range.suffix}`;
  return range.length === undefined ? `bytes=${range.offset}-` : `bytes=${range.offset}-${range.offset + range.length - 1}`;
}
