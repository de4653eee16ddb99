import { Backoff, sleep } from '../core/backoff.js';
import type { StateStore } from '../state/types.js';
import type { ReconcileOutcome } from './reconcile.js';
import type { HeldLease, WriteLeases } from './write-leases.js';

/**
 * How many times one get looks the key up again after its holder moved on to a newer version
 * while it read (each pass reads the version the catalog then says is current).
 */
export const READ_AGAIN_LIMIT = 16;

/** Polls of the catalog while another writer holds the key's lease: full jitter under 10 ms doubling to 200 ms. */
const POLL = new Backoff({ baseMs: 10, capMs: 200 });

/** What became of a holder a read found without the bytes of `version`: `moved` when the catalog moved on meanwhile. */
export type InDoubtOutcome = ReconcileOutcome | 'moved';

/**
 * A read of `version` of `key` found a holder without its bytes. Most often a writer has just
 * overwritten them: its new version is committed (the catalog moved on: `moved`) or about to be
 * (the writer holds the key's lease). So: look the key up again; while another writer holds the
 * lease, poll the catalog instead of queueing behind a stream of writers, and reconcile the holder
 * (`reconcile`, under the lease) only once the lease is free and the catalog still says `version`:
 * then the bytes really are not the catalog's (a lost copy, a failed put that landed). When the
 * catalog moved on to a version `provider` does not hold, its copy is reconciled too, waiting for
 * the lease as long as writers do.
 * Gives up (`skipped`) after the leases' wait; the read then fails as before.
 */
export async function settleInDoubt(
  state: StateStore, leases: WriteLeases, key: string, provider: string, version: number, signal: AbortSignal | undefined,
  reconcile: (held: HeldLease) => Promise<ReconcileOutcome>,
): Promise<InDoubtOutcome> {
  const deadline = performance.now() + leases.acquireTimeoutMs;
  for (let attempt = 1; ; attempt++) {
    const now = await state.lookup(key);
    if (now.state !== 'live' || now.object.version !== version) {
      // The new version is not on `provider`: what it holds may be the bytes of a write that failed
      // and landed late, which only a look under the lease finds (and owes a delete).
      if (now.state === 'live' && !now.holders.some((h) => h.provider === provider)) await leases.with(key, signal, reconcile).catch(() => undefined);
      return 'moved';
    }
    const done = await leases.tryWith(key, signal, reconcile);
    if (done) return done.value;
    if (performance.now() >= deadline) return 'skipped';
    await sleep(Math.max(1, POLL.delay(attempt)), signal);
  }
}
