import { AbortedError, TransientError } from '../core/errors.js';
import { Backoff, sleep } from '../core/backoff.js';
import type { StateStore, WriteLease } from '../state/types.js';
import { KeyLocks } from './key-locks.js';

export interface WriteLeasesOptions {
  /** How long a lease lasts without renewal (ms, default 30 000). Renewed every third of it while held. */
  leaseMs?: number;
  /** How long to wait for another writer's lease before failing with Transient (ms, default leaseMs + 5 000). */
  acquireTimeoutMs?: number;
  /** Process-local locks to take first (shared by a router and its worker), so local writers never poll the database. */
  locks?: KeyLocks;
}

/** A write lease held by this process, with the signal that fires if it is lost. */
export interface HeldLease {
  readonly lease: WriteLease;
  /** Aborted when the lease could not be renewed (another writer may now hold it): stop writing. */
  readonly signal: AbortSignal;
  /** Set once a commit carried the lease (the state store released it). */
  consumed: boolean;
}

/**
 * Serializes the writers of one key across processes through the StateStore's write leases
 * (`acquireWrite`), and within this process through {@link KeyLocks}.
 *
 * # Contract
 * - `with(key, …)` runs `fn` only while this process holds the key's lease; its `version` is the
 *   fencing number the writer commits with. Another process's writer of the key waits.
 * - The lease is renewed every `leaseMs / 3`; when a renewal finds it lost (this process was
 *   stalled longer than `leaseMs` and another writer took over), `held.signal` aborts so that the
 *   writes in flight stop, and a commit carrying the lease is refused (`fenced`).
 * - A writer that dies leaves its lease to expire after `leaseMs`; the next writer then takes over.
 */
export class WriteLeases {
  readonly locks: KeyLocks;
  readonly leaseMs: number;
  /** How long {@link with} waits for another writer's lease (ms). */
  readonly acquireTimeoutMs: number;

  constructor(private readonly state: StateStore, readonly owner: string, opts: WriteLeasesOptions = {}) {
    this.locks = opts.locks ?? new KeyLocks();
    this.leaseMs = opts.leaseMs ?? 30_000;
    this.acquireTimeoutMs = opts.acquireTimeoutMs ?? this.leaseMs + 5_000;
  }

  async with<T>(key: string, signal: AbortSignal | undefined, fn: (held: HeldLease) => Promise<T>): Promise<T> {
    return this.locks.with(key, async () => this.holding(key, await this.acquire(key, signal), signal, fn));
  }

  /**
   * Like {@link with}, but asks for the lease once: when another process's writer holds it, gives
   * up at once (undefined) instead of waiting. (A writer of the key in this process is waited for.)
   */
  async tryWith<T>(key: string, signal: AbortSignal | undefined, fn: (held: HeldLease) => Promise<T>): Promise<{ value: T } | undefined> {
    return this.locks.with(key, async () => {
      if (signal?.aborted) throw new AbortedError(`gave up waiting for the write lease on ${key}`, { key, cause: signal.reason });
      const got = await this.state.acquireWrite(key, this.owner, this.leaseMs);
      if (!got.granted) return undefined;
      return { value: await this.holding(key, got.lease, signal, fn) };
    });
  }

  /** Runs `fn` holding `lease`: renews it, aborts `held.signal` when it is lost, releases it after unless a commit consumed it. */
  private async holding<T>(key: string, lease: WriteLease, signal: AbortSignal | undefined, fn: (held: HeldLease) => Promise<T>): Promise<T> {
    const lost = new AbortController();
    const held: HeldLease = { lease, signal: signal ? AbortSignal.any([signal, lost.signal]) : lost.signal, consumed: false };
    let renewedAt = performance.now();
    const timer = setInterval(() => {
      this.state.renewWrite(lease, this.leaseMs).then((ok) => {
        if (ok) renewedAt = performance.now();
        else if (!held.consumed) lost.abort(new TransientError(`lost the write lease on ${key} (held longer than ${this.leaseMs} ms without renewal)`, { key }));
      }, () => {
        // The state store is unreachable: the lease may lapse; stop writing once it surely has.
        if (performance.now() - renewedAt > this.leaseMs && !held.consumed) {
          lost.abort(new TransientError(`could not renew the write lease on ${key} for ${this.leaseMs} ms`, { key }));
        }
      });
    }, Math.max(10, Math.floor(this.leaseMs / 3)));
    timer.unref();
    try {
      return await fn(held);
    } finally {
      clearInterval(timer);
      if (!held.consumed) await this.state.releaseWrite(lease).catch(() => undefined);
    }
  }

  private async acquire(key: string, signal: AbortSignal | undefined): Promise<WriteLease> {
    const deadline = performance.now() + this.acquireTimeoutMs;
    for (let attempt = 1; ; attempt++) {
      if (signal?.aborted) throw new AbortedError(`gave up waiting for the write lease on ${key}`, { key, cause: signal.reason });
      const got = await this.state.acquireWrite(key, this.owner, this.leaseMs);
      if (got.granted) return got.lease;
      const left = deadline - performance.now();
      if (left <= 0) {
        const busy = new TransientError(`${key} is being written by ${got.holder} (waited ${this.acquireTimeoutMs} ms for its lease)`, { key });
        BUSY.add(busy);
        throw busy;
      }
      // Poll on the one backoff, never past the holder's expiry or our deadline.
      const wait = Math.min(left, got.remainingMs + 1, LEASE_POLL.delay(attempt));
      await sleep(Math.max(1, wait), signal);
    }
  }
}

/** Lease polls: full jitter under 10 ms doubling to 200 ms. */
const LEASE_POLL = new Backoff({ baseMs: 10, capMs: 200 });

const BUSY = new WeakSet<object>();

/** The error says another writer held the key's lease for longer than this one would wait (nothing was tried). */
export function isLeaseBusy(e: unknown): boolean {
  return typeof e === 'object' && e !== null && BUSY.has(e);
}
