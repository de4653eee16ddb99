import type { BlobStore, CopyOptions, ObjectMeta } from './types.js';
import { NotSupportedError } from './errors.js';

/**
 * Server-side copy from another store of the same provider (another bucket or prefix on the same
 * endpoint and account): the bytes never pass through this process. An optional ability of a
 * store, declared by `capabilities.copyFromStore` and found with {@link copyFromStoreOf}.
 *
 * # Contract
 * - `canCopyFrom(source)` is pure (no I/O): true when this store's provider can read `source`'s
 *   objects with this store's credentials (S3: same endpoint, region and credentials; GCS: same
 *   API endpoint and credentials; Azure: same account). Layers that pass bytes through unchanged
 *   (retry, breaker, …) are looked through; one that transforms bytes (encryption) never is.
 * - `copyFromStore` copies bytes, content type and metadata (including `cloudmux_sha256`) unless
 *   `opts.metadata`/`opts.contentType` replace them; `sourceIfMatch` pins the source version
 *   (PreconditionFailed otherwise). NotSupported when `canCopyFrom(source)` is false.
 * - The caller verifies the result (the copier compares digests); nothing here retries.
 */
export interface CopyFromStore {
  canCopyFrom(source: BlobStore): boolean;
  copyFromStore(source: BlobStore, srcKey: string, dstKey: string, opts?: CopyOptions): Promise<ObjectMeta>;
}

/**
 * Marks a layer that hands bytes, keys and metadata through unchanged; the value is the store it
 * wraps. {@link storeBeneath} looks through such layers to the driver.
 */
export const PASSES_THROUGH: unique symbol = Symbol.for('cloudmux.passesThrough');

interface PassingThrough {
  readonly [PASSES_THROUGH]: BlobStore;
}

/** The store under every layer that passes bytes through unchanged (the store itself when none). */
export function storeBeneath(store: BlobStore): BlobStore {
  let s = store;
  for (let depth = 0; depth < 32; depth++) {
    const next = (s as Partial<PassingThrough>)[PASSES_THROUGH];
    if (!next) return s;
    s = next;
  }
  return s;
}

/**
 * `dst` as a {@link CopyFromStore} when it declares the capability and can copy from `src`
 * server-side; otherwise undefined (copy by streaming).
 */
export function copyFromStoreOf(dst: BlobStore, src: BlobStore): (BlobStore & CopyFromStore) | undefined {
  if (dst.capabilities.copyFromStore !== true) return undefined;
  const d = dst as Partial<CopyFromStore>;
  if (typeof d.canCopyFrom !== 'function' || typeof d.copyFromStore !== 'function') return undefined;
  return d.canCopyFrom(src) ? dst as BlobStore & CopyFromStore : undefined;
}

/**
 * For a driver's `canCopyFrom` / `copyFromStore`: the `driver` store beneath `source` (through
 * pass-through layers) when `reachable` says this store's requests can read it; else undefined.
 */
export function copySourceOf<T extends BlobStore>(source: BlobStore, driver: abstract new (...args: never[]) => T, reachable: (s: T) => boolean): T | undefined {
  const s = storeBeneath(source);
  return s instanceof driver && reachable(s) ? s : undefined;
}

/** {@link copySourceOf}, or NotSupported naming both stores (what `copyFromStore` throws). */
export function requireCopySource<T extends BlobStore>(
  dst: BlobStore, source: BlobStore, driver: abstract new (...args: never[]) => T, reachable: (s: T) => boolean, key: string,
): T {
  const s = copySourceOf(source, driver, reachable);
  if (!s) throw new NotSupportedError(`${dst.toString()} cannot copy from ${source.toString()} server-side`, { provider: dst.provider, key });
  return s;
}
