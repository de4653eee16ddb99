import type { EventEmitter } from 'node:events';
import { ProviderUnavailableError, SHA256_KEY, TransientError, isCallerFault } from '../core/index.js';
import type { BlobStore, UpdateMetadataOptions } from '../core/index.js';
import type { PriorityClassifier } from '../core/priority.js';
import type { CatalogObject, Replica, StateStore } from '../state/types.js';
import type { LiveEntry } from './catalog-keys.js';
import type { HealthTracker } from './health-tracker.js';
import type { ProviderSet } from './provider-set.js';
import type { RouterEvents } from './router-types.js';
import type { HeldLease } from './write-leases.js';

export interface MetadataUpdateDeps {
  state: StateStore;
  stores: ReadonlyMap<string, BlobStore>;
  health: HealthTracker;
  providers: ProviderSet;
  priority: PriorityClassifier;
  events: EventEmitter<RouterEvents>;
}

/**
 * The router's metadata update of `obj` (the key's live entry), under the key's write lease
 * (`held`, whose version becomes the new version): on every available holder at once, committed
 * for those that took it, the rest owed a replica. Returns the new catalog object.
 */
export async function updateMetadataLeased(d: MetadataUpdateDeps, key: string, opts: UpdateMetadataOptions, held: HeldLease, obj: LiveEntry): Promise<CatalogObject> {
  const { object } = obj;
  const holders = obj.holders.map((h) => h.provider).filter((p) => d.stores.has(p) && d.health.state(p) !== 'down');
  const version = held.lease.version;
  const results = await Promise.allSettled(holders.map((p) => d.providers.call(p, () => d.providers.store(p).updateMetadata(key, { metadata: opts.metadata, contentType: opts.contentType, signal: held.signal }), 'write')));
  const acked: Replica[] = [];
  let failure: unknown;
  results.forEach((r, i) => {
    if (r.status === 'fulfilled') acked.push({ provider: holders[i]!, version, etag: r.value.etag });
    else failure = r.reason;
  });
  if (acked.length === 0) {
    if (isCallerFault(failure, 'write')) throw failure;
    throw new ProviderUnavailableError(`${key}: no provider holding it accepted the metadata update`, { provider: 'router', key, cause: failure });
  }
  const pending = (await d.state.entries({ key, state: 'pending' })).filter((e) => e.kind === 'replicate').map((e) => e.provider);
  const ackedNames = new Set(acked.map((a) => a.provider));
  const owed = [...new Set([...obj.holders.map((h) => h.provider), ...pending])].filter((p) => !ackedNames.has(p));
  const metadata: Record<string, string> = { ...opts.metadata };
  const sha = object.sha256 ?? object.metadata[SHA256_KEY];
  if (sha) metadata[SHA256_KEY] = sha;
  const contentType = opts.contentType ?? object.contentType;
  const lastModified = new Date();
  const result = await d.state.commitPut({
    key, version, size: object.size, sha256: object.sha256, contentType, metadata, lastModified, acked, owed, lease: held.lease,
    priority: d.priority.classify({ key, size: object.size, metadata }),
  });
  held.consumed = result.committed;
  if (!result.committed) throw new TransientError(`${key}: the write lease was lost before the metadata update was committed`, { provider: 'router', key });
  if (result.entries.length > 0) d.events.emit('owed', result.entries);
  return { ...object, version, metadata, contentType, lastModified };
}
