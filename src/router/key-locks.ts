/**
 * Per-key mutual exclusion inside one process. The router holds a key's lock from the first
 * provider write to the catalog commit, and the replication worker holds it while it copies or
 * deletes that key, so a replica copy can never land on top of a newer put in the same process.
 */
export class KeyLocks {
  private readonly tails = new Map<string, Promise<void>>();

  /** Runs `fn` once every earlier holder of `key` has finished. */
  async with<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.tails.set(key, tail);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  /** Keys currently locked or waited for (for tests and status). */
  get size(): number {
    return this.tails.size;
  }
}
