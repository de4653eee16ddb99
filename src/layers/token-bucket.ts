import { sleep } from '../core/backoff.js';

export interface TokenBucketOptions {
  /** Tokens added per second. */
  ratePerSec: number;
  /** Most tokens held at once (the burst). Default: a tenth of a second's worth, at least 1. */
  capacity?: number;
}

/**
 * A token bucket shared by every caller that holds it, served first come, first served.
 * A request larger than the capacity is granted once the bucket is full and leaves it in debt,
 * so big chunks are paced by the debt instead of being refused; over any long window the
 * granted rate is `ratePerSec` plus at most one capacity.
 */
export class TokenBucket {
  private rate: number;
  private cap: number;
  private tokens: number;
  private last = performance.now();
  /** Tail of the FIFO: each take waits for the one before it. */
  private queue: Promise<void> = Promise.resolve();

  constructor(options: TokenBucketOptions) {
    if (!(options.ratePerSec > 0)) throw new RangeError(`ratePerSec must be > 0, got ${options.ratePerSec}`);
    this.rate = options.ratePerSec;
    this.cap = options.capacity ?? Math.max(1, options.ratePerSec / 10);
    this.tokens = this.cap;
  }

  get ratePerSec(): number {
    return this.rate;
  }

  get capacity(): number {
    return this.cap;
  }

  /** The rate for a store's toString(): `100 B/s`. */
  describeRate(unit: string): string {
    return `${this.rate}${unit}`;
  }

  /** Changes the rate (and capacity) from now on: tokens earned so far at the old rate are kept, up to the new capacity. */
  setRate(ratePerSec: number, capacity = Math.max(1, ratePerSec / 10)): void {
    if (!(ratePerSec > 0)) throw new RangeError(`ratePerSec must be > 0, got ${ratePerSec}`);
    this.refill();
    this.rate = ratePerSec;
    this.cap = capacity;
    this.tokens = Math.min(this.tokens, this.cap);
  }

  private refill(): void {
    const now = performance.now();
    this.tokens = Math.min(this.cap, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
  }

  /** Waits until `n` tokens (n ≥ 0) are granted. Rejects with Aborted if the signal fires first; nothing is taken then. */
  take(n: number, signal?: AbortSignal): Promise<void> {
    const turn = this.queue.then(() => this.grant(n, signal));
    // Later takers wait for this one whether it is granted or aborted.
    this.queue = turn.catch(() => {});
    return turn;
  }

  /**
   * Looked at before each attempt to grant: a subclass whose rate changes over time sets it here
   * (setRate), or returns false when nothing is limited now (the take passes at once).
   */
  protected limitNow(): boolean {
    return true;
  }

  /** Longest single wait before looking at `limitNow()` again (a subclass whose rate changes lowers it). */
  protected readonly longestWaitMs: number = Infinity;

  private async grant(n: number, signal: AbortSignal | undefined): Promise<void> {
    for (;;) {
      if (!this.limitNow()) return;
      const need = Math.min(n, this.capacity);
      this.refill();
      if (this.tokens >= need) {
        this.tokens -= n;
        return;
      }
      await sleep(Math.min(this.longestWaitMs, Math.max(1, Math.ceil(((need - this.tokens) / this.ratePerSec) * 1000))), signal);
    }
  }

  /** Tokens available now (negative while in debt). */
  available(): number {
    this.refill();
    return this.tokens;
  }
}
