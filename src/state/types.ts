import type { PriorityClass } from '../core/priority.js';

/**
 * The router's durable state: the catalog (what exists, at which version, on which providers) and
 * the outbox (work owed to providers). Every mutation that matters for consistency happens in one
 * transaction, so a crash leaves either the old state or the new one, never a put recorded without
 * the replicas it still owes.
 */

import type { CachedCopyState } from './cached-copies.js';
import type { StoredBytes } from './stored-bytes.js';

/** One object as the catalog knows it. */
export interface CatalogObject {
  key: string;
  /** Totally ordered stamp: a later put of the key always has a larger version. */
  version: number;
  size: number;
  /** SHA-256 (lowercase hex) of the bytes; absent only for adopted objects without a stored digest. */
  sha256?: string;
  contentType?: string;
  /** Metadata as stored on the providers (including `cloudmux_sha256`). */
  metadata: Record<string, string>;
  lastModified: Date;
}

/** A provider's copy of a key. */
export interface Replica {
  provider: string;
  version: number;
  /** The provider's etag for that copy, when known. */
  etag?: string;
}

export type CatalogLookup =
  | { state: 'live'; object: CatalogObject; /** Providers holding exactly the current version. */ holders: Replica[]; /** Copies of older versions not yet cleaned up. */ stale: Replica[] }
  | { state: 'deleted'; version: number }
  | { state: 'unknown' };

export type OutboxKind = 'replicate' | 'delete';

/**
 * Work owed to one provider: `replicate` (make `provider` hold `key` at `version`) or `delete`
 * (make `provider` hold no copy of `key` other than the current version).
 */
export interface OutboxEntry {
  id: number;
  kind: OutboxKind;
  key: string;
  version: number;
  provider: string;
  /** Bytes to copy (0 for deletes). */
  size: number;
  /** Priority class (see ClaimOptions): which entries a worker claims first. */
  priority: PriorityClass;
  attempts: number;
  createdAt: Date;
  nextAttemptAt: Date;
  state: 'pending' | 'dead';
  lastError?: string;
  leaseOwner?: string;
  leaseUntil?: Date;
}

/** A put to commit: the object as the catalog will know it, and where its replicas stand. */
export interface PutRecord extends CatalogObject {
  /** Providers that hold the new version now (acknowledged the write). */
  acked: Replica[];
  /** Providers that must still receive it: one `replicate` outbox entry each. */
  owed: string[];
  /**
   * Providers a failed write of this put may have reached (its answer was lost) that are neither
   * acked nor owed: each is owed a delete in the same commit, under the writer's lease.
   */
  mayHold?: string[];
  /** Commit only if the catalog has no row for the key at all (adoption of a pre-existing object). */
  onlyIfUnknown?: boolean;
  /** Priority class of the entries this put owes (default `normal`). */
  priority?: PriorityClass;
  /**
   * The writer's lease on the key ({@link StateStore.acquireWrite}): the commit happens only if the
   * lease is still this writer's (`fenced: true` otherwise), and it releases the lease.
   */
  lease?: WriteLease;
}

/**
 * A writer's exclusive right to change one key, across processes. `version` is its fencing number:
 * the version the writer commits. A lease that expired and was taken over by another writer can no
 * longer commit.
 */
export interface WriteLease {
  key: string;
  owner: string;
  version: number;
}

export type LeaseAttempt =
  | { granted: true; lease: WriteLease }
  | { granted: false; /** Who holds it. */ holder: string; /** When it expires if not renewed (ms from now, ≥ 0). */ remainingMs: number };

export interface CommitResult {
  /** False when a newer version (or, with onlyIfUnknown, any row) was already recorded, or the lease was lost. */
  committed: boolean;
  /** The record carried a lease that is no longer the writer's (it expired and another writer took it). */
  fenced?: boolean;
  /** The key's version after the call. */
  version: number;
  /** Outbox entries created. */
  entries: OutboxEntry[];
}

