import { isCloudmuxError, throwIfAborted } from '../../core/errors.js';
import type { BlobStore, ObjectSummary, SignalOptions } from '../../core/types.js';
import { MIN_MANIFEST_BYTES } from './listing.js';
import { readManifest } from './manifest-io.js';
import { chunkIdOf, markedSize } from './manifest.js';

/** Slack for the provider's clock against ours when picking manifests modified since the mark started. */
const CLOCK_MARGIN_MS = 5 * 60 * 1000;

/** What `collectGarbage` needs of a ChunkedStore (its inner store, chunk prefix and grace period). */
export interface CollectableStore {
  readonly inner: BlobStore;
  readonly chunkPrefix: string;
  readonly graceMs: number;
}

export interface GcOptions extends SignalOptions {
  /** Keep unreferenced chunks younger than this (ms). Default: the store's `graceMs`; never less. */
  graceMs?: number;
  /** Report what would be deleted; delete nothing (and send no head or delete requests for chunks). */
  dryRun?: boolean;
  /** Deletes in flight (default 8). */
  concurrency?: number;
  /** Clock (ms), for tests. */
  now?: () => number;
}

export interface GcReport {
  dryRun: boolean;
  graceMs: number;
  /** Distinct manifests read in the mark phase (either pass). */
  manifests: number;
  /** Chunks listed under the chunk prefix. */
  chunks: number;
  /** Distinct chunk ids the manifests name. */
  referenced: number;
  /** Referenced chunks the store does not hold (a damaged store: reported, never "fixed" here). */
  missing: string[];
  /** Unreferenced chunks kept because they are younger than the grace period (maybe a put in progress). */
  keptYoung: number;
  /** Unreferenced chunks deleted (or, with dryRun, that would be). */
  deleted: number;
  deletedBytes: number;
  /** Candidates left alone because they changed (were touched or rewritten) since they were listed. */
  keptChanged: number;
  /** True when the sweep stopped before its end because it ran past a quarter of the grace period. */
  stoppedEarly: boolean;
  durationMs: number;
}

/**
 * Removes chunks no manifest references, safely while writers on other machines keep writing
 * (docs/chunk-format.md, "Garbage collection", has the argument):
 *
 * 1. Mark: list every object, read every manifest, collect the chunk ids they name. A manifest
 *    that cannot be read (damaged, or encrypted under a key this process lacks) stops GC before
 *    anything is deleted: an incomplete mark could delete what it names.
 * 2. List the chunks; candidates are those not marked and last modified more than `graceMs`
 *    before the mark started.
 * 3. Mark again, the manifests modified since the first mark started (puts that committed meanwhile).
 * 4. Sweep: each candidate still unmarked is looked at again (`head`) right before it is deleted
 *    and kept if it is now younger than the grace period (a writer touched or re-uploaded it to
 *    rely on it); the delete is conditional on the etag that head saw where the store can do that.
 *    The sweep stops once it has run for a quarter of the grace period since the mark started.
 * Errors: IntegrityError / AccessDenied (unreadable manifest, nothing deleted), the store's own.
 */
export async function collectGarbage(store: CollectableStore, opts: GcOptions = {}): Promise<GcReport> {
  const now = opts.now ?? Date.now;
  const graceMs = Math.max(opts.graceMs ?? store.graceMs, 0);
  const started = now();
  const report: GcReport = {
    dryRun: opts.dryRun === true, graceMs, manifests: 0, chunks: 0, referenced: 0, missing: [], keptYoung: 0, deleted: 0, deletedBytes: 0,
    keptChanged: 0, stoppedEarly: false, durationMs: 0,
  };
  const marked = new Set<string>();
  const manifests = new Set<string>();
  await mark(store, marked, manifests, opts.signal);
  const candidates: ObjectSummary[] = [];
  const held = new Set<string>();
  for await (const item of store.inner.list({ prefix: store.chunkPrefix, signal: opts.signal })) {
    if (item.type !== 'object') continue;
    const id = chunkIdOf(store.chunkPrefix, item.key);
    if (id === undefined) continue;
    report.chunks++;
    held.add(id);
    if (marked.has(id)) continue;
    if (item.lastModified.getTime() >= started - graceMs) report.keptYoung++;
    else candidates.push(item);
  }
  await mark(store, marked, manifests, opts.signal, started);
  report.manifests = manifests.size;
  report.referenced = marked.size;
  for (const id of marked) if (!held.has(id)) report.missing.push(id);
  const doomed = candidates.filter((c) => !marked.has(chunkIdOf(store.chunkPrefix, c.key)!));
  report.keptYoung += candidates.length - doomed.length;
  if (report.dryRun) {
    report.deleted = doomed.length;
    report.deletedBytes = doomed.reduce((n, c) => n + c.size, 0);
  } else {
    await sweep(store, doomed, report, { graceMs, started, now, signal: opts.signal, concurrency: opts.concurrency ?? 8 });
  }
  report.durationMs = now() - started;
  return report;
}

/** Adds the ids named by every manifest (modified at or after `since`, when given) to `marked`. */
async function mark(store: CollectableStore, marked: Set<string>, manifests: Set<string>, signal: AbortSignal | undefined, since?: number): Promise<void> {
  for await (const item of store.inner.list({ signal })) {
    if (item.type !== 'object' || item.key.startsWith(store.chunkPrefix) || item.size < MIN_MANIFEST_BYTES) continue;
    if (since !== undefined && item.lastModified.getTime() < since - CLOCK_MARGIN_MS) continue;
    let r;
    try {
      r = await store.inner.get(item.key, { signal });
    } catch (e) {
      if (isCloudmuxError(e, 'NotFound')) continue; // deleted since listed: names nothing now
      throw e;
    }
    if (markedSize(r.meta.metadata) === undefined) {
      r.body.destroy();
      continue;
    }
    const manifest = await readManifest(r, store.inner.provider, item.key);
    manifests.add(item.key);
    for (const c of manifest.chunks) marked.add(c.id);
  }
}

interface SweepContext {
  graceMs: number;
  started: number;
  now: () => number;
  signal?: AbortSignal;
  concurrency: number;
}

async function sweep(store: CollectableStore, doomed: ObjectSummary[], report: GcReport, ctx: SweepContext): Promise<void> {
  const conditional = store.inner.capabilities.conditionalDelete === true;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < doomed.length) {
      throwIfAborted(ctx.signal);
      // Below a minute of grace nothing protects running writers anyway (an offline collection):
      // no time bound either.
      if (ctx.graceMs >= 60_000 && ctx.now() - ctx.started > ctx.graceMs / 4) {
        report.stoppedEarly = true;
        return;
      }
      const item = doomed[next++]!;
      let meta;
      try {
        meta = await store.inner.head(item.key, { signal: ctx.signal });
      } catch (e) {
        if (isCloudmuxError(e, 'NotFound')) continue;
        throw e;
      }
      if (meta.lastModified.getTime() >= ctx.now() - ctx.graceMs) {
        report.keptChanged++;
        continue;
      }
      try {
        await store.inner.delete(item.key, { ...(conditional ? { ifMatch: meta.etag } : {}), signal: ctx.signal });
        report.deleted++;
        report.deletedBytes += meta.size;
      } catch (e) {
        if (!isCloudmuxError(e, 'PreconditionFailed')) throw e;
        report.keptChanged++;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(ctx.concurrency, doomed.length)) }, worker));
}
