import { createHash } from 'node:crypto';
import { isCloudmuxError, isNetworkError } from '../core/errors.js';
import { headIfExists } from '../core/helpers.js';
import type { BlobStore, ObjectMeta } from '../core/types.js';
import { conflictCopyName } from './conflict-name.js';
import type { LocalTree, WriteOutcome } from './local-tree.js';
import { META_DEVICE, META_HLC, META_TOMBSTONE, type Tombstone } from './remote-scan.js';
import type { SyncClock } from './sync-clock.js';
import type { SyncState } from './sync-state.js';
import type { BaseEntry, LocalEntry, PathFacts, RemoteEntry, SyncAction } from './types.js';
import type { VersionsArea } from './versions-area.js';
import type { BaseContent } from './base-content.js';
import type { Merger } from './merge/index.js';


/** How one action ended. `raced`: a conditional remote write lost (the path is reconciled again next round). */
export type ActionResult = 'done' | 'deferred' | 'raced' | 'failed';

export interface ActionOutcome {
  action: SyncAction;
  result: ActionResult;
  detail?: string;
  /** Conflict copy created (keep-both), or version kept in the versions area. */
  conflictCopy?: string;
  kept?: string;
  /** Bytes moved over the network by this action. */
  bytes: number;
}

export interface ExecutorContext {
  local: LocalTree;
  remote: BlobStore;
  state: SyncState;
  versions: VersionsArea;
  device: string;
  clock: SyncClock;
  facts: ReadonlyMap<string, PathFacts>;
  /** Tombstones the scan saw: a create replaces this device's own or a stale one (ifMatch), else waits for its delete. */
  tombstones: ReadonlyMap<string, Tombstone>;
  merger(name: string): Merger | undefined;
  /** Base bytes of merge-policy paths (for three-way merges). */
  baseContent: BaseContent;
  /** Keep the remote version a propagated local delete removes (default true). */
  keepDeleted: boolean;
  signal?: AbortSignal;
}

/** The remote cannot be reached: the round stops and the engine goes offline (local changes stay queued). */
export function isUnreachable(e: unknown): boolean {
  return isNetworkError(e) || (isCloudmuxError(e) && (e.code === 'ProviderUnavailable' || e.code === 'Transient' || e.code === 'Throttled'));
}

/** A conditional remote write that lost to another writer. */
function isRace(e: unknown): boolean {
  return isCloudmuxError(e) && (e.code === 'PreconditionFailed' || e.code === 'AlreadyExists' || e.code === 'NotFound');
}

class Deferred extends Error {}

/**
 * Applies one action. Every remote write is conditional on the state the decision saw, every
 * local write on the file examined; the base is recorded only after both sides hold the bytes it
 * describes, so a crash at any step leaves a state the next round reconciles without loss.
 * Unreachable-remote errors are rethrown (the caller stops the round); others become `failed`.
 */
export async function execute(action: SyncAction, ctx: ExecutorContext): Promise<ActionOutcome> {
  const out: ActionOutcome = { action, result: 'done', bytes: 0 };
  try {
    await run(action, ctx, out);
  } catch (e) {
    if (isUnreachable(e)) throw e;
    if (e instanceof Deferred) {
      out.result = 'deferred';
      out.detail = e.message;
    } else if (isRace(e)) {
      out.result = 'raced';
      out.detail = (e as Error).message;
    } else if (isCloudmuxError(e, 'IntegrityError') && action.kind !== 'download') {
      // The local file changed while it was read: nothing was written; examine it again next round.
      out.result = 'deferred';
      out.detail = 'the local file changed while it was uploaded';
    } else {
      out.result = 'failed';
      out.detail = (e as Error).message;
    }
  }
  return out;
}

function written(w: WriteOutcome): Extract<WriteOutcome, { outcome: 'written' }> {
  if (w.outcome === 'deferred') throw new Deferred(w.reason);
  return w;
}

