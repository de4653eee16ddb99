import { compareKeys } from '../../core/index.js';
import type { BlobStore, ObjectSummary } from '../../core/index.js';
import { keyFilter, listResumable, mergeListings } from '../plan.js';
import type { MigrationEvent } from './summary.js';

/** One key of the plan, in UTF-8 byte order. */
export interface PlanEntry {
  key: string;
  /**
   * `reconcile`: a source object in scope (compare, copy if it differs); `extra`: only at the
   * destination, in scope (left alone, counted); `skip`: out of scope (still passes in order, so a
   * cursor can move past it).
   */
  action: 'reconcile' | 'extra' | 'skip';
  src?: ObjectSummary;
  dst?: ObjectSummary;
}

export interface PlanOptions {
  include?: readonly string[];
  exclude?: readonly string[];
  /** List keys after this one (exclusive). */
  startAfter?: string;
  /** List keys up to this one (inclusive); undefined: to the end. */
  end?: string;
  signal?: AbortSignal;
  /** `listed` events for source objects in scope, as the source listing yields them. */
  emit?(e: MigrationEvent): void;
  pageSize?: number;
}

/**
 * The plan stage: lists source and destination over the same key range concurrently, filters
 * (include/exclude globs), and merge-joins them into one ordered stream of {@link PlanEntry}.
 * Memory is bounded by the listings' prefetch depth, never by the bucket size. Comparing the two
 * sides of a key is the copy stage's first step (it may read), not the plan's.
 */
export async function* planMigration(src: BlobStore, dst: BlobStore, opts: PlanOptions = {}): AsyncGenerator<PlanEntry> {
  const wanted = keyFilter(opts.include, opts.exclude);
  const emit = opts.emit ?? (() => {});
  const bounded = (store: BlobStore): AsyncIterable<ObjectSummary> =>
    upTo(listResumable(store, { startAfter: opts.startAfter, signal: opts.signal, pageSize: opts.pageSize }), opts.end);
  const srcList = keep(bounded(src), (o) => {
    if (!wanted(o.key)) return false;
    emit({ type: 'listed', key: o.key, size: o.size });
    return true;
  });
  for await (const entry of mergeListings(srcList, bounded(dst))) {
    const inScope = wanted(entry.key);
    const action = entry.src && inScope ? 'reconcile' : !entry.src && entry.dst && inScope ? 'extra' : 'skip';
    yield { ...entry, action };
  }
}

/** Passes through the objects `accept` accepts. */
async function* keep(source: AsyncIterable<ObjectSummary>, accept: (o: ObjectSummary) => boolean): AsyncGenerator<ObjectSummary> {
  for await (const o of source) if (accept(o)) yield o;
}

/** Stops a listing after `end` (inclusive), closing it (no further pages are fetched). */
async function* upTo(source: AsyncIterable<ObjectSummary>, end: string | undefined): AsyncGenerator<ObjectSummary> {
  for await (const o of source) {
    if (end !== undefined && compareKeys(o.key, end) > 0) return;
    yield o;
  }
}
