import { createHash } from 'node:crypto';
import { isCloudmuxError } from '../core/errors.js';
import { headIfExists, listObjects } from '../core/helpers.js';
import type { ChangeFeed } from '../core/change-feed.js';
import type { BlobStore, ObjectMeta } from '../core/types.js';
import { FS_STORE_DIR, STATE_DIR, TEMP_MARK, type SkippedPath } from './local-tree.js';
import type { BaseEntry, RemoteEntry } from './types.js';

/** Remote prefix of the versions area (never synced as files). */
export const VERSIONS_PREFIX = '.cloudmux_versions/';
/** Object metadata names of the writer's HLC stamp and device id (portable: Azure-valid, not reserved). */
export const META_HLC = 'sync_hlc';
export const META_DEVICE = 'sync_device';
/**
 * Marks a tombstone: an empty object a device writes with `ifMatch` over the version it deletes
 * when the store has no atomic conditional delete (S3 compatibles; the router has one), then deletes. The
 * conditional put is the compare-and-swap; once it holds the key, no other device's conditional
 * write can land there, so the unconditional delete that follows removes only the tombstone.
 * Scans read a tombstone as "absent".
 */
export const META_TOMBSTONE = 'sync_tombstone';
/** A tombstone older than this is left over by a device that died between its put and its delete: creates may replace it. */
export const TOMBSTONE_STALE_MS = 10 * 60_000;

/** A tombstone seen by a scan. */
export interface Tombstone {
  etag: string;
  device: string;
  stale: boolean;
}

/** True for keys the sync engine never treats as user files (versions area, state, temp files, an fs store's hidden tree). */
export function isInternalPath(path: string): boolean {
  return path.startsWith(VERSIONS_PREFIX) || path.includes(TEMP_MARK) || [STATE_DIR, FS_STORE_DIR].some((d) => path === d || path.startsWith(`${d}/`));
}

export interface RemoteScan {
  entries: Map<string, RemoteEntry>;
  /** Tombstones seen (their paths are absent from `entries`). */
  tombstones: Map<string, Tombstone>;
  skipped: SkippedPath[];
  /** Objects whose etag differed from the base and were examined (head, or read to hash). */
  examined: number;
}

export interface RemoteScanOptions {
  concurrency?: number;
  /** The keys in scope (a device profile's); others are not examined and left out. */
  accept?: (key: string) => boolean;
  signal?: AbortSignal;
}

/**
 * The remote now: one listing, diffed against the base by etag. An object whose etag is the
 * base's is the base's content (not examined); any other is examined with `head` for its
 * plaintext SHA-256 and writer stamp (over an EncryptedStore head reports the sealed plaintext
 * digest), and read to hash only when the store records no digest (objects written by others).
 */
export async function scanRemote(store: BlobStore, bases: ReadonlyMap<string, BaseEntry>, opts: RemoteScanOptions): Promise<RemoteScan> {
  const entries = new Map<string, RemoteEntry>();
  const toExamine: string[] = [];
  for await (const o of listObjects(store, { signal: opts.signal })) {
    if (isInternalPath(o.key) || (opts.accept && !opts.accept(o.key))) continue;
    const base = bases.get(o.key);
    if (base && base.etag === o.etag) entries.set(o.key, { size: base.size, sha256: base.sha256, etag: base.etag, version: base.version, hlc: base.hlc, device: base.device });
    else toExamine.push(o.key);
  }
  const skipped: SkippedPath[] = [];
  const tombstones = new Map<string, Tombstone>();
  await examineAll(store, toExamine, entries, tombstones, skipped, opts);
  return { entries, tombstones, skipped, examined: toExamine.length };
}

/** Examines `keys` (head, hash when needed) into `entries`; vanished keys are left out. */
export async function examineAll(
  store: BlobStore, keys: readonly string[], entries: Map<string, RemoteEntry>, tombstones: Map<string, Tombstone>, skipped: SkippedPath[], opts: RemoteScanOptions,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < keys.length) {
      const key = keys[next++]!;
      const e = await examine(store, key, opts);
      if (e === 'unreadable') skipped.push({ path: key, reason: 'unreadable' });
      else if (e && 'tombstone' in e) {
        entries.delete(key);
        tombstones.set(key, e.tombstone);
      } else if (e) entries.set(key, e);
      else entries.delete(key);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 8) }, worker));
}

