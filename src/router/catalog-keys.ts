import type { EventEmitter } from 'node:events';
import { NotFoundError, ProviderUnavailableError, describeError, isCloudmuxError } from '../core/index.js';
import type { BlobStore, ObjectMeta } from '../core/index.js';
import type { CatalogObject, Replica, StateStore } from '../state/types.js';
import type { HealthTracker } from './health-tracker.js';
import type { PlacementPolicy, PolicySet } from './policy.js';
import type { Placement, ProviderSet } from './provider-set.js';
import { storedSha256 } from './reconcile.js';
import type { RouterEvents } from './router-types.js';
import type { HeldLease, WriteLeases } from './write-leases.js';

const PROVIDER = 'router';

/** A key's live catalog entry: its current version, the holders of it, and holders of older versions. */
export type LiveEntry = { object: CatalogObject; holders: Replica[]; stale: Replica[] };

export interface CatalogKeysDeps {
  state: StateStore;
  policies: PolicySet;
  stores: ReadonlyMap<string, BlobStore>;
  health: HealthTracker;
  providers: ProviderSet;
  leases: WriteLeases;
  events: EventEmitter<RouterEvents>;
  placement(policy: PlacementPolicy, size: number): Placement;
}

/**
 * The router's look-ups of one key in the catalog, adopting a key the catalog does not know from
 * the first copy found on the policy's providers (objects written before cloudmux).
 */
export class CatalogKeys {
  constructor(private readonly d: CatalogKeysDeps) {}

  /** The key's live catalog entry; an unknown key is looked for on the providers and adopted. */
  async current(key: string, signal: AbortSignal | undefined, held?: HeldLease): Promise<LiveEntry> {
    const found = await this.d.state.lookup(key);
    if (found.state === 'live') return found;
    if (found.state === 'deleted') throw new NotFoundError(`no object at ${key}`, { provider: PROVIDER, key });
    const adopted = await this.adopt(key, signal, held);
    if (!adopted) throw new NotFoundError(`no object at ${key}`, { provider: PROVIDER, key });
    return adopted;
  }

  /** The first copy of a key the catalog does not know, on the policy's providers (pins first); throws when one could not be asked. */
  async findOutside(key: string, signal: AbortSignal | undefined): Promise<{ provider: string; meta: ObjectMeta } | undefined> {
    const policy = this.d.policies.for(key);
    if (!policy.adoptUnknown) return undefined;
    const order = [...policy.pin, ...policy.providers.filter((p) => !policy.pin.includes(p))].filter((p) => this.d.stores.has(p));
    let failure: unknown;
    const unreachable: string[] = [];
    for (const p of order) {
      if (this.d.health.state(p) === 'down') {
        unreachable.push(`${p}: down`);
        continue;
      }
      try {
        return { provider: p, meta: await this.d.providers.call(p, () => this.d.providers.store(p).head(key, { signal })) };
      } catch (e) {
        if (!isCloudmuxError(e, 'NotFound')) {
          failure = e;
          unreachable.push(`${p}: ${describeError(e, { where: false, maxLength: 200 })}`);
        }
      }
    }
    if (unreachable.length > 0) {
      throw new ProviderUnavailableError(`${key} is not in the catalog and ${unreachable.length} provider(s) could not be asked whether they hold it (${unreachable.join('; ')})`, { provider: PROVIDER, key, cause: failure });
    }
    return undefined;
  }

  /**
   * Looks for a key on the policy's providers (pins first, then in the policy's order) and records
   * the first copy found as the current version, owing replicas to reach N. Under the key's write
   * lease (taken unless `held`), so an adoption never races a put of the key.
   */
  async adopt(key: string, signal: AbortSignal | undefined, held?: HeldLease): Promise<LiveEntry | undefined> {
    const policy = this.d.policies.for(key);
    if (!policy.adoptUnknown) return undefined;
    const run = async (h: HeldLease): Promise<LiveEntry | undefined> => {
      const before = await this.d.state.lookup(key);
      if (before.state === 'live') return before;
      if (before.state === 'deleted') return undefined;
      const outside = await this.findOutside(key, h.signal);
      if (!outside) return undefined;
      const { provider: p, meta } = outside;
      const version = h.lease.version;
      const plan = this.d.placement(policy, meta.size);
      const res = await this.d.state.commitPut({
        key, version, size: meta.size, sha256: storedSha256(meta), contentType: meta.contentType, metadata: meta.metadata, lastModified: meta.lastModified,
        acked: [{ provider: p, version, etag: meta.etag }], owed: plan.targets.filter((t) => t !== p), onlyIfUnknown: true, lease: h.lease,
      });
      h.consumed = res.committed;
      if (res.entries.length > 0) this.d.events.emit('owed', res.entries);
      const now = await this.d.state.lookup(key);
      return now.state === 'live' ? now : undefined;
    };
    return held ? run(held) : this.d.leases.with(key, signal, run);
  }
}
