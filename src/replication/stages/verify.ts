import { IntegrityError, deleteIfUnchanged } from '../../core/index.js';
import type { BlobStore } from '../../core/index.js';
import { provesUnder, type ChecksumMode } from '../copier.js';
import type { JournalEntry } from '../journal.js';
import type { ObjectRecorder } from './record.js';

/**
 * The verify stage's reading of an earlier record: the proof it holds for the source version
 * `srcEtag` (of `size` bytes) being at the destination as `dstEtag`, as `journal:<how>`, or
 * undefined when it proves nothing here. A record is proof only of what its own check proved: a
 * size-only record is no proof to a run that compares digests (issue 14: it once let
 * --delete-source delete the only copy).
 */
export function recordedProof(known: JournalEntry | undefined, srcEtag: string, size: number, dstEtag: string, mode: ChecksumMode): string | undefined {
  if (!known || known.state !== 'verified' || known.srcEtag !== srcEtag || known.dstEtag !== dstEtag || known.size !== size) return undefined;
  if (known.verifiedBy === null || !provesUnder(known.verifiedBy, mode)) return undefined;
  return `journal:${known.verifiedBy}`;
}

/**
 * Deletes the source version `expected` of `key`, proven at the destination by `proof`
 * (--delete-source). Sizes alone never delete a source, whatever led here. The fact that proved the
 * copy is made durable first (the only other copy of the bytes is about to go); the delete is
 * conditional on the version (see deleteIfUnchanged). Returns false when the source changed since
 * (nothing deleted), throws PreconditionFailed when the store says so.
 */
export async function removeVerifiedSource(
  src: BlobStore, key: string, expected: { etag: string; sha256?: string }, proof: string, recorder: ObjectRecorder, signal?: AbortSignal,
): Promise<boolean> {
  if (!provesUnder(proof, 'auto')) throw new IntegrityError(`not deleted: the copy was proven by ${proof}, not by a digest`, { provider: src.provider, key });
  await recorder.durable();
  if (!(await deleteIfUnchanged(src, key, expected, { signal }))) return false;
  await recorder.record({ type: 'source-deleted', key, srcEtag: expected.etag });
  return true;
}