function need<T>(v: T | undefined, what: string): T {
  if (v === undefined) throw new Error(`internal: ${what} missing`);
  return v;
}

async function run(a: SyncAction, ctx: ExecutorContext, out: ActionOutcome): Promise<void> {
  const f = need(ctx.facts.get(a.path), `facts of ${a.path}`);
  switch (a.kind) {
    case 'none':
      return refresh(f, ctx);
    case 'record': {
      const l = need(f.local, 'local');
      const r = need(f.remote, 'remote');
      ctx.state.setBase(a.path, baseOf(r, l));
      return;
    }
    case 'forget':
      ctx.state.dropBase(a.path);
      return;
    case 'upload': {
      const l = need(f.local, 'local');
      const meta = await upload(a.path, l, a.ifMatch, ctx, out);
      ctx.state.setBase(a.path, { size: l.size, sha256: l.sha256, etag: meta.etag, version: meta.version, stamp: l.stamp, hlc: l.hlc, device: ctx.device });
      return;
    }
    case 'download': {
      const r = need(f.remote, 'remote');
      const w = await download(a.path, r, f.local, ctx, out);
      ctx.state.setBase(a.path, baseOf(r, { stamp: w.stamp }));
      return;
    }
    case 'delete-remote': {
      const r = need(f.remote, 'remote');
      if (ctx.keepDeleted) out.kept = await ctx.versions.keepRemote(a.path, r.etag, r.hlc, r.device, ctx.signal);
      await deleteRemote(a.path, a.ifMatch, ctx);
      ctx.state.dropBase(a.path);
      return;
    }
    case 'delete-local': {
      const l = need(f.local, 'local');
      if ((await ctx.local.remove(a.path, l.stamp)) === 'deferred') throw new Deferred('the file changed since it was examined');
      ctx.state.dropBase(a.path);
      return;
    }
    case 'keep-both':
      return keepBoth(a.path, f, ctx, out, a.policy);
    case 'local-wins': {
      const l = need(f.local, 'local');
      const r = need(f.remote, 'remote');
      out.kept = await ctx.versions.keepRemote(a.path, r.etag, r.hlc, r.device, ctx.signal);
      const meta = await upload(a.path, l, a.ifMatch, ctx, out);
      ctx.state.setBase(a.path, { size: l.size, sha256: l.sha256, etag: meta.etag, version: meta.version, stamp: l.stamp, hlc: l.hlc, device: ctx.device });
      ctx.state.addConflict({ path: a.path, policy: a.policy, outcome: 'local version kept at the path; remote version in the versions area', copy: out.kept, at: Date.now() });
      return;
    }
    case 'remote-wins': {
      const l = need(f.local, 'local');
      const r = need(f.remote, 'remote');
      out.kept = await ctx.versions.keepBytes(a.path, ctx.local.read(a.path), l.sha256, l.hlc, ctx.device, ctx.signal);
      out.bytes += l.size;
      const w = await download(a.path, r, l, ctx, out);
      ctx.state.setBase(a.path, baseOf(r, { stamp: w.stamp }));
      ctx.state.addConflict({ path: a.path, policy: a.policy, outcome: 'remote version kept at the path; local version in the versions area', copy: out.kept, at: Date.now() });
      return;
    }
    case 'merge':
      return merge(a.path, a.merger, f, ctx, out);
    case 'rename-remote': {
      const l = need(f.local, 'local');
      const meta = await ctx.remote.copy(a.from, a.path, {
        ifNoneMatch: '*', sourceIfMatch: a.ifMatch, metadata: { [META_HLC]: l.hlc, [META_DEVICE]: ctx.device }, signal: ctx.signal,
      });
      ctx.state.setBase(a.path, { size: l.size, sha256: l.sha256, etag: meta.etag, version: meta.version, stamp: l.stamp, hlc: l.hlc, device: ctx.device });
      await deleteRemote(a.from, a.ifMatch, ctx);
      ctx.state.dropBase(a.from);
      return;
    }
    case 'rename-local': {
      const from = need(ctx.facts.get(a.from), `facts of ${a.from}`);
      const lf = need(from.local, 'local of the source');
      const r = need(f.remote, 'remote');
      const w = written(await ctx.local.move(a.from, a.path, lf.stamp));
      ctx.state.setBase(a.path, baseOf(r, { stamp: w.stamp }));
      ctx.state.dropBase(a.from);
      return;
    }
  }
}

