import { PRIORITY_CLASSES, type PriorityClass, type PriorityClassifier } from '../core/priority.js';
import type { ActionOutcome } from './executor.js';
import type { SkippedPath } from './local-tree.js';
import type { QueuedChange } from './sync-state.js';
import type { PathFacts, SyncAction, SyncActionKind } from './types.js';

/** Actions that move file content over the link (held on a metered one unless critical). */
export const MOVING_KINDS: ReadonlySet<SyncActionKind> = new Set(['upload', 'download', 'keep-both', 'local-wins', 'remote-wins', 'merge']);

/** Files and bytes still to move, per priority class. */
export type ClassBacklog = Record<PriorityClass, { files: number; bytes: number }>;

export function emptyClassBacklog(): ClassBacklog {
  return Object.fromEntries(PRIORITY_CLASSES.map((c) => [c, { files: 0, bytes: 0 }])) as ClassBacklog;
}

/** Bytes an action moves over the link (0 for deletes, records, server-side copies, local moves). */
export function bytesOf(a: SyncAction, f: PathFacts | undefined): number {
  switch (a.kind) {
    case 'upload':
      return f?.local?.size ?? 0;
    case 'download':
      return f?.remote?.size ?? 0;
    case 'keep-both': case 'local-wins': case 'remote-wins': case 'merge':
      return (f?.local?.size ?? 0) + (f?.remote?.size ?? 0);
    default:
      return 0;
  }
}

/** The class of an action, by its path and the size of what moves (the local file for an upload, the remote one for a download). */
export function classOf(a: SyncAction, f: PathFacts | undefined, classifier: PriorityClassifier): PriorityClass {
  const size = a.kind === 'upload' ? f?.local?.size : a.kind === 'download' ? f?.remote?.size : Math.max(f?.local?.size ?? 0, f?.remote?.size ?? 0);
  return classifier.classify({ key: a.path, size: size ?? 0 });
}

/**
 * What a round leaves to move: every content-moving action it decided (including those held on a
 * metered link) that did not end `done`, counted by class. A dry run leaves all of them.
 */
export function roundBacklog(decided: readonly SyncAction[], outcomes: readonly ActionOutcome[], facts: ReadonlyMap<string, PathFacts>, classifier: PriorityClassifier): ClassBacklog {
  const done = new Set(outcomes.filter((o) => o.result === 'done').map((o) => o.action));
  const out = emptyClassBacklog();
  for (const a of decided) {
    if (!MOVING_KINDS.has(a.kind) || done.has(a)) continue;
    const f = facts.get(a.path);
    const c = out[classOf(a, f, classifier)];
    c.files++;
    c.bytes += bytesOf(a, f);
  }
  return out;
}

/** While the remote cannot be reached: the local changes queued for upload (deletes move no content), by class. */
export function queuedBacklog(queue: ReadonlyMap<string, QueuedChange>, classifier: PriorityClassifier): ClassBacklog {
  const out = emptyClassBacklog();
  for (const q of queue.values()) {
    if (q.size === null) continue;
    const c = out[classifier.classify({ key: q.path, size: q.size })];
    c.files++;
    c.bytes += q.size;
  }
  return out;
}

/**
 * On a metered link, actions that move bytes for a path not of the critical class wait (into
 * `skipped`, reason `metered`): the local change stays queued, nothing is recorded, and the
 * next round on an unmetered link moves it. Deletes, records and renames move no content and go
 * ahead, and so does a fetch the user asked for (`fetching`).
 */
export function holdOnMeteredLink(actions: SyncAction[], facts: ReadonlyMap<string, PathFacts>, skipped: SkippedPath[], classifier: PriorityClassifier, fetching: ReadonlySet<string>): SyncAction[] {
  return actions.filter((a) => {
    if (!MOVING_KINDS.has(a.kind) || fetching.has(a.path)) return true;
    const cls = classOf(a, facts.get(a.path), classifier);
    if (cls === 'critical') return true;
    skipped.push({ path: a.path, reason: 'metered', detail: `${cls} class waits for an unmetered link` });
    return false;
  });
}
