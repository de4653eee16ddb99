const UNITS: Readonly<Record<string, number>> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/**
 * `50M` → 52428800: a byte size with an optional binary multiple (K, M, G, T; `KiB`, `MB` and `B`
 * suffixes read the same), or a plain number of bytes. Undefined for anything else, so callers
 * raise the error their context calls for (a usage error, a config issue naming the field).
 */
export function parseByteSize(text: string | number): number | undefined {
  if (typeof text === 'number') return Number.isSafeInteger(text) && text >= 0 ? text : undefined;
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(text.trim());
  if (!m) return undefined;
  const n = Math.floor(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** What every size error says was expected (one wording for the CLI, config and --bwlimit). */
export const BYTE_SIZE_EXAMPLES = 'a size such as 512K, 50M, 1.5GiB or a number of bytes';