function baseOf(r: RemoteEntry, l: { stamp: LocalEntry['stamp'] }): BaseEntry {
  return { size: r.size, sha256: r.sha256, etag: r.etag, version: r.version, stamp: l.stamp, hlc: r.hlc, device: r.device };
}

/** In sync: refresh a base whose etag or local stamp moved without a content change. */
function refresh(f: PathFacts, ctx: ExecutorContext): void {
  const { base, local, remote } = f;
  if (!base || !local || !remote) return;
  const stampMoved = base.stamp === undefined || base.stamp.ino !== local.stamp.ino || base.stamp.mtimeNs !== local.stamp.mtimeNs || base.stamp.ctimeNs !== local.stamp.ctimeNs;
  if (base.etag === remote.etag && !stampMoved) return;
  ctx.state.setBase(f.path, { ...base, etag: remote.etag, version: remote.version, stamp: local.stamp });
}

/** Uploads the local file at `path` to the remote key `key` (default: the same path), conditionally. */
async function upload(path: string, l: LocalEntry, ifMatch: string | undefined, ctx: ExecutorContext, out: ActionOutcome, key = path): Promise<ObjectMeta> {
  const t = ctx.tombstones.get(key);
  if (ifMatch === undefined && t && (t.stale || t.device === ctx.device)) ifMatch = t.etag;
  const meta = await ctx.remote.put(key, ctx.local.read(path), {
    ...(ifMatch !== undefined ? { ifMatch } : { ifNoneMatch: '*' as const }),
    size: l.size, expect: { sha256: l.sha256 }, metadata: { [META_HLC]: l.hlc, [META_DEVICE]: ctx.device }, signal: ctx.signal,
  });
  out.bytes += l.size;
  return meta;
}

async function download(path: string, r: RemoteEntry, l: LocalEntry | undefined, ctx: ExecutorContext, out: ActionOutcome): Promise<Extract<WriteOutcome, { outcome: 'written' }>> {
  const { body } = await ctx.remote.get(path, { ifMatch: r.etag, verify: true, signal: ctx.signal });
  try {
    const w = written(await ctx.local.write(path, body, l?.stamp, r.sha256));
    out.bytes += r.size;
    ctx.clock.observe(r.hlc);
    return w;
  } finally {
    body.destroy();
  }
}

async function deleteRemote(path: string, ifMatch: string, ctx: ExecutorContext): Promise<void> {
  if (ctx.remote.capabilities.conditionalDelete === true) {
    await ctx.remote.delete(path, { ifMatch, signal: ctx.signal });
    return;
  }
  // No atomic conditional delete: a tombstone put with ifMatch is the compare-and-swap (a write
  // that landed since the round looked makes it fail: raced); then the tombstone is deleted.
  const tomb = await ctx.remote.put(path, new Uint8Array(0), {
    ifMatch, metadata: { [META_TOMBSTONE]: '1', [META_DEVICE]: ctx.device, [META_HLC]: ctx.clock.now() }, signal: ctx.signal,
  });
  await removeTombstone(ctx.remote, path, tomb.etag, ctx.signal);
}

/**
 * Deletes a tombstone if it is still the one with `etag`. Between the check and the delete only
 * a create replacing a stale tombstone (10 minutes old) could land; nothing else writes over one.
 */
export async function removeTombstone(remote: BlobStore, path: string, etag: string, signal?: AbortSignal): Promise<void> {
  const now = await headIfExists(remote, path, { signal });
  if (now?.etag === etag && now.metadata[META_TOMBSTONE] !== undefined) await remote.delete(path, { signal });
}

