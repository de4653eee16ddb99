import { collect } from '../../src/core/body.js';
import type { BlobStore } from '../../src/core/types.js';
import { chunkIdOf, parseManifest } from '../../src/layers/chunked/index.js';

/** What a store holds, as GC's invariant sees it: each manifest's chunk ids, and the chunks present. */
export interface StoreSnapshot {
  manifests: Map<string, string[]>;
  chunks: Set<string>;
}

/** Reads every manifest and lists every chunk of a ChunkedStore's inner store. */
export async function snapshot(inner: BlobStore, chunkPrefix: string): Promise<StoreSnapshot> {
  const s: StoreSnapshot = { manifests: new Map(), chunks: new Set() };
  for await (const item of inner.list()) {
    if (item.type !== 'object') continue;
    const id = chunkIdOf(chunkPrefix, item.key);
    if (id !== undefined) {
      s.chunks.add(id);
      continue;
    }
    let r;
    try {
      r = await inner.get(item.key);
    } catch {
      continue; // deleted since listed
    }
    if (r.meta.metadata.cloudmux_chunked === undefined) {
      r.body.destroy();
      continue;
    }
    s.manifests.set(item.key, parseManifest(await collect(r.body)).chunks.map((c) => c.id));
  }
  return s;
}

/**
 * The invariant GC must keep: no manifest in the store names a chunk the store lacks. Returns the
 * violations (empty when it holds).
 */
export function danglingReferences(s: StoreSnapshot): { key: string; id: string }[] {
  const out: { key: string; id: string }[] = [];
  for (const [key, ids] of s.manifests) for (const id of ids) if (!s.chunks.has(id)) out.push({ key, id });
  return out;
}
