/**
 * The timers one component owns: none keeps the process alive on its own, and `clear()` cancels
 * them all and refuses new ones, so nothing fires after its owner has stopped.
 */
export class TimerSet {
  private readonly timers = new Set<NodeJS.Timeout>();
  private cleared = false;

  /** Calls `fn` after `ms` unless cleared first. */
  after(ms: number, fn: () => void): void {
    if (this.cleared) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    t.unref();
    this.timers.add(t);
  }

  clear(): void {
    this.cleared = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}