/**
 * Both changed, keep both: the local version becomes a conflict copy on both sides (uploaded
 * create-only, then moved aside locally) and the remote version takes the path locally.
 */
async function keepBoth(path: string, f: PathFacts, ctx: ExecutorContext, out: ActionOutcome, policy: string): Promise<void> {
  const l = need(f.local, 'local');
  const r = need(f.remote, 'remote');
  let copy = '';
  let meta: ObjectMeta | undefined;
  for (let n = 1; meta === undefined; n++) {
    copy = conflictCopyName(path, ctx.device, new Date(), n);
    if (ctx.facts.has(copy) || (await ctx.local.stamp(copy)) !== undefined) continue;
    try {
      meta = await upload(path, l, undefined, ctx, out, copy);
    } catch (e) {
      if (!isCloudmuxError(e, 'AlreadyExists') || n >= 20) throw e;
    }
  }
  const moved = written(await ctx.local.move(path, copy, l.stamp));
  ctx.state.setBase(copy, { size: l.size, sha256: l.sha256, etag: meta.etag, version: meta.version, stamp: moved.stamp, hlc: l.hlc, device: ctx.device });
  out.conflictCopy = copy;
  ctx.state.addConflict({ path, policy, outcome: 'remote version at the path; local version kept as a conflict copy', copy, at: Date.now() });
  const w = await download(path, r, undefined, ctx, out);
  ctx.state.setBase(path, baseOf(r, { stamp: w.stamp }));
}

async function readAll(body: AsyncIterable<Uint8Array>, limit: number): Promise<Uint8Array | undefined> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body) {
    n += c.byteLength;
    if (n > limit) return undefined;
    chunks.push(Buffer.from(c));
  }
  return Buffer.concat(chunks);
}

/** Both changed, merge policy: merged bytes replace both sides; a merger's conflict keeps both. */
async function merge(path: string, name: string, f: PathFacts, ctx: ExecutorContext, out: ActionOutcome): Promise<void> {
  const l = need(f.local, 'local');
  const r = need(f.remote, 'remote');
  const merger = ctx.merger(name);
  const policy = `merge:${name}`;
  // Too large for the merger: never read into memory; keep both.
  if (!merger || l.size > merger.maxBytes || r.size > merger.maxBytes) return keepBoth(path, f, ctx, out, policy);
  const { body } = await ctx.remote.get(path, { ifMatch: r.etag, verify: true, signal: ctx.signal });
  const remoteBytes = await readAll(body, merger.maxBytes).finally(() => body.destroy());
  const localBytes = await readAll(ctx.local.read(path), merger.maxBytes);
  if (!remoteBytes || !localBytes || createHash('sha256').update(localBytes).digest('hex') !== l.sha256) return keepBoth(path, f, ctx, out, policy);
  const base = f.base ? await ctx.baseContent.read(f.base.sha256) : undefined;
  const result = await merger.merge({ path, base, local: localBytes, remote: remoteBytes });
  if (result.kind === 'conflict') return keepBoth(path, f, ctx, out, policy);
  ctx.clock.observe(r.hlc);
  const hlc = ctx.clock.now();
  const merged = Buffer.from(result.bytes);
  const sha256 = createHash('sha256').update(merged).digest('hex');
  const meta = await ctx.remote.put(path, merged, { ifMatch: r.etag, metadata: { [META_HLC]: hlc, [META_DEVICE]: ctx.device }, signal: ctx.signal });
  out.bytes += merged.byteLength * 2;
  const w = written(await ctx.local.write(path, [merged], l.stamp, sha256));
  ctx.state.setBase(path, { size: merged.byteLength, sha256, etag: meta.etag, version: meta.version, stamp: w.stamp, hlc, device: ctx.device });
  ctx.state.addConflict({ path, policy, outcome: 'merged', at: Date.now() });
}
