import { isCloudmuxError, NotFoundError } from '../core/errors.js';
import { listObjects } from '../core/helpers.js';
import type { BlobStore, ObjectMeta } from '../core/types.js';
import { META_DEVICE, META_HLC, VERSIONS_PREFIX } from './remote-scan.js';

/** Default retention of the versions area: 30 days. */
export const DEFAULT_RETENTION_MS = 30 * 24 * 3600 * 1000;

/** One kept version: `id` (the writer's clock stamp, which ends with its device id) is what `restore --version` takes. */
export interface KeptVersion {
  path: string;
  id: string;
  key: string;
  size: number;
  /** When it was put in the versions area (retention counts from here). */
  keptAt: Date;
}

function safe(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]/g, '_');
}

/**
 * The versions area: remote objects under `.cloudmux_versions/<path>/<stamp>` holding
 * every version a conflict policy or a propagated delete discarded, for `retentionMs` (default
 * 30 days) after it was kept. Everything in it is on the remote, so every device lists the same
 * versions and any of them can restore one.
 *
 * A version's key is the writer's own stamp (which names its device), so keeping the same version
 * twice (a round repeated after kill -9) writes nothing new.
 */
export class VersionsArea {
  readonly retentionMs: number;

  constructor(private readonly store: BlobStore, opts: { retentionMs?: number } = {}) {
    this.retentionMs = opts.retentionMs ?? DEFAULT_RETENTION_MS;
  }

  /** A version's key: its writer's stamp (unique per write); unstamped (foreign) versions get the time they were kept. */
  keyFor(path: string, stamp: string, device: string): string {
    const id = stamp !== '' ? safe(stamp) : `unstamped-${new Date().toISOString().replace(/[^0-9]/g, '')}-${safe(device || 'unknown')}`;
    return `${VERSIONS_PREFIX}${path}/${id}`;
  }

  /** Keeps the remote's current `path` (if its etag is still `etag`) by server-side copy. */
  async keepRemote(path: string, etag: string, stamp: string, device: string, signal?: AbortSignal): Promise<string> {
    const key = this.keyFor(path, stamp, device);
    try {
      await this.store.copy(path, key, { sourceIfMatch: etag, ifNoneMatch: '*', signal });
    } catch (e) {
      if (!isCloudmuxError(e, 'AlreadyExists')) throw e;
    }
    return key;
  }

  /** Keeps bytes from this device (a local version a policy discards). `sha256` is checked as they stream. */
  async keepBytes(path: string, body: AsyncIterable<Uint8Array>, sha256: string, stamp: string, device: string, signal?: AbortSignal): Promise<string> {
    const key = this.keyFor(path, stamp, device);
    try {
      await this.store.put(key, body, { ifNoneMatch: '*', expect: { sha256 }, metadata: { [META_HLC]: stamp, [META_DEVICE]: device }, signal });
    } catch (e) {
      if (!isCloudmuxError(e, 'AlreadyExists')) throw e;
    }
    return key;
  }

  /** Kept versions of `path` (every path when absent), oldest first per path. */
  async list(path?: string, signal?: AbortSignal): Promise<KeptVersion[]> {
    const prefix = path === undefined ? VERSIONS_PREFIX : `${VERSIONS_PREFIX}${path}/`;
    const out: KeptVersion[] = [];
    for await (const o of listObjects(this.store, { prefix, signal })) {
      const rest = o.key.slice(VERSIONS_PREFIX.length);
      const slash = rest.lastIndexOf('/');
      if (slash <= 0) continue;
      out.push({ path: rest.slice(0, slash), id: rest.slice(slash + 1), key: o.key, size: o.size, keptAt: o.lastModified });
    }
    return out.sort((a, b) => (a.path === b.path ? a.keptAt.getTime() - b.keptAt.getTime() : a.path < b.path ? -1 : 1));
  }

  /**
   * Puts a kept version back at `path` on the remote (the next sync round brings it to every
   * device). The version replaced, if any, is kept first. `id` defaults to the newest kept.
   * Errors: NotFound (no such version), PreconditionFailed (the path changed meanwhile: retry).
   */
  async restore(path: string, id: string | undefined, device: string, stamp: string, signal?: AbortSignal): Promise<{ restored: KeptVersion; meta: ObjectMeta }> {
    const all = await this.list(path, signal);
    const v = id === undefined ? all.at(-1) : all.find((x) => x.id === id);
    if (!v) throw new NotFoundError(id === undefined ? `no kept versions of ${path}` : `no kept version ${id} of ${path}`, { key: path });
    let current: ObjectMeta | undefined;
    try {
      current = await this.store.head(path, { signal });
    } catch (e) {
      if (!isCloudmuxError(e, 'NotFound')) throw e;
    }
    if (current) await this.keepRemote(path, current.etag, current.metadata[META_HLC] ?? '', current.metadata[META_DEVICE] ?? '', signal);
    const { body } = await this.store.get(v.key, { verify: true, signal });
    const meta = await this.store.put(path, body, {
      ...(current ? { ifMatch: current.etag } : { ifNoneMatch: '*' as const }),
      metadata: { [META_HLC]: stamp, [META_DEVICE]: device }, signal,
    });
    return { restored: v, meta };
  }

  /** Deletes kept versions older than the retention period; returns how many. */
  async prune(now = Date.now(), signal?: AbortSignal): Promise<number> {
    const old = (await this.list(undefined, signal)).filter((v) => now - v.keptAt.getTime() > this.retentionMs);
    if (old.length === 0) return 0;
    const r = await this.store.deleteMany(old.map((v) => v.key), { signal });
    return r.deleted.length;
  }
}
