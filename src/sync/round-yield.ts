import { PRIORITY_CLASSES, PRIORITY_RANK, type PriorityClass } from '../core/priority.js';

/**
 * Local changes noted while rounds run, counted by priority class: a watcher batch
 * (`syncLoop --watch`) or an offlineFirst write says "this path changed" without waiting for the
 * next scan. A round marks the counts before its local scan; a change noted after the mark may be
 * missing from the round's plan (docs/sync.md, "Yielding to higher-priority changes").
 */
export class ChangeNotes {
  private readonly counts: Record<PriorityClass, number> = { critical: 0, normal: 0, bulk: 0 };

  note(cls: PriorityClass): void {
    this.counts[cls]++;
  }

  /**
   * The yield check of a round that starts now. `minPerClass`: content-moving actions of a class
   * the round starts before it may yield them (its concurrency: every class it planned gets at
   * least one full wave per round, so a stream of critical changes never starves bulk).
   */
  mark(minPerClass: number): RoundYield {
    return new RoundYield(this, { ...this.counts }, Math.max(1, minPerClass));
  }

  /** The highest class with a change noted since `mark`, if any. */
  highestSince(mark: Readonly<Record<PriorityClass, number>>): PriorityClass | undefined {
    return PRIORITY_CLASSES.find((c) => this.counts[c] > mark[c]);
  }
}

/**
 * One round's rule: before starting an action of class C, if a change of a higher class was noted
 * since the round's mark, and the round already started `minPerClass` content-moving actions of
 * C, the round starts nothing more (actions in flight finish). What it did not start stays owed
 * exactly as if the round had never planned it: no base is written for it, a queued local change
 * stays queued, and the next round plans it again, after the higher class.
 */
export class RoundYield {
  /** The class of the change the round yielded to, once it has. */
  yieldedTo: PriorityClass | undefined;
  private readonly started: Record<PriorityClass, number> = { critical: 0, normal: 0, bulk: 0 };

  constructor(private readonly notes: ChangeNotes, private readonly at: Readonly<Record<PriorityClass, number>>, private readonly minPerClass: number) {}

  /**
   * Whether to start an action. `cls` undefined: an action that is never yielded (conflicts,
   * which go first). `moving`: it moves content (only those count towards `minPerClass`).
   */
  admit(cls: PriorityClass | undefined, moving: boolean): boolean {
    if (this.yieldedTo !== undefined) return false;
    if (cls === undefined) return true;
    if (this.started[cls] >= this.minPerClass) {
      const higher = this.notes.highestSince(this.at);
      if (higher !== undefined && PRIORITY_RANK[higher] < PRIORITY_RANK[cls]) {
        this.yieldedTo = higher;
        return false;
      }
    }
    if (moving) this.started[cls]++;
    return true;
  }
}
