import { FsStore } from './store.js';
import { optionsFromUrl, type FsStoreOptions } from './config.js';

export { FsStore };
export type { FsLayout, FsStoreOptions } from './config.js';
export { mapFsError } from './errors.js';

/**
 * `file:///abs/path` (query: `layout` = `plain` | `escaped`, `fsync`, `create`, `sweep`,
 * `leftover_ttl_ms`, `lock_timeout_ms`, `stale_lock_ms`, `small_object_bytes`, `read_only`); typed `options`
 * override the URL's.
 */
export function fromUrl(url: URL, options?: Record<string, unknown>): FsStore {
  return new FsStore(optionsFromUrl(url, options));
}

/** An fs store over `root` (see FsStore for the on-disk layout and guarantees). */
export function createFsStore(options: FsStoreOptions): FsStore {
  return new FsStore(options);
}
