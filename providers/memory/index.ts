import { MemoryStore, type MemoryStoreOptions } from './store.js';

export { MemoryStore, type MemoryStoreOptions };

const named = new Map<string, MemoryStore>();

/**
 * `memory://` gives a fresh store; `memory://name` the same store for the same name within one
 * process (so a CLI `cp memory://a/x memory://a/y` sees one store).
 */
export function fromUrl(url: URL): MemoryStore {
  const name = url.host;
  if (!name) return new MemoryStore();
  let s = named.get(name);
  if (!s) {
    s = new MemoryStore({ name });
    named.set(name, s);
  }
  return s;
}
