/** AzureStore's server listing (UTF-16 order, re-ordered by the caller) and the startAfter probe. */
import type { BlobItem } from '@azure/storage-blob';
import { compareKeys, throwIfAborted } from '../../src/core/index.js';
import { PROVIDER } from './config.js';
import { mergeServerOrder } from './list-order.js';
import type { AzureStore } from './store.js';

/** One entry of a server listing, before the UTF-8 re-ordering. */
export interface ListedEntry {
  name: string;
  blob?: BlobItem;
}

/** One lazy server listing in server (UTF-16) order; a hierarchy page's prefixes merged among its blobs. */
export async function* serverListing(s: AzureStore, prefix: string, delimiter: string | undefined, pageSize: number | undefined, signal: AbortSignal | undefined): AsyncGenerator<ListedEntry> {
  const options = { prefix, includeMetadata: true, abortSignal: signal };
  const settings = pageSize ? { maxPageSize: Math.min(Math.max(1, Math.floor(pageSize)), 5000) } : {};
  const pages = delimiter
    ? s.container.listBlobsByHierarchy(delimiter, options).byPage(settings)
    : s.container.listBlobsFlat(options).byPage(settings);
  const iterator = pages[Symbol.asyncIterator]();
  try {
    for (;;) {
      throwIfAborted(signal, { provider: PROVIDER });
      let page;
      try {
        page = await iterator.next();
      } catch (e) {
        throw s.mapError(e, undefined, signal);
      }
      if (page.done) return;
      const segment = page.value.segment as { blobItems: BlobItem[]; blobPrefixes?: { name: string }[] };
      // Hierarchical-namespace accounts list directories as empty marker blobs; they are not objects.
      const items = segment.blobItems.filter((b) => b.metadata?.hdi_isfolder !== 'true').map((b) => ({ name: b.name, blob: b }));
      const prefixes = (segment.blobPrefixes ?? []).map((p) => ({ name: p.name }));
      yield* mergeServerOrder<ListedEntry>(items, prefixes);
    }
  } finally {
    await iterator.return?.(undefined);
  }
}

/** Whether a rolled-up prefix still holds a key after `startAfter` (only in doubt when startAfter lies inside it). */
export async function prefixHasKeyAfter(s: AzureStore, prefix: string, startAfter: string, signal: AbortSignal | undefined): Promise<boolean> {
  if (compareKeys(prefix, startAfter) > 0) return true;
  if (!startAfter.startsWith(prefix)) return false;
  for await (const e of serverListing(s, s.namePrefix + prefix, undefined, undefined, signal)) {
    if (compareKeys(e.name.slice(s.namePrefix.length), startAfter) > 0) return true;
  }
  return false;
}
