/** A catalog change as a reader saw it, or as a writer committed it. */
export interface FeedEntry {
  key: string;
  version: number;
  deleted: boolean;
}

/**
 * What happened in one run: every commit acknowledged to a writer (`committed: true`), every
 * page a feed reader received (in order), and the catalog's state per key once writers stopped
 * and the reader had drained the feed.
 */
export interface FeedHistory {
  commits: FeedEntry[];
  pages: FeedEntry[][];
  /** Final catalog state per key (absent: the key has no row, e.g. a pruned tombstone). */
  final: Map<string, { version: number; deleted: boolean }>;
}

/**
 * Checks the change feed's promise over a history:
 * - skipped: every acknowledged commit was delivered, or a later version of its key was;
 * - final: after draining, the last delivered state of each key is the catalog's;
 * - back: a key's delivered versions never decrease;
 * - phantom: nothing delivered that no writer committed (or with the wrong deleted flag);
 * - twice: no key twice in one page.
 * Returns one line per violation (empty: the history is good).
 */
export function checkFeedHistory(h: FeedHistory): string[] {
  const out: string[] = [];
  const committed = new Map<string, FeedEntry>();
  for (const c of h.commits) committed.set(`${c.key}@${c.version}`, c);
  const newestDelivered = new Map<string, number>();
  const lastDelivered = new Map<string, FeedEntry>();
  h.pages.forEach((page, i) => {
    const inPage = new Set<string>();
    for (const d of page) {
      if (inPage.has(d.key)) out.push(`twice: ${d.key} appears twice in page ${i}`);
      inPage.add(d.key);
      const c = committed.get(`${d.key}@${d.version}`);
      if (!c) out.push(`phantom: ${d.key}@${d.version} delivered in page ${i} but never committed`);
      else if (c.deleted !== d.deleted) out.push(`phantom: ${d.key}@${d.version} delivered as ${d.deleted ? 'deleted' : 'live'} in page ${i}, committed as ${c.deleted ? 'deleted' : 'live'}`);
      const prev = newestDelivered.get(d.key);
      if (prev !== undefined && d.version < prev) out.push(`back: ${d.key} went from ${prev} to ${d.version} in page ${i}`);
      newestDelivered.set(d.key, Math.max(prev ?? -Infinity, d.version));
      lastDelivered.set(d.key, d);
    }
  });
  for (const c of h.commits) {
    const got = newestDelivered.get(c.key);
    if (got === undefined || got < c.version) out.push(`skipped: ${c.key}@${c.version}${c.deleted ? ' (delete)' : ''} acknowledged, reader's newest is ${got ?? 'nothing'}`);
  }
  for (const [key, f] of h.final) {
    const d = lastDelivered.get(key);
    if (!d || d.version !== f.version || d.deleted !== f.deleted) {
      out.push(`final: ${key} is ${f.deleted ? 'deleted' : 'live'}@${f.version} in the catalog, reader ended with ${d ? `${d.deleted ? 'deleted' : 'live'}@${d.version}` : 'nothing'}`);
    }
  }
  return out;
}

export { feedSeed, prng } from '../harness/replay-seed.js';