export interface DeleteRecord {
  key: string;
  version: number;
  /** Providers to clean besides those the catalog knows hold a copy (e.g. all, for an unknown key). */
  alsoOn: string[];
  /** Lease the created delete entries to this owner (the router tries them at once). */
  leaseOwner?: string;
  leaseMs?: number;
  /** The writer's lease on the key, as in {@link PutRecord.lease}. */
  lease?: WriteLease;
  /** Check the lease but keep it held (the deleter still has providers to clear before another writer may start). */
  keepLease?: boolean;
}

/** How a claim picks among due entries. Without options: most urgent class first, then oldest due. */
export interface ClaimOptions {
  /**
   * Slots reserved per class: up to `quota[c]` entries of class `c` are taken first (oldest due
   * first within the class), then the rest of `limit` from any allowed class, most urgent first.
   * A weighted quota is how bulk keeps a guaranteed share while critical work is owed.
   */
  quota?: Partial<Record<PriorityClass, number>>;
  /** Only entries of these classes (a metered link: critical only). Default: all. */
  classes?: readonly PriorityClass[];
  /** Only entries owed to these providers. Default: all. */
  providers?: readonly string[];
}

export interface BacklogStats {
  /** Pending entries (not dead-lettered). */
  count: number;
  /** Bytes still to copy. */
  bytes: number;
  /** Age of the oldest pending entry in ms (0 when empty). */
  oldestAgeMs: number;
  dead: number;
  /** Pending entries by provider. */
  byProvider: Record<string, { count: number; bytes: number }>;
  /** Pending entries by priority class (every class present, zeros when empty). */
  byClass: Record<PriorityClass, { count: number; bytes: number; oldestAgeMs: number }>;
}

export interface CatalogListOptions {
  prefix?: string;
  /** Only keys strictly greater (UTF-8 byte order). */
  startAfter?: string;
  limit: number;
}

/** One key's newest catalog state, as the change feed reports it. */
export interface CatalogChange {
  key: string;
  version: number;
  deleted: boolean;
  /** 0 for deletes. */
  size: number;
  sha256?: string;
}

export interface CatalogChangePage {
  /** In commit order (oldest first); each key at most once. */
  changes: CatalogChange[];
  /** Opaque position to continue from (names the catalog it belongs to). */
  cursor: string;
  /** More changes are ready now. */
  more: boolean;
  /** The cursor given cannot be continued: relist, then continue from `cursor` (see core/change-feed.ts). */
  reset: boolean;
}

export interface CatalogChangeOptions {
  /** Most changes to return (≥ 1). */
  limit: number;
  /** Only keys starting with this. */
  prefix?: string;
}

/**
 * Durable catalog + outbox. Implementations: SQLite (embedded, one host) and PostgreSQL (shared by
 * several router processes). All methods are atomic; keys compare in UTF-8 byte order.
 */
