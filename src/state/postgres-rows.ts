// Rows of the PostgreSQL state tables as the driver returns them (converted in catalog-rows.ts).
import type { PriorityClass } from '../core/priority.js';
import type { ChangeRowOf, ObjectRowOf, OutboxRowOf } from './catalog-rows.js';
import type { OutboxKind } from './types.js';

// Columns are named, never `*`: a prepared `SELECT *` fails once a later schema version adds a column.
export function objectColumns(alias = ''): string {
  return ['key', 'version', 'deleted', 'size', 'sha256', 'content_type', 'metadata', 'updated_at'].map((c) => alias + c).join(', ');
}
export const OUTBOX_COLUMNS = 'id, kind, key, version, provider, size, attempts, created_at, next_attempt_at, state, last_error, lease_owner, lease_until, priority';

export type ChangeRow = ChangeRowOf<boolean> & { change_xid: number };
export type ObjectRow = ObjectRowOf<Date, boolean>;
export type OutboxRow = OutboxRowOf<Date>;
export interface NewEntry { kind: OutboxKind; version: number; provider: string; size: number; priority?: PriorityClass }

/** int8 as a JS number: stamps, ids, sizes and counts stay far below 2^53. */
export function toNumber(value: string): number {
  return Number(value);
}
