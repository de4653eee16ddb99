import type { PriorityClassifier, PriorityOptions } from '../core/priority.js';
import type { BlobStore, GetResult } from '../core/index.js';
import type { Prices } from '../config/schema.js';
import type { OutboxEntry, StateStore } from '../state/types.js';
import type { CopyOnReadOptions } from './copy-on-read.js';
import type { BreakerEventSource, HealthTracker, HealthTrackerOptions } from './health-tracker.js';
import type { PolicyInput } from './policy.js';

// The router's options, results and events (see {@link Router} in router.ts, which re-exports them).

/** One provider the router places objects on. */
export interface RouterProvider {
  /** Unique name (the catalog records it). */
  name: string;
  /** The store, typically wrapped in the resilience layers. */
  store: BlobStore;
  prices?: Prices;
  /** Where its bytes live, `cloud:region`; used when the router's `location` is a `cloud:region` too. */
  location?: string;
  /** Tie-breaker between equally priced providers; higher wins. Default 1. */
  weight?: number;
  /** Breaker events to follow; found automatically when a layer in `store` emits `open`/`close`. */
  breaker?: BreakerEventSource;
}

export interface RouterOptions {
  providers: RouterProvider[];
  state: StateStore;
  /** Placement policies by key prefix; default: one replica anywhere. */
  policies?: PolicyInput[];
  /** A tracker to share (e.g. with the daemon), or options for the router's own. */
  health?: HealthTracker | HealthTrackerOptions;
  /**
   * Where this router runs: a provider name (that provider's egress is free; others cost their
   * `egressToGb` to it or the internet rate), or a location `cloud:region` (`aws:us-east-1`): then
   * reads go to the replica cheapest to move there by every provider's location — free in the same
   * location, `egressInterRegionGb` between regions of one cloud, else the internet rate.
   */
  location?: string;
  /** Close the providers and the state store on close() (default true). */
  closeResources?: boolean;
  /** How long the router keeps a delete entry to itself while it tries it (ms, default 60 000). */
  leaseMs?: number;
  /**
   * How long a writer's lease on a key lasts without renewal (ms, default 15 000; renewed every
   * third of it): a router that dies mid-write blocks other writers of that key for at most this long.
   */
  writeLeaseMs?: number;
  /** How long a put waits for another writer's lease on its key before failing with Transient (ms, default writeLeaseMs + 5 000). */
  writeLeaseWaitMs?: number;
  /**
   * Copy on read (see {@link CopyOnRead}): a read at `location` of a key with no base copy there
   * leaves a copy on the provider there, with a TTL. Needs `location` and a state store with
   * `cachedCopies` (SQLite, PostgreSQL). Off by default.
   */
  copyOnRead?: CopyOnReadOptions | boolean;
  /**
   * Priority classes of the replicas a put owes (by glob, size, metadata): the replication worker
   * claims critical entries first and bulk at a guaranteed share. Default: everything `normal`.
   */
  priority?: PriorityClassifier | PriorityOptions;
}

/**
 * A get result: `provider` served it; `stale` when it came from a stale replica (only with
 * `allowStaleReads`); `cached` when it came from a copy left by copy on read (of the current version).
 */
export type RouterGetResult = GetResult & { stale?: boolean; cached?: boolean; provider: string };

export interface RouterEvents {
  /** Work was added to the outbox (a worker in this process may want to wake up). */
  owed: [OutboxEntry[]];
  /** A holder did not have the bytes the catalog says (missing or wrong digest). */
  repair: [{ key: string; provider: string; reason: string }];
  /** Which provider served a read (for tests, metrics and demos). */
  read: [{ key: string; provider: string; hedged: boolean }];
}

/** Etag the router shows: the catalog version, identical whichever replica serves the read. */
export function routerEtag(version: number): string {
  return `cmx-${version}`;
}
