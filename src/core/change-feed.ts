import { InvalidArgumentError, NotSupportedError } from './errors.js';
import type { BlobStore, SignalOptions } from './types.js';

/** One key's state as of a change: its newest write, or its deletion. */
export interface Change {
  key: string;
  /** True when the key was deleted (no size, digest or etag then). */
  deleted: boolean;
  /**
   * The store's version of the key after this change (the router's catalog version). Versions of
   * one key only grow; compare them only for equality across stores.
   */
  version: string;
  /** Bytes of the object (absent for deletes, and where the store cannot say, e.g. through encryption). */
  size?: number;
  /** SHA-256 (lowercase hex) of the object's bytes, when the store records it. */
  sha256?: string;
  /** The etag `head`/`get` would report for this version. */
  etag?: string;
}

/** One page of {@link ChangeFeed.changesSince}. */
export interface ChangePage {
  /** Changes after the cursor given, oldest first; a key appears at most once per page. */
  changes: Change[];
  /** Where to continue: pass it to the next call. Opaque; store it as is. */
  cursor: string;
  /** More changes are ready now: call again at once with `cursor`. */
  more: boolean;
  /**
   * The cursor given cannot be continued (deletes older than it were forgotten, or it belongs to
   * another catalog): `changes` is empty and the caller must list the store once to learn its
   * state, then continue from the `cursor` of this page (changes racing the listing may be
   * delivered twice, never lost).
   */
  reset: boolean;
}

export interface ChangesSinceOptions extends SignalOptions {
  /** Most changes per page; default 1000, at most 10 000. */
  limit?: number;
  /** Only keys starting with this (the cursor still advances past others). */
  prefix?: string;
}

/**
 * An optional ability of a store, declared by `capabilities.changeFeed`: say what changed since a
 * cursor, so that a reader (sync) need not list everything each round.
 *
 * # Contract
 * - Starting from `undefined` and following each page's `cursor`, a reader receives, for every
 *   change acknowledged to a writer, that change or a later one of the same key: nothing
 *   acknowledged is ever skipped, even when writers in several processes commit out of the order
 *   in which they were handed their versions. It is a compacted log: a key rewritten three times
 *   between two calls appears once, with its newest state.
 * - An acknowledged change may take a moment to appear (on PostgreSQL, until every transaction
 *   that started before it has ended); `more: false` means "nothing more now", not "all writes
 *   that finished before the call".
 * - Within a reader's history one key's versions never go back.
 * - A malformed cursor is InvalidArgument; a cursor this store cannot continue gives `reset`.
 */
export interface ChangeFeed {
  changesSince(cursor: string | undefined, opts?: ChangesSinceOptions): Promise<ChangePage>;
}

/** True when the store declares a change feed (`capabilities.changeFeed`); declared, never probed. */
export function hasChangeFeed(store: BlobStore): store is BlobStore & ChangeFeed {
  return store.capabilities.changeFeed === true && typeof (store as Partial<ChangeFeed>).changesSince === 'function';
}

/** The store's change feed, or NotSupported. */
export function changeFeed(store: BlobStore): ChangeFeed {
  if (!hasChangeFeed(store)) throw new NotSupportedError(`${store.toString()} has no change feed`, { provider: store.provider });
  return store;
}

export const DEFAULT_CHANGE_LIMIT = 1000;
export const MAX_CHANGE_LIMIT = 10_000;

/** The page size a call asks for, checked: InvalidArgument unless an integer in [1, 10 000]. */
export function changeLimit(limit: number | undefined, provider: string): number {
  if (limit === undefined) return DEFAULT_CHANGE_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_CHANGE_LIMIT) {
    throw new InvalidArgumentError(`change feed limit must be an integer from 1 to ${MAX_CHANGE_LIMIT}, got ${String(limit)}`, { provider });
  }
  return limit;
}
