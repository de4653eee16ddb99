// Rows of the PostgreSQL state tables as the driver returns them, and their StateStore shapes.
import type { PriorityClass } from '../core/priority.js';
import { priorityOfRank } from '../core/priority.js';
import type { CatalogChange, CatalogObject, OutboxEntry, OutboxKind, Replica } from './types.js';

// Columns are named, never `*`: a prepared `SELECT *` fails once a later schema version adds a column.
export function objectColumns(alias = ''): string {
  return ['key', 'version', 'deleted', 'size', 'sha256', 'content_type', 'metadata', 'updated_at'].map((c) => alias + c).join(', ');
}
export const OUTBOX_COLUMNS = 'id, kind, key, version, provider, size, attempts, created_at, next_attempt_at, state, last_error, lease_owner, lease_until, priority';

export interface ChangeRow { key: string; version: number; deleted: boolean; size: number; sha256: string | null; change_xid: number }
export interface ObjectRow { key: string; version: number; deleted: boolean; size: number; sha256: string | null; content_type: string | null; metadata: string; updated_at: Date }
export interface OutboxRow {
  id: number; kind: string; key: string; version: number; provider: string; size: number; attempts: number; created_at: Date;
  next_attempt_at: Date; state: string; last_error: string | null; lease_owner: string | null; lease_until: Date | null; priority: number;
}
export interface NewEntry { kind: OutboxKind; version: number; provider: string; size: number; priority?: PriorityClass }

/** int8 as a JS number: stamps, ids, sizes and counts stay far below 2^53. */
export function toNumber(value: string): number {
  return Number(value);
}

export function replica(r: { provider: string; version: number; etag: string | null }): Replica {
  return r.etag === null ? { provider: r.provider, version: r.version } : { provider: r.provider, version: r.version, etag: r.etag };
}

export function toObject(row: ObjectRow): CatalogObject {
  const o: CatalogObject = { key: row.key, version: row.version, size: row.size, metadata: JSON.parse(row.metadata) as Record<string, string>, lastModified: row.updated_at };
  if (row.sha256 !== null) o.sha256 = row.sha256;
  if (row.content_type !== null) o.contentType = row.content_type;
  return o;
}

export function toChange(r: ChangeRow): CatalogChange {
  const c: CatalogChange = { key: r.key, version: r.version, deleted: r.deleted, size: r.size };
  if (r.sha256 !== null) c.sha256 = r.sha256;
  return c;
}

export function toEntry(r: OutboxRow): OutboxEntry {
  const e: OutboxEntry = {
    id: r.id, kind: r.kind as OutboxKind, key: r.key, version: r.version, provider: r.provider, size: r.size, priority: priorityOfRank(Number(r.priority)), attempts: r.attempts,
    createdAt: r.created_at, nextAttemptAt: r.next_attempt_at, state: r.state as OutboxEntry['state'],
  };
  if (r.last_error !== null) e.lastError = r.last_error;
  if (r.lease_owner !== null) e.leaseOwner = r.lease_owner;
  if (r.lease_until !== null) e.leaseUntil = r.lease_until;
  return e;
}
