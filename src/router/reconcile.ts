import { SHA256_KEY, isCloudmuxError } from '../core/index.js';
import type { BlobStore, ObjectMeta } from '../core/index.js';
import type { OutboxEntry, StateStore } from '../state/types.js';
import type { HeldLease } from './write-leases.js';

export type ReconcileOutcome =
  /** The provider holds the catalog's bytes after all. */
  | 'ok'
  /** Its copy was forgotten and a fix is owed (another holder of the current version remains). */
  | 'repaired'
  /** It was the last holder and held other bytes with their own digest: those became the current version. */
  | 'adopted'
  /** The key is no longer live, or the lease was lost meanwhile. */
  | 'skipped';

export interface ReconcileResult {
  outcome: ReconcileOutcome;
  /** Outbox entries created. */
  entries: OutboxEntry[];
  /** The version adopted, for `adopted`. */
  version?: number;
}

/** The SHA-256 a provider recorded for its copy (from its checksums or cloudmux's metadata). */
export function storedSha256(meta: ObjectMeta): string | undefined {
  return meta.checksums.sha256 ?? meta.metadata[SHA256_KEY];
}

/**
 * `provider`'s copy of `key` is in doubt: a read found other bytes or none there, or a failed put
 * may have landed there. Looks at what it really holds, then fixes the catalog — never leaving the
 * current version without a holder. Runs under the key's write lease (`held`), whose version is
 * the stamp of an adoption.
 *
 * - The copy is what the catalog says: nothing to do (`ok`).
 * - Another provider still holds the current version: the copy is forgotten and a replica (or, for
 *   a non-holder, a delete) is owed (`repaired`), as before.
 * - The provider was the last holder and now holds other bytes that carry their own digest (a
 *   failed or aborted put that landed, an outside program's write): those bytes become the current
 *   version, owed to every provider the previous version was owed to (`adopted`). Forgetting them
 *   would leave the key with no readable version at all, and a failed write may have happened.
 * - The last holder lost its copy (NotFound) or holds bytes without a digest: forgotten as before;
 *   nothing readable is left to adopt.
 */
export async function reconcileHolder(state: StateStore, store: BlobStore | undefined, key: string, provider: string, held: HeldLease): Promise<ReconcileResult> {
  const found = await state.lookup(key);
  if (found.state !== 'live') return { outcome: 'skipped', entries: [] };
  const { object } = found;
  let meta: ObjectMeta | undefined;
  if (store) {
    try {
      meta = await store.head(key, { signal: held.signal });
    } catch (e) {
      if (!isCloudmuxError(e, 'NotFound')) throw e;
    }
  }
  const sha = meta && storedSha256(meta);
  if (meta && meta.size === object.size && (object.sha256 === undefined ? sha === undefined : sha === object.sha256)) return { outcome: 'ok', entries: [] };
  const isHolder = found.holders.some((h) => h.provider === provider);
  const others = found.holders.filter((h) => h.provider !== provider);
  if (isHolder && others.length === 0 && meta && sha) {
    const owedBefore = (await state.entries({ key })).filter((e) => e.kind === 'replicate').map((e) => e.provider);
    const version = held.lease.version;
    const res = await state.commitPut({
      key, version, size: meta.size, sha256: sha, contentType: meta.contentType, metadata: meta.metadata, lastModified: meta.lastModified,
      acked: [{ provider, version, etag: meta.etag }], owed: [...new Set(owedBefore)].filter((p) => p !== provider), lease: held.lease,
    });
    held.consumed = res.committed;
    return res.committed ? { outcome: 'adopted', entries: res.entries, version } : { outcome: 'skipped', entries: [] };
  }
  const entry = await state.repairReplica(key, provider);
  return { outcome: 'repaired', entries: entry ? [entry] : [] };
}
