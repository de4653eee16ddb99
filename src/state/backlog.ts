import { priorityOfRank } from '../core/priority.js';
import type { BacklogStats } from './types.js';

export function emptyByClass(): BacklogStats['byClass'] {
  return { critical: { count: 0, bytes: 0, oldestAgeMs: 0 }, normal: { count: 0, bytes: 0, oldestAgeMs: 0 }, bulk: { count: 0, bytes: 0, oldestAgeMs: 0 } };
}

/** Backlog figures from pending rows grouped by provider and priority rank (both state stores). */
export function backlogOf(rows: { provider: string; priority: number; n: number; bytes: number; oldest: number }[], dead: number, now: number): BacklogStats {
  const stats: BacklogStats = { count: 0, bytes: 0, oldestAgeMs: 0, dead, byProvider: {}, byClass: emptyByClass() };
  let oldest = Infinity;
  for (const r of rows) {
    const n = Number(r.n);
    const bytes = Number(r.bytes);
    stats.count += n;
    stats.bytes += bytes;
    oldest = Math.min(oldest, r.oldest);
    const p = (stats.byProvider[r.provider] ??= { count: 0, bytes: 0 });
    p.count += n;
    p.bytes += bytes;
    const c = stats.byClass[priorityOfRank(r.priority)];
    c.count += n;
    c.bytes += bytes;
    c.oldestAgeMs = Math.max(c.oldestAgeMs, Math.max(0, now - r.oldest));
  }
  if (oldest !== Infinity) stats.oldestAgeMs = Math.max(0, now - oldest);
  return stats;
}
