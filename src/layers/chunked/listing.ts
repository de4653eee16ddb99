import { headIfExists } from '../../core/helpers.js';
import type { BlobStore, ListItem, ListOptions } from '../../core/types.js';
import { markedSize, serializeManifest } from './manifest.js';

/** No manifest is smaller than this (one chunk, the shortest numbers): smaller objects need no head. */
export const MIN_MANIFEST_BYTES = serializeManifest({
  version: 1, size: 1, sha256: '0'.repeat(64), sizes: { min: 64, target: 65, max: 66 }, ids: 'sha256', chunks: [{ id: '0'.repeat(64), size: 1 }],
}).byteLength;

/** Heads in flight while listing. */
const LOOKAHEAD = 8;

/**
 * The inner listing as a ChunkedStore shows it: chunks hidden, manifests reported with their
 * logical size (from the mark on the manifest object, one `head` each, up to LOOKAHEAD at once,
 * in order), digests dropped for manifests (the inner ones are of the manifest's bytes). Objects
 * deleted between the listing and their head are left out.
 */
export async function* listLogical(inner: BlobStore, chunkPrefix: string, opts: ListOptions): AsyncGenerator<ListItem> {
  const window: Promise<ListItem | undefined>[] = [];
  const resolve = async (item: ListItem): Promise<ListItem | undefined> => {
    if (item.type === 'prefix' || item.size < MIN_MANIFEST_BYTES) return item;
    const meta = await headIfExists(inner, item.key, { signal: opts.signal });
    if (!meta) return undefined;
    const size = markedSize(meta.metadata);
    if (size === undefined) return item;
    const { checksums: _manifestDigests, ...rest } = item;
    return { ...rest, size };
  };
  try {
    for await (const item of inner.list(opts)) {
      if (item.type === 'object' ? item.key.startsWith(chunkPrefix) : item.prefix.startsWith(chunkPrefix)) continue;
      const p = resolve(item);
      p.catch(() => undefined);
      window.push(p);
      while (window.length >= LOOKAHEAD) {
        const done = await window.shift()!;
        if (done) yield done;
      }
    }
    while (window.length > 0) {
      const done = await window.shift()!;
      if (done) yield done;
    }
  } finally {
    window.length = 0;
  }
}
