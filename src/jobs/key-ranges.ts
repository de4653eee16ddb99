import { compareKeys } from '../core/index.js';

const ASCII_TOP = 0x80;
const UNICODE_TOP = 0x110000;

/**
 * A key `m` with `after < m < end` in UTF-8 byte order (= code point order), about halfway, or
 * undefined when there is no room worth splitting at. `end` undefined is the end of the key space.
 *
 * The rule for splitting a range nobody can size: bisect the code points after the common prefix.
 * An open end is first cut at U+0080 when the lower key's code point there is ASCII (where nearly
 * every real key lives), so `obj-00100 .. ∞` splits at `w`, not in the middle of the CJK planes.
 * A half that holds no keys costs its lister one listing request per side and is done; the next
 * split then bisects a range half as wide, so a dense range is reached in a few requests per code
 * point of common prefix.
 */
export function splitPoint(after: string | undefined, end: string | undefined): string | undefined {
  const lo = [...(after ?? '')].map((c) => c.codePointAt(0)!);
  const hi = end === undefined ? undefined : [...end].map((c) => c.codePointAt(0)!);
  const out: number[] = [];
  let bounded = hi !== undefined;
  for (let i = 0; i < 256; i++) {
    const a = i < lo.length ? lo[i]! : -1;
    const b = bounded ? (i < hi!.length ? hi![i]! : -1) : (a < ASCII_TOP ? ASCII_TOP : UNICODE_TOP);
    if (a === b) {
      if (a === -1) return undefined; // equal keys
      out.push(a);
      continue;
    }
    if (b < a) return undefined; // after >= end
    if (b - a >= 2) {
      const m = codePoint(Math.floor((a + b) / 2), a, b);
      if (m === undefined) return undefined;
      out.push(m);
      const key = String.fromCodePoint(...out);
      // Guard the contract (a bug here would hand two workers one key, or none).
      if (compareKeys(key, after ?? '') <= 0 || (end !== undefined && compareKeys(key, end) >= 0)) return undefined;
      return key;
    }
    // b === a + 1: no code point strictly between; keep a and bisect what follows it, unbounded above.
    if (a === -1) return undefined; // `after` ends here and `end` is after + U+0000…: no room
    out.push(a);
    bounded = false;
  }
  return undefined;
}

/** `m`, moved out of the surrogate block (not a code point of any string), staying strictly between a and b. */
function codePoint(m: number, a: number, b: number): number | undefined {
  if (m < 0xd800 || m > 0xdfff) return m;
  if (0xe000 < b) return 0xe000;
  if (0xd7ff > a) return 0xd7ff;
  return undefined;
}

/** Code points after the common prefix that {@link sampledMidpoint} interpolates over. */
const MID_DIGITS = 6;

/**
 * A key about halfway between `lo` and `hi` (exclusive both), reading the code points after their
 * common prefix as digits of a number in the alphabet the `sample` keys use at those positions (so
 * `k0004999` .. `k0039999` with decimal samples meets at `k002249`, where a plain bisection of the
 * first differing code point gives `k001`, a tenth of the way). Falls back to {@link splitPoint}
 * when `hi` is open or the interpolation lands outside the range.
 */
export function sampledMidpoint(lo: string, hi: string | undefined, sample: readonly string[]): string | undefined {
  if (hi === undefined) return splitPoint(lo, hi);
  const a = [...lo].map((c) => c.codePointAt(0)!);
  const b = [...hi].map((c) => c.codePointAt(0)!);
  let p = 0;
  while (p < a.length && p < b.length && a[p] === b[p]) p++;
  const seen = new Set<number>();
  for (const key of [lo, hi, ...sample]) {
    const cps = [...key];
    for (let i = p; i < p + MID_DIGITS && i < cps.length; i++) seen.add(cps[i]!.codePointAt(0)!);
  }
  const alphabet = [...seen].sort((x, y) => x - y);
  const base = BigInt(alphabet.length);
  if (alphabet.length < 2) return splitPoint(lo, hi);
  const value = (cps: number[]): bigint => {
    let v = 0n;
    for (let i = p; i < p + MID_DIGITS; i++) v = v * base + BigInt(i < cps.length ? alphabet.indexOf(cps[i]!) : 0);
    return v;
  };
  let mid = (value(a) + value(b)) / 2n;
  const digits: number[] = [];
  for (let i = 0; i < MID_DIGITS; i++) {
    digits.unshift(alphabet[Number(mid % base)]!);
    mid /= base;
  }
  // Trailing lowest digits add nothing to where the key sorts among longer keys: drop them.
  while (digits.length > 1 && digits.at(-1) === alphabet[0]) digits.pop();
  const key = String.fromCodePoint(...a.slice(0, p), ...digits);
  if (compareKeys(key, lo) > 0 && compareKeys(key, hi) < 0) return key;
  return splitPoint(lo, hi);
}