export interface StateStore {
  readonly kind: string;
  /** Copies left by reads and per-object access statistics (copy on read); absent in stores without them. */
  readonly cachedCopies?: CachedCopyState;
  /**
   * Bytes each provider holds per placement prefix (the longest of `prefixes` a key starts with),
   * base copies and copies left by reads apart: what the storage bill is made of.
   */
  storedBytes?(prefixes: readonly string[]): Promise<StoredBytes[]>;
  /** A new version stamp, larger than every stamp handed out before (also across restarts). */
  nextVersion(): Promise<number>;
  /**
   * Takes the write lease on `key` for `leaseMs` (on the store's clock; the database's for
   * PostgreSQL), or takes over one that expired, handing out a new version stamp as its fencing
   * number: drawn once the lease is granted, so it is larger than every version committed before
   * (a stamp drawn earlier could lose to a writer that took and committed the key meanwhile). Not
   * granted while another owner's lease runs. Writers of one key in any number of processes
   * serialize through it.
   */
  acquireWrite(key: string, owner: string, leaseMs: number): Promise<LeaseAttempt>;
  /** Extends a lease still held; false when it was lost (expired and taken over, or released). */
  renewWrite(lease: WriteLease, leaseMs: number): Promise<boolean>;
  /** Gives a lease up; nothing happens if it is no longer held. A commit carrying the lease releases it too. */
  releaseWrite(lease: WriteLease): Promise<void>;
  lookup(key: string): Promise<CatalogLookup>;
  /**
   * Records a put: the key's new version, which providers hold it, and in the SAME transaction one
   * replicate entry per owed provider and one delete entry per other provider that may keep a copy:
   * one recorded with an older version, one whose replica of an older version this put supersedes
   * (the copy may have landed with its answer lost), and each of `rec.mayHold`.
   * A record older than the key's current version is not applied (`committed: false`).
   */
  commitPut(rec: PutRecord): Promise<CommitResult>;
  /** Tombstones the key (reads say NotFound from then on) and owes a delete on every provider that may hold it. */
  commitDelete(rec: DeleteRecord): Promise<CommitResult>;
  /**
   * `provider`'s copy of `key` is not what the catalog says (missing, other bytes, or bytes of a put
   * that was not committed): forget it, and owe a replica of the current version if the provider
   * was a holder, else a delete (unless something is already owed there).
   */
  repairReplica(key: string, provider: string): Promise<OutboxEntry | undefined>;
  /** Live objects in key order. */
  listObjects(opts: CatalogListOptions): Promise<CatalogObject[]>;

  /** Leases up to `limit` due entries to `owner` for `leaseMs`; expired leases are taken over. See ClaimOptions for the order. */
  claim(owner: string, limit: number, leaseMs: number, opts?: ClaimOptions): Promise<OutboxEntry[]>;
  /**
   * A replicate entry succeeded: `provider` now holds `version` (recorded only if that is still the
   * current version). Returns false if the entry had become obsolete (superseded or deleted while
   * it ran, even if its row is gone); the copy just made is then owed a delete.
   */
  completeReplicate(entry: OutboxEntry, etag?: string): Promise<boolean>;
  /** A delete entry succeeded: the provider's stale copy record goes with it. */
  completeDelete(entry: OutboxEntry): Promise<void>;
  /** Drops an entry that no longer needs doing. */
  discard(id: number): Promise<void>;
  /** Releases the lease and schedules another attempt; `countAttempt` false for deferrals (provider down). */
  retryLater(id: number, error: string, at: Date, countAttempt: boolean): Promise<void>;
  /** Gives up on an entry, keeping it with its reason for an operator. */
  deadLetter(id: number, reason: string): Promise<void>;
  /** Puts dead entries back in the queue (all, or the given ids). Returns how many. */
  requeueDead(ids?: number[]): Promise<number>;
  /** Entries, for status pages and tests. */
  entries(filter?: { key?: string; state?: 'pending' | 'dead'; limit?: number }): Promise<OutboxEntry[]>;
  backlog(): Promise<BacklogStats>;
  /**
   * Changes to the catalog after `cursor` (from the beginning when undefined), in commit order:
   * the change feed behind the router's `changesSince` (contract in src/core/change-feed.ts).
   * Positions are commit positions, not version stamps: a version is handed out when a writer
   * takes its lease, long before it commits, so paging by version would skip a lower version
   * committed after a higher one was read. A cursor older than the last pruned tombstone, from
   * another catalog, or ahead of this one gives `reset`. A malformed cursor is InvalidArgument.
   */
  changesSince(cursor: string | undefined, opts: CatalogChangeOptions): Promise<CatalogChangePage>;
  /**
   * Forgets tombstones older than this (and with nothing owed), returning how many. Records the
   * newest change position it forgot, so that change-feed cursors older than it reset.
   */
  pruneTombstones(olderThanMs: number): Promise<number>;
  close(): Promise<void>;
}
