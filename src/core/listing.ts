import type { ListItem, ObjectSummary } from './types.js';

/**
 * Turns objects that arrive in byte order into a delimited listing: each key with the delimiter
 * after `prefix` is rolled up into one `prefix` item, emitted once, at the position of its first
 * key. For stores that have no server-side delimiter (memory, fs, the router's catalog).
 */
export async function* rollup(objects: AsyncIterable<ObjectSummary> | Iterable<ObjectSummary>, prefix: string, delimiter: string | undefined): AsyncGenerator<ListItem> {
  let last: string | undefined;
  for await (const obj of objects) {
    if (delimiter) {
      const i = obj.key.indexOf(delimiter, prefix.length);
      if (i >= 0) {
        const p = obj.key.slice(0, i + delimiter.length);
        if (p !== last) {
          last = p;
          yield { type: 'prefix', prefix: p };
        }
        continue;
      }
    }
    yield { type: 'object', ...obj };
  }
}

/**
 * The key to continue after when a listing has just emitted a common prefix: every key under
 * `p` sorts before `p` + U+10FFFF…, so skipping there avoids paging through the whole subtree.
 */
export function afterPrefix(p: string): string {
  return `${p}\u{10FFFF}`;
}
