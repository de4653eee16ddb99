import { compareKeys } from '../core/keys.js';
import type { ConflictPolicy, PathFacts, SyncAction, SyncCase } from './types.js';

/** What a decision needs besides the facts: who we are and how stamps order. Pure data and functions. */
export interface DecideContext {
  /** This device's id (breaks `newest` ties against the remote writer's id). */
  device: string;
  /** Total order of HLC stamps (the hlc module's compare). */
  compareStamps(a: string, b: string): number;
  /** True when a stamp may win `newest` (well-formed, not too far ahead of this device's clock). */
  trusts(stamp: string): boolean;
  /** The conflict policy for a path (per-glob rules). */
  policyFor(path: string): ConflictPolicy;
}

/**
 * The three-way reconciliation of one path: base, local now, remote now → one action. Pure: no
 * I/O, no clock; every row of the case table is a unit test.
 *
 * Sides are compared by content (SHA-256 of the plaintext), never by time: a side "changed" when
 * its bytes differ from the base's (existence included). An etag or mtime that moved without a
 * content change is not a change.
 */
export function decide(facts: PathFacts, ctx: DecideContext): SyncAction {
  const { path, base, local, remote } = facts;
  const act = (kind: 'none' | 'record' | 'forget' | 'download' | 'delete-local', c: SyncCase): SyncAction => ({ kind, path, case: c }) as SyncAction;

  if (!base) {
    if (!local && !remote) return act('none', 'absent');
    if (local && !remote) return { kind: 'upload', path, case: 'local-created' };
    if (!local && remote) return act('download', 'remote-created');
    if (local!.sha256 === remote!.sha256) return act('record', 'both-created-same');
    return conflict(facts, 'both-created-differ', ctx);
  }

  const localChanged = local !== undefined && local.sha256 !== base.sha256;
  const remoteChanged = remote !== undefined && remote.sha256 !== base.sha256;

  if (!local && !remote) return act('forget', 'both-deleted');
  if (!local) {
    // Deleted here: delete there if it is still the base, else the remote change wins.
    return remoteChanged ? act('download', 'local-deleted-remote-changed') : { kind: 'delete-remote', path, case: 'local-deleted', ifMatch: remote!.etag };
  }
  if (!remote) {
    return localChanged ? { kind: 'upload', path, case: 'local-changed-remote-deleted' } : act('delete-local', 'remote-deleted');
  }
  if (!localChanged && !remoteChanged) return act('none', 'unchanged');
  if (localChanged && !remoteChanged) return { kind: 'upload', path, case: 'local-changed', ifMatch: remote.etag };
  if (!localChanged && remoteChanged) return act('download', 'remote-changed');
  if (local.sha256 === remote.sha256) return act('record', 'both-changed-same');
  return conflict(facts, 'both-changed-differ', ctx);
}

/** Both sides hold different new bytes: the path's policy decides. */
function conflict(facts: PathFacts, c: SyncCase, ctx: DecideContext): SyncAction {
  const { path, local, remote } = facts;
  const policy = ctx.policyFor(path);
  switch (policy.kind) {
    case 'keep-both':
      return { kind: 'keep-both', path, case: c, policy: policy.kind };
    case 'local':
      return { kind: 'local-wins', path, case: c, ifMatch: remote!.etag, policy: policy.kind };
    case 'remote':
      return { kind: 'remote-wins', path, case: c, policy: policy.kind };
    case 'merge':
      return { kind: 'merge', path, case: c, merger: policy.merger };
    case 'newest': {
      // A stamp from a clock running ahead (or none: a foreign write) must not win: keep both.
      if (!ctx.trusts(local!.hlc) || !ctx.trusts(remote!.hlc)) return { kind: 'keep-both', path, case: c, policy: policy.kind };
      const byStamp = ctx.compareStamps(local!.hlc, remote!.hlc);
      const order = byStamp !== 0 ? byStamp : compareKeys(ctx.device, remote!.device);
      return order > 0
        ? { kind: 'local-wins', path, case: c, ifMatch: remote!.etag, policy: policy.kind }
        : { kind: 'remote-wins', path, case: c, policy: policy.kind };
    }
  }
}

/**
 * Renames within one round: a path deleted on one side whose base bytes appear, on that same side,
 * at a new path the other side does not have. A local rename becomes a server-side copy + delete
 * (no re-upload); a remote rename becomes a local move (no download). Pairs are matched one to one
 * by digest, in key order, so the result does not depend on the order of `actions`.
 */
export function pairRenames(actions: readonly SyncAction[], facts: ReadonlyMap<string, PathFacts>): SyncAction[] {
  const byPath = new Map(actions.map((a) => [a.path, a]));
  const sorted = [...actions].sort((a, b) => compareKeys(a.path, b.path));
  const pair = (fromCase: SyncCase, toCase: SyncCase, make: (from: SyncAction, to: SyncAction) => SyncAction): void => {
    const sources = new Map<string, SyncAction[]>();
    for (const a of sorted) {
      if (a.case !== fromCase) continue;
      const sha = facts.get(a.path)?.base?.sha256;
      if (sha === undefined) continue;
      const list = sources.get(sha) ?? [];
      list.push(a);
      sources.set(sha, list);
    }
    for (const a of sorted) {
      if (a.case !== toCase) continue;
      const f = facts.get(a.path);
      const sha = toCase === 'local-created' ? f?.local?.sha256 : f?.remote?.sha256;
      const from = sha === undefined ? undefined : sources.get(sha)?.shift();
      if (!from) continue;
      byPath.delete(from.path);
      byPath.set(a.path, make(from, a));
    }
  };
  pair('local-deleted', 'local-created', (from, to) => ({
    kind: 'rename-remote', path: to.path, from: from.path, case: 'renamed-locally', ifMatch: (from as { ifMatch: string }).ifMatch,
  }));
  pair('remote-deleted', 'remote-created', (from, to) => ({ kind: 'rename-local', path: to.path, from: from.path, case: 'renamed-remotely' }));
  return [...byPath.values()].sort((a, b) => compareKeys(a.path, b.path));
}
