import { InvalidArgumentError } from '../core/errors.js';

/**
 * A change-feed position in a catalog, serialised as an opaque string a caller stores as is:
 * - SQLite: `cmxc1.s.<catalog id>.<seq>`: every change with a commit sequence ≤ seq was delivered.
 * - PostgreSQL: `cmxc1.p.<catalog id>.<xid>` (every change written by transactions ≤ xid was
 *   delivered) or `cmxc1.p.<catalog id>.<xid>.<base64url key>` (also those of transaction xid up
 *   to that key, in byte order).
 * The catalog id is random, made when the catalog is created, so a cursor handed to another
 * catalog (a new state database) resets instead of silently skipping that catalog's changes.
 */
export type ChangeCursor =
  | { kind: 's'; catalog: string; seq: number }
  | { kind: 'p'; catalog: string; xid: number; key?: string };

const PREFIX = 'cmxc1';
const ID = /^[0-9a-f]{16,64}$/;
const NUM = /^(0|[1-9][0-9]{0,15})$/;

export function formatChangeCursor(c: ChangeCursor): string {
  if (c.kind === 's') return `${PREFIX}.s.${c.catalog}.${c.seq}`;
  const base = `${PREFIX}.p.${c.catalog}.${c.xid}`;
  return c.key === undefined ? base : `${base}.${Buffer.from(c.key, 'utf8').toString('base64url')}`;
}

/** Parses a cursor of either kind; InvalidArgument (naming the provider) when it is not one. */
export function parseChangeCursor(text: string, provider: string): ChangeCursor {
  const bad = (): never => {
    throw new InvalidArgumentError(`not a change-feed cursor: ${JSON.stringify(text.slice(0, 80))}`, { provider });
  };
  if (typeof text !== 'string') return bad();
  const parts = text.split('.');
  if (parts[0] !== PREFIX || !ID.test(parts[2] ?? '') || !NUM.test(parts[3] ?? '')) return bad();
  const catalog = parts[2]!;
  const n = Number(parts[3]);
  if (!Number.isSafeInteger(n)) return bad();
  if (parts[1] === 's' && parts.length === 4) return { kind: 's', catalog, seq: n };
  if (parts[1] === 'p' && parts.length === 4) return { kind: 'p', catalog, xid: n };
  if (parts[1] === 'p' && parts.length === 5 && /^[A-Za-z0-9_-]+$/.test(parts[4]!)) {
    const key = Buffer.from(parts[4]!, 'base64url').toString('utf8');
    if (Buffer.from(key, 'utf8').toString('base64url') !== parts[4]) return bad();
    return { kind: 'p', catalog, xid: n, key };
  }
  return bad();
}
