/** One committed operation of the writer, in its commit order. */
export type WriterOp = { op: 'put'; key: string; sha256: string } | { op: 'delete'; key: string };

/** What reading each key gave at the end: its SHA-256, absent, or an error code. */
export type FinalRead = { sha256: string } | { absent: true } | { error: string };

/**
 * The invariant a GC racing writers must keep, over the whole history: every key reads back as
 * its last committed operation left it (the bytes of its last put, or absent after a delete), and
 * no read during the run failed for a missing or altered chunk. Returns the violations.
 */
export function checkRace(history: readonly WriterOp[], final: ReadonlyMap<string, FinalRead>, midRunFailures: readonly string[]): string[] {
  const out = midRunFailures.map((f) => `read during the run failed: ${f}`);
  const last = new Map<string, WriterOp>();
  for (const op of history) last.set(op.key, op);
  for (const [key, op] of last) {
    const got = final.get(key);
    if (!got) out.push(`${key}: not read at the end`);
    else if ('error' in got) out.push(`${key}: read failed with ${got.error} (its last op was ${op.op})`);
    else if (op.op === 'delete' && !('absent' in got)) out.push(`${key}: deleted, but still there`);
    else if (op.op === 'put' && ('absent' in got || got.sha256 !== op.sha256)) out.push(`${key}: last put ${op.sha256.slice(0, 12)}, read ${'absent' in got ? 'nothing' : got.sha256.slice(0, 12)}`);
  }
  return out;
}