/** One remote object's entry, or undefined when it is gone. */
export async function examine(store: BlobStore, key: string, opts: RemoteScanOptions): Promise<RemoteEntry | { tombstone: Tombstone } | undefined | 'unreadable'> {
  const meta = await headIfExists(store, key, { signal: opts.signal });
  return meta && entryOf(store, meta, opts);
}

/** A remote entry from an object's metadata (hashing its bytes when no digest is recorded). */
export async function entryOf(store: BlobStore, meta: ObjectMeta, opts: RemoteScanOptions): Promise<RemoteEntry | { tombstone: Tombstone } | undefined | 'unreadable'> {
  if (meta.metadata[META_TOMBSTONE] !== undefined) {
    return { tombstone: { etag: meta.etag, device: meta.metadata[META_DEVICE] ?? '', stale: Date.now() - meta.lastModified.getTime() > TOMBSTONE_STALE_MS } };
  }
  let sha256 = meta.checksums.sha256;
  let etag = meta.etag;
  if (sha256 === undefined) {
    try {
      const { meta: m, body } = await store.get(meta.key, { signal: opts.signal });
      const h = createHash('sha256');
      for await (const chunk of body) h.update(chunk as Buffer);
      sha256 = h.digest('hex');
      etag = m.etag;
    } catch (e) {
      if (isCloudmuxError(e, 'NotFound')) return undefined;
      if (isCloudmuxError(e, 'IntegrityError')) return 'unreadable';
      throw e;
    }
  }
  // No stamp (an object no cloudmux device wrote): '' — it can never win `newest`.
  return { size: meta.size, sha256, etag, version: meta.version, hlc: meta.metadata[META_HLC] ?? '', device: meta.metadata[META_DEVICE] ?? '' };
}

/** A change-feed scan: the remote now, and where the feed continues; `reset` when the cursor could not be continued. */
export type FeedScan = (RemoteScan & { reset: false; cursor: string }) | { reset: true; cursor: string };

/**
 * The remote now from the store's change feed instead of a listing: the base, overlaid with every
 * change since `cursor` (deleted keys removed; keys whose etag is not the base's examined with
 * `head`), plus `recheck` (paths a previous round left unsettled), examined again. A cursor the
 * store cannot continue gives `reset`: the caller lists once and continues from the new cursor.
 */
export async function scanRemoteByFeed(store: BlobStore & ChangeFeed, bases: ReadonlyMap<string, BaseEntry>, cursor: string | undefined, recheck: Iterable<string>, opts: RemoteScanOptions): Promise<FeedScan> {
  const entries = new Map<string, RemoteEntry>();
  for (const [path, b] of bases) entries.set(path, { size: b.size, sha256: b.sha256, etag: b.etag, version: b.version, hlc: b.hlc, device: b.device });
  const toExamine = new Set(recheck);
  let next = cursor;
  for (;;) {
    const page = await store.changesSince(next, { signal: opts.signal });
    if (page.reset) return { reset: true, cursor: page.cursor };
    for (const c of page.changes) {
      if (isInternalPath(c.key) || (opts.accept && !opts.accept(c.key))) continue;
      const base = bases.get(c.key);
      if (c.deleted) {
        entries.delete(c.key);
        toExamine.delete(c.key);
      } else if (base && c.etag === base.etag) {
        toExamine.delete(c.key);
      } else {
        toExamine.add(c.key);
      }
    }
    next = page.cursor;
    if (!page.more) break;
  }
  const skipped: SkippedPath[] = [];
  const tombstones = new Map<string, Tombstone>();
  const keys = [...toExamine].filter((k) => !isInternalPath(k) && (!opts.accept || opts.accept(k)));
  await examineAll(store, keys, entries, tombstones, skipped, opts);
  return { reset: false, cursor: next!, entries, tombstones, skipped, examined: keys.length };
}
