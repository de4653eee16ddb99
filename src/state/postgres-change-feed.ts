// The PostgreSQL catalog's change feed: pages in commit order, and the pruning of tombstones
// that moves the position below which cursors reset.
import { compareKeys } from '../core/keys.js';
import { formatChangeCursor, type ChangeCursor } from './change-cursor.js';
import { toChange } from './catalog-rows.js';
import type { ChangeRow } from './postgres-rows.js';
import type { Db } from './postgres-schema.js';
import type { CatalogChangeOptions, CatalogChangePage } from './types.js';

/**
 * One page of catalog changes after `after`, in the order (writing transaction id, key), read in
 * transaction `c`, which must be REPEATABLE READ.
 *
 * Why not by version: versions are handed out (by a sequence, when a writer takes its lease)
 * before the writer commits, and transactions commit in any order, so a reader that saw
 * version 11 may later find 10 committed below its cursor. Transaction ids have the same
 * problem, which the snapshot solves: every transaction whose id is below the snapshot's xmin
 * has ended (committed or rolled back), and every transaction still running or yet to start
 * has an id ≥ xmin. So the feed returns only rows written by transactions below xmin: all of
 * them are visible in the snapshot, and none can appear later below a cursor that never passes
 * (xmin − 1, ∞). A row rewritten later moves up to its new transaction's position, so the feed
 * is a compacted log. A long transaction anywhere in the cluster holds xmin back: the feed then
 * lags (never skips) until it ends. The pruned position and the rows are read in one
 * REPEATABLE READ snapshot, so a concurrent prune cannot slip between them.
 */
export async function readChangePage(c: Db, s: string, after: ChangeCursor | undefined, opts: CatalogChangeOptions): Promise<CatalogChangePage> {
  const feed = (await c.query<{ catalog: string; pruned_xid: number; pruned_key: string; xmin: number; xmax: number }>(
    `SELECT catalog, pruned_xid, pruned_key, pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin,
      pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax FROM ${s}.change_feed WHERE id = 1`, [])).rows[0]!;
  const head = formatChangeCursor({ kind: 'p', catalog: feed.catalog, xid: feed.xmin - 1 });
  let from = { xid: -1, key: undefined as string | undefined };
  if (after) {
    const behindPruned = after.kind === 'p' && (after.xid < feed.pruned_xid
      || (after.xid === feed.pruned_xid && after.key !== undefined && compareKeys(after.key, feed.pruned_key) < 0));
    // Another catalog, a position this database never reached (restored from a backup), or deletes forgotten past it.
    if (after.kind !== 'p' || after.catalog !== feed.catalog || after.xid >= feed.xmax || behindPruned) {
      return { changes: [], cursor: head, more: false, reset: true };
    }
    from = { xid: after.xid, key: after.key };
  }
  const args: unknown[] = [feed.xmin, from.xid];
  let where = `change_xid < $1 AND change_xid > $2`;
  if (from.key !== undefined) {
    args.push(from.key);
    where = `change_xid < $1 AND (change_xid, key) > ($2, $${args.length}::text COLLATE "C")`;
  }
  if (opts.prefix) {
    args.push(opts.prefix);
    where += ` AND starts_with(key, $${args.length})`;
  }
  args.push(opts.limit + 1);
  const rows = (await c.query<ChangeRow>(`SELECT key, version, deleted, size, sha256, change_xid FROM ${s}.objects
    WHERE ${where} ORDER BY change_xid, key LIMIT $${args.length}`, args)).rows;
  const more = rows.length > opts.limit;
  if (more) rows.length = opts.limit;
  const last = rows[rows.length - 1];
  // Past the last row only when the page is full; else everything below xmin was delivered.
  const next = more && last ? formatChangeCursor({ kind: 'p', catalog: feed.catalog, xid: last.change_xid, key: last.key })
    : from.xid >= feed.xmin ? formatChangeCursor({ kind: 'p', catalog: feed.catalog, xid: from.xid, ...(from.key !== undefined ? { key: from.key } : {}) }) : head;
  return { changes: rows.map(toChange), cursor: next, more, reset: false };
}

/**
 * Forgets deleted objects last written before `before` that no outbox entry or replica still
 * names, inside transaction `c`; returns how many.
 */
export async function pruneTombstones(c: Db, s: string, before: Date): Promise<number> {
  const gone = await c.query<{ change_xid: number; key: string }>(`DELETE FROM ${s}.objects o WHERE o.deleted AND o.updated_at < $1
    AND NOT EXISTS (SELECT 1 FROM ${s}.outbox x WHERE x.key = o.key)
    AND NOT EXISTS (SELECT 1 FROM ${s}.replicas r WHERE r.key = o.key) RETURNING o.change_xid, o.key`, [before]);
  // A feed reader whose cursor is below a forgotten delete could miss it: such cursors reset.
  let newest: { change_xid: number; key: string } | undefined;
  for (const r of gone.rows) if (!newest || r.change_xid > newest.change_xid || (r.change_xid === newest.change_xid && compareKeys(r.key, newest.key) > 0)) newest = r;
  if (newest) {
    await c.query(`UPDATE ${s}.change_feed SET pruned_xid = $1, pruned_key = $2 WHERE id = 1 AND (pruned_xid, pruned_key) < ($1, $2::text COLLATE "C")`,
      [newest.change_xid, newest.key]);
  }
  return gone.rows.length;
}
