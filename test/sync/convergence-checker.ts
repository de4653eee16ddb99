/**
 * The invariant of two-way sync, checked over a recorded history: after healing and quiet rounds,
 * every device and the remote hold the same tree, nothing in it was invented or corrupted, and
 * every version any device wrote is either in that tree (the winner, or a conflict copy), in the
 * versions area, or superseded by a later write or delete made by a device that had seen it.
 */

/** One change a device made to its own directory (not a change sync made). */
export interface DeviceWrite {
  seq: number;
  device: string;
  round: number;
  op: 'create' | 'edit' | 'delete' | 'rename';
  /** The path changed (the destination of a rename). */
  path: string;
  /** Rename source. */
  from?: string;
  /** SHA-256 of the content now at `path` (absent for a delete). */
  sha?: string;
  /** SHA-256 of the content the device replaced or removed (edit, delete: at `path`; rename: at `from`). */
  prevSha?: string;
}

export interface FinalState {
  /** device → (path → sha256) */
  devices: Map<string, Map<string, string>>;
  remote: Map<string, string>;
  /** SHA-256 of every object in the versions area. */
  versions: Set<string>;
}

function describeTree(t: Map<string, string>): string {
  return [...t].map(([p, s]) => `${p}=${s.slice(0, 8)}`).join(', ');
}

/** Every violation of the invariant, as a sentence; empty when the history is sound. */
export function checkConvergence(history: readonly DeviceWrite[], final: FinalState): string[] {
  const problems: string[] = [];
  const remoteDesc = describeTree(final.remote);
  for (const [device, tree] of final.devices) {
    if (describeTree(tree) !== remoteDesc) problems.push(`device ${device} differs from the remote: [${describeTree(tree)}] vs [${remoteDesc}]`);
  }
  const written = new Set(history.flatMap((w) => (w.sha ? [w.sha] : [])));
  for (const [path, sha] of final.remote) {
    if (!written.has(sha)) problems.push(`remote ${path} holds content no device wrote (${sha.slice(0, 12)})`);
  }
  const present = new Set(final.remote.values());
  for (const w of history) {
    if (w.sha === undefined || w.op === 'rename') continue; // a rename writes no new version
    if (present.has(w.sha) || final.versions.has(w.sha)) continue;
    const superseded = history.some((later) => later.seq > w.seq && later.prevSha === w.sha);
    if (!superseded) {
      problems.push(`lost: ${w.op} of ${w.path} by ${w.device} in round ${w.round} (${w.sha.slice(0, 12)}) is in no tree, not in the versions area, and no device that saw it replaced or deleted it`);
    }
  }
  return problems;
}
