// Catalog and outbox rows as the SQLite and PostgreSQL drivers return them (times as epoch
// milliseconds or Date, flags as 0/1 or boolean), and the one conversion of each to its StateStore shape.
import { priorityOfRank } from '../core/priority.js';
import type { CatalogChange, CatalogObject, OutboxEntry, Replica } from './types.js';

/** A row of the objects table; `T` is how the driver returns times, `F` flags. */
export interface ObjectRowOf<T extends number | Date, F extends number | boolean> {
  key: string; version: number; deleted: F; size: number; sha256: string | null; content_type: string | null; metadata: string; updated_at: T;
}
/** The columns of an objects row the change feed reads (each store adds its position column). */
export interface ChangeRowOf<F extends number | boolean> { key: string; version: number; deleted: F; size: number; sha256: string | null }
/** A row of the outbox table; `T` is how the driver returns times. */
export interface OutboxRowOf<T extends number | Date> {
  id: number; kind: string; key: string; version: number; provider: string; size: number; attempts: number; created_at: T;
  next_attempt_at: T; state: string; last_error: string | null; lease_owner: string | null; lease_until: T | null; priority: number;
}

export function replica(r: { provider: string; version: number; etag: string | null }): Replica {
  return r.etag === null ? { provider: r.provider, version: r.version } : { provider: r.provider, version: r.version, etag: r.etag };
}

export function toObject(row: ObjectRowOf<number | Date, number | boolean>): CatalogObject {
  const o: CatalogObject = { key: row.key, version: row.version, size: row.size, metadata: JSON.parse(row.metadata) as Record<string, string>, lastModified: new Date(row.updated_at) };
  if (row.sha256 !== null) o.sha256 = row.sha256;
  if (row.content_type !== null) o.contentType = row.content_type;
  return o;
}

export function toChange(r: ChangeRowOf<number | boolean>): CatalogChange {
  const c: CatalogChange = { key: r.key, version: r.version, deleted: r.deleted === true || r.deleted === 1, size: r.size };
  if (r.sha256 !== null) c.sha256 = r.sha256;
  return c;
}

export function toEntry(r: OutboxRowOf<number | Date>): OutboxEntry {
  const e: OutboxEntry = {
    id: r.id, kind: r.kind as OutboxEntry['kind'], key: r.key, version: r.version, provider: r.provider, size: r.size, priority: priorityOfRank(Number(r.priority)), attempts: r.attempts,
    createdAt: new Date(r.created_at), nextAttemptAt: new Date(r.next_attempt_at), state: r.state as OutboxEntry['state'],
  };
  if (r.last_error !== null) e.lastError = r.last_error;
  if (r.lease_owner !== null) e.leaseOwner = r.lease_owner;
  if (r.lease_until !== null) e.leaseUntil = new Date(r.lease_until);
  return e;
}

/**
 * The providers a put's commit owes a delete, in name order: every provider that may keep a copy
 * the catalog will not name — one with a recorded copy of an older version, one whose replica of an
 * older version the put supersedes (a copy may have landed with its answer lost, and the catalog
 * never named that provider), one a failed write of the put may have reached (`mayHold`) — except
 * the put's own targets and providers already owed a delete. The worker looks before it deletes
 * (never a holder's copy), so a delete owed where nothing landed costs one request.
 */
export function supersededCopies(mayKeep: { provider: string }[], targets: Iterable<string>, deleting: ReadonlySet<string>): string[] {
  const keep = new Set(targets);
  return [...new Set(mayKeep.map((r) => r.provider))].filter((p) => !keep.has(p) && !deleting.has(p)).sort();
}
