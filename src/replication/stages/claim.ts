/**
 * The claim stage of a local run: one process owns every key, so claiming is keeping keys in
 * dispatch order and knowing how far the settled head reaches (the journal's cursor), and bounding
 * how far dispatch runs ahead of it (`window`), so memory stays bounded when one object is slow.
 *
 * Once an object fails, the cursor stops before it for the rest of the run, so a resumed run lists
 * it again. (A PostgreSQL job claims with leases instead: src/jobs/object-claims.ts.)
 */
export class LocalClaims {
  private readonly order: { key: string; settled: boolean }[] = [];
  private head = 0;
  private frozen = false;

  /** @param onSettledThrough called with the last key of the settled head each time it grows (not after a failure). */
  constructor(private readonly onSettledThrough: (key: string) => void) {}

  /** Claims `key` (the next in listing order); settle the returned slot when the key is done. */
  claim(key: string): ClaimSlot {
    const slot = { key, settled: false };
    this.order.push(slot);
    return { settle: (failed = false) => this.settle(slot, failed) };
  }

  /** Keys claimed and not yet passed by the settled head. */
  get outstanding(): number {
    return this.order.length - this.head;
  }

  private settle(slot: { settled: boolean }, failed: boolean): void {
    slot.settled = true;
    if (failed) this.frozen = true;
    let last: string | undefined;
    while (this.head < this.order.length && this.order[this.head]!.settled) last = this.order[this.head++]!.key;
    if (this.head > 4096) {
      this.order.splice(0, this.head);
      this.head = 0;
    }
    if (last !== undefined && !this.frozen) this.onSettledThrough(last);
  }
}

export interface ClaimSlot {
  /** The key is done (`failed`: it failed for good, and the cursor must not pass it). */
  settle(failed?: boolean): void;
}
