/**
 * The router's durable state: the catalog (what exists, at which version, on which providers) and
 * the outbox (work owed to providers). Every mutation that matters for consistency happens in one
 * transaction, so a crash leaves either the old state or the new one, never a put recorded without
 * the replicas it still owes.
 */

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
  attempts: number;
  createdAt: Date;
  nextAttemptAt: Date;
  state: 'pending' | 'dead';
  lastError?: string;
  leaseOwner?: string;
  leaseUntil?: Date;
}

export interface PutRecord {
  key: string;
  version: number;
  size: number;
  sha256?: string;
  contentType?: string;
  metadata: Record<string, string>;
  lastModified: Date;
  /** Providers that hold the new version now (acknowledged the write). */
  acked: Replica[];
  /** Providers that must still receive it: one `replicate` outbox entry each. */
  owed: string[];
  /** Commit only if the catalog has no row for the key at all (adoption of a pre-existing object). */
  onlyIfUnknown?: boolean;
}

export interface CommitResult {
  /** False when a newer version (or, with onlyIfUnknown, any row) was already recorded. */
  committed: boolean;
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
}

export interface CatalogListOptions {
  prefix?: string;
  /** Only keys strictly greater (UTF-8 byte order). */
  startAfter?: string;
  limit: number;
}

/**
 * Durable catalog + outbox. Implementations: SQLite (embedded, one host) and PostgreSQL (shared by
 * several router processes). All methods are atomic; keys compare in UTF-8 byte order.
 */
export interface StateStore {
  readonly kind: string;
  /** A new version stamp, larger than every stamp handed out before (also across restarts). */
  nextVersion(): Promise<number>;
  lookup(key: string): Promise<CatalogLookup>;
  /**
   * Records a put: the key's new version, which providers hold it, and in the SAME transaction one
   * replicate entry per owed provider and one delete entry per provider left with an older copy.
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

  /** Leases up to `limit` due entries to `owner` for `leaseMs`; expired leases are taken over. */
  claim(owner: string, limit: number, leaseMs: number): Promise<OutboxEntry[]>;
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
  /** Forgets tombstones older than this (and with nothing owed), returning how many. */
  pruneTombstones(olderThanMs: number): Promise<number>;
  close(): Promise<void>;
}
