/**
 * The invariant of a migration run under an adversary (kill -9, rewrites and deletes of source
 * objects while it runs), checked on the final state after a clean last run:
 * - every key the adversary last left with bytes B is at the destination with B, and at the
 *   source it is B or (with --delete-source) absent: nothing the source held last is lost;
 * - a key the adversary deleted is not at the source (migration never writes to the source).
 * A lost write is excused only where the source cannot delete conditionally and the adversary's
 * write overlapped the migration's re-check-then-delete window for that key (the documented
 * window of deleteIfUnchanged); the excuses are returned, so a test can require none on stores
 * that delete conditionally.
 */

/** The last bytes the adversary left at a key (sha256 hex), or null when it deleted it. */
export type Model = Map<string, string | null>;

/** What is at a key now, per side (sha256 hex), undefined when absent. */
export interface FinalState {
  src: Map<string, string>;
  dst: Map<string, string>;
}

/** A write of the adversary to the source, with when it started and ended (ms, wall clock). */
export interface AdversaryWrite {
  key: string;
  start: number;
  end: number;
}

/** A delete by the migration of a source key: from its last check (head) to the delete's end. */
export interface DeleteWindow {
  key: string;
  start: number;
  end: number;
}

export interface Violation {
  key: string;
  problem: string;
}

export interface CheckResult {
  violations: Violation[];
  /** Losses inside a documented window of a store without conditional delete. */
  excused: Violation[];
}

export function checkMigration(model: Model, final: FinalState, opts: {
  deleteSource: boolean;
  /** Where the source store cannot delete conditionally, the windows in which a write could be lost. */
  deleteWindows?: DeleteWindow[];
  writes?: AdversaryWrite[];
}): CheckResult {
  const violations: Violation[] = [];
  const excused: Violation[] = [];
  const raced = (key: string): boolean => (opts.deleteWindows ?? []).some((w) => w.key === key
    && (opts.writes ?? []).some((x) => x.key === key && x.start <= w.end && x.end >= w.start));
  for (const [key, want] of model) {
    const s = final.src.get(key);
    const d = final.dst.get(key);
    if (want === null) {
      if (s !== undefined) violations.push({ key, problem: 'deleted by the adversary, yet at the source' });
      continue;
    }
    const problems: string[] = [];
    if (s !== undefined && s !== want) problems.push(`the source holds other bytes (${s.slice(0, 8)} not ${want.slice(0, 8)})`);
    if (s === undefined && !opts.deleteSource) problems.push('gone from the source without --delete-source');
    if (d !== want) problems.push(d === undefined ? 'not at the destination' : `the destination holds other bytes (${d.slice(0, 8)} not ${want.slice(0, 8)})`);
    if (problems.length === 0) continue;
    const v = { key, problem: problems.join('; ') + (s === undefined && d !== want ? ' — the last bytes are lost' : '') };
    if (s === undefined && d !== want && raced(key)) excused.push(v);
    else violations.push(v);
  }
  return { violations, excused };
}

/** The harness's seeded generator (mulberry32): the same seed replays the same history. */
export { prng as rng } from '../harness/replay-seed.js';
