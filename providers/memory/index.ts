import { InvalidConfigError } from '../../src/core/errors.js';
import { MemoryStore, type MemoryStoreOptions } from './store.js';

export { MemoryStore, type MemoryStoreOptions };

const named = new Map<string, MemoryStore>();

/**
 * `memory://` gives a fresh store; `memory://name` the same store for the same name within one
 * process (so a CLI `cp memory://a/x memory://a/y` sees one store). It takes no options and no
 * prefix: a URL parameter or path is InvalidConfig, as an unknown parameter is for every other scheme.
 */
export function fromUrl(url: URL): MemoryStore {
  const [param] = url.searchParams.keys();
  if (param !== undefined) throw new InvalidConfigError(`memory: unknown URL parameter ${JSON.stringify(param)}; memory:// takes none`, { provider: 'memory' });
  if (url.pathname !== '' && url.pathname !== '/') throw new InvalidConfigError(`memory: a memory:// store has no prefix (got ${url.pathname}); open memory://${url.host} and use keys under it`, { provider: 'memory' });
  const name = url.host;
  if (!name) return new MemoryStore();
  let s = named.get(name);
  if (!s) {
    s = new MemoryStore({ name });
    named.set(name, s);
  }
  return s;
}
