import { compareKeys } from '../../src/core/keys.js';

/**
 * Azure (and Azurite) list blobs in UTF-16 code-unit order; cloudmux promises UTF-8 byte order.
 * The two differ in one way only: at the first position where two names differ, a surrogate
 * (part of a character ≥ U+10000) sorts before U+E000–U+FFFF in UTF-16 but after it in UTF-8.
 *
 * So for a name whose first surrogate is at position j, with R its first j code units, the server
 * sends all of R+surrogate… and then all of R+[U+E000–U+FFFF]…, and the second group has to be
 * emitted first. The surrogate group is held back (sorted in memory) until the E000 group has
 * streamed by; if it is larger than `bufferLimit`, the E000 group is fetched with a second listing
 * of prefix R instead, so memory stays bounded at the price of re-listing that subtree.
 */

/** One listed entry; `name` is the full blob name (or rolled-up prefix) as the server sorts it. */
export interface Named {
  name: string;
}

/** Opens a server listing (same delimiter as the original) of all names starting with `prefix`, in server order. */
export type OpenListing<T extends Named> = (prefix: string) => AsyncIterator<T>;

/** An iterator one can look ahead on and push entries back onto. */
class Source<T> {
  private readonly front: T[] = [];
  private done = false;
  constructor(private readonly it: AsyncIterator<T>) {}

  async peek(): Promise<T | undefined> {
    if (this.front.length > 0) return this.front[0];
    if (this.done) return undefined;
    const r = await this.it.next();
    if (r.done) {
      this.done = true;
      return undefined;
    }
    this.front.push(r.value);
    return r.value;
  }

  async take(): Promise<T | undefined> {
    const v = await this.peek();
    this.front.shift();
    return v;
  }

  pushFront(items: T[]): void {
    this.front.unshift(...items);
  }

  async close(): Promise<void> {
    if (!this.done) {
      this.done = true;
      await this.it.return?.();
    }
  }
}

function isSurrogate(unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdfff;
}

function firstSurrogate(name: string, from: number): number {
  for (let i = from; i < name.length; i++) if (isSurrogate(name.charCodeAt(i))) return i;
  return -1;
}

/**
 * Re-orders a UTF-16-ordered listing of `prefix` into UTF-8 byte order, pulling lazily.
 * `open(prefix)` must list with the same delimiter as the listing it re-orders.
 */
export async function* utf8Order<T extends Named>(open: OpenListing<T>, prefix: string, bufferLimit: number): AsyncGenerator<T> {
  const src = new Source(open(prefix));
  try {
    yield* group(src, () => true, prefix.length);
  } finally {
    await src.close();
  }

  /** Emits, in UTF-8 order, the entries at the head of `src` for which `belongs` holds; checks positions ≥ minPos. */
  async function* group(source: Source<T>, belongs: (name: string) => boolean, minPos: number): AsyncGenerator<T> {
    for (;;) {
      const head = await source.peek();
      if (!head || !belongs(head.name)) return;
      const j = firstSurrogate(head.name, minPos);
      if (j < 0) {
        await source.take();
        yield head;
        continue;
      }
      const r = head.name.slice(0, j);
      const inSurrogates = (n: string): boolean => n.startsWith(r) && isSurrogate(n.charCodeAt(j));
      const inHighBmp = (n: string): boolean => n.startsWith(r) && n.charCodeAt(j) >= 0xe000;

      const held: T[] = [];
      let overflow = false;
      for (;;) {
        const next = await source.peek();
        if (!next || !inSurrogates(next.name)) break;
        if (held.length >= bufferLimit) {
          overflow = true;
          break;
        }
        held.push(next);
        await source.take();
      }

      if (!overflow) {
        yield* group(source, inHighBmp, j + 1);
        held.sort((a, b) => compareKeys(a.name, b.name));
        yield* held;
        continue;
      }

      // Too many to hold: list R again to reach its E000–FFFF group without holding the surrogate group.
      const side = new Source(open(r));
      try {
        for (;;) {
          const next = await side.peek();
          if (!next || inHighBmp(next.name) || !next.name.startsWith(r)) break;
          await side.take();
        }
        yield* group(side, inHighBmp, j + 1);
      } finally {
        await side.close();
      }
      source.pushFront(held);
      held.length = 0;
      yield* group(source, inSurrogates, j + 2);
      // The main listing now reaches the E000–FFFF group already emitted from the side listing.
      for (;;) {
        const next = await source.peek();
        if (!next || !inHighBmp(next.name)) break;
        await source.take();
      }
    }
  }
}

/** Merges two name-sorted (server order) arrays, as Azure returns a hierarchy page's blobs and prefixes apart. */
export function mergeServerOrder<T extends Named>(a: T[], b: T[]): T[] {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const out: T[] = [];
  let i = 0;
  let k = 0;
  while (i < a.length && k < b.length) out.push(a[i]!.name <= b[k]!.name ? a[i++]! : b[k++]!);
  while (i < a.length) out.push(a[i++]!);
  while (k < b.length) out.push(b[k++]!);
  return out;
}
