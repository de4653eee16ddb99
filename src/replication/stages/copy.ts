import { copyFromStoreOf, describeError, headIfExists, isCloudmuxError, isRetryable, resumableUploads, throwIfAborted } from '../../core/index.js';
import type { BlobStore, ObjectMeta, ObjectSummary } from '../../core/index.js';
import { copyObject, type ChecksumMode } from '../copier.js';
import { backoff, compareObjects } from '../plan.js';
import { resumableCopy } from '../resumable-copy.js';
import type { ObjectRecorder } from './record.js';
import type { MigrationEvent } from './summary.js';
import { recordedProof, removeVerifiedSource } from './verify.js';

/** What the copy stage needs to know about the run; the same for a local run and a job worker. */
export interface CopyStageContext {
  src: BlobStore;
  dst: BlobStore;
  /** What proves a copy (never `size-only` with deleteSource: see migrate). */
  mode: ChecksumMode;
  retries: number;
  dryRun: boolean;
  deleteSource: boolean;
  recorder: ObjectRecorder;
  emit(e: MigrationEvent): void;
  /** Objects larger than this use the destination's resumable uploads; false: never; undefined: its multipart threshold. */
  resumableThreshold?: number | false;
  partConcurrency?: number;
  /** Every error an attempt of an object ends with (before it is retried or reported): adaptive concurrency reads throttles here. */
  onAttemptError?(key: string, error: unknown): void;
}

/** A source object in scope and what the destination listed under its key. */
export interface CopyItem {
  key: string;
  src: ObjectSummary;
  dst?: ObjectSummary;
}

/**
 * The copy stage for one object: compares it with the destination (an earlier record of a
 * verified copy counts as proof when the verify stage accepts it), copies it when it is missing or
 * differs (the copier verifies each copy before it returns), hands every fact to the recorder and
 * every outcome to `emit`, and removes the source when asked, after verification.
 *
 * Failures of the object are retried (`retries`; Throttled/Transient/IntegrityError, and a source
 * or destination that changed under the compare or copy is looked at afresh), then reported as a
 * `failed` outcome. Only an abort of `signal` throws.
 */
export async function copyStage(item: CopyItem, ctx: CopyStageContext, runSignal?: AbortSignal): Promise<'ok' | 'failed'> {
  // An object's requests listen on a signal of its own that follows the run's (AbortSignal.any
  // adds no listener to its source): `concurrency` objects with their requests in flight, all on
  // the run's one signal, were more listeners than Node allows before MaxListenersExceededWarning.
  const signal = runSignal && AbortSignal.any([runSignal]);
  const { src, dst, mode, recorder, emit } = ctx;
  const key = item.key;
  let srcEtag = item.src.etag;
  let srcSize = item.src.size;
  let compareWith = item.dst;
  for (let attempt = 0; ; attempt++) {
    try {
      throwIfAborted(signal);
      if (compareWith) {
        const known = await recorder.known(key);
        let identicalBy = recordedProof(known, srcEtag, srcSize, compareWith.etag, mode);
        let sha256 = identicalBy !== undefined ? known?.sha256 ?? undefined : undefined;
        if (identicalBy === undefined) {
          const cmp = await compareObjects(src, { ...item.src, etag: srcEtag, size: srcSize }, dst, compareWith, mode, signal);
          if (cmp.same) {
            identicalBy = cmp.by;
            sha256 = cmp.srcSha256;
            await recorder.record({ type: 'verified', key, size: srcSize, srcEtag, dstEtag: compareWith.etag, sha256: cmp.srcSha256, verifiedBy: cmp.by, mode, copied: false });
          }
        }
        if (identicalBy !== undefined) {
          emit({ type: 'object', key, outcome: 'identical', size: srcSize, bytes: 0, verifiedBy: identicalBy });
          if (ctx.deleteSource && !ctx.dryRun && await removeVerifiedSource(src, key, { etag: srcEtag, sha256 }, identicalBy, recorder, signal)) {
            emit({ type: 'source-deleted', key });
          }
          return 'ok';
        }
      }
      if (ctx.dryRun) {
        emit({ type: 'object', key, outcome: 'would-copy', size: srcSize, bytes: 0, reason: compareWith ? 'differs' : 'missing' });
        return 'ok';
      }
      emit({ type: 'start', key, size: srcSize });
      await recorder.record({ type: 'copying', key, size: srcSize, srcEtag });
      let moved = 0;
      const onProgress = (n: number): void => {
        moved += n;
        emit({ type: 'progress', bytes: n });
      };
      const resumable = resumableTarget(ctx, srcSize);
      const r = resumable
        ? await resumableCopy(src, key, resumable, {
          signal, sourceEtag: srcEtag, verify: mode, journal: recorder.uploads, partConcurrency: ctx.partConcurrency, onProgress,
          onPart: (p) => emit({ type: 'part', ...p }),
          onResume: (x) => emit({ type: 'upload-resumed', ...x }),
        })
        : await copyObject(src, key, dst, key, { signal, sourceEtag: srcEtag, verify: mode, onProgress });
      await recorder.record({ type: 'verified', key, size: r.bytes, srcEtag, dstEtag: r.meta.etag, sha256: r.sha256, verifiedBy: r.verifiedBy, mode, copied: true });
      emit({ type: 'object', key, outcome: 'copied', size: r.bytes, bytes: moved, verifiedBy: r.verifiedBy });
      if (ctx.deleteSource && await removeVerifiedSource(src, key, { etag: srcEtag, sha256: r.sha256 }, r.verifiedBy, recorder, signal)) {
        emit({ type: 'source-deleted', key });
      }
      return 'ok';
    } catch (e) {
      if (signal?.aborted) throw e;
      ctx.onAttemptError?.(key, e);
      // The source changed or vanished since it was listed: look again and go on with what is there now.
      if (isCloudmuxError(e, 'PreconditionFailed') || isCloudmuxError(e, 'NotFound')) {
        const now: ObjectMeta | unknown = await src.head(key, { signal }).catch((h: unknown) => h);
        if (isCloudmuxError(now, 'NotFound')) {
          emit({ type: 'object', key, outcome: 'vanished', size: srcSize, bytes: 0, reason: 'deleted from the source during the run' });
          return 'ok';
        }
        if (!(now instanceof Error) && now !== null && typeof now === 'object') {
          const meta = now as ObjectMeta;
          const changed = meta.etag !== srcEtag;
          srcEtag = meta.etag;
          srcSize = meta.size;
          // The destination may have been the one that changed: compare afresh.
          if (compareWith && !changed) compareWith = await headSummary(dst, key, signal);
          if (attempt < ctx.retries) {
            emit({ type: 'retry', key, attempt: attempt + 1, reason: changed ? 'source changed during the copy' : describeError(e, { where: false, maxLength: 500 }) });
            if (!changed) await backoff(attempt + 1, e, signal);
            continue;
          }
        }
      }
      const retryable = isRetryable(e) || isCloudmuxError(e, 'IntegrityError');
      if (retryable && attempt < ctx.retries) {
        emit({ type: 'retry', key, attempt: attempt + 1, reason: describeError(e, { where: false, maxLength: 500 }) });
        await backoff(attempt + 1, e, signal);
        continue;
      }
      const reason = describeError(e, { where: false, maxLength: 500 });
      await recorder.record({ type: 'failed', key, srcEtag, reason });
      emit({ type: 'object', key, outcome: 'failed', size: srcSize, bytes: 0, reason });
      return 'failed';
    }
  }
}

/** The destination's resumable uploads when an object of `size` should use them (a streamed copy between two stores, above the threshold). */
function resumableTarget(ctx: CopyStageContext, size: number): ReturnType<typeof resumableUploads> {
  const { src, dst } = ctx;
  if (ctx.resumableThreshold === false || src === dst || copyFromStoreOf(dst, src)) return undefined;
  const r = resumableUploads(dst);
  if (!r) return undefined;
  return size > (ctx.resumableThreshold ?? r.multipartThreshold) ? r : undefined;
}

async function headSummary(store: BlobStore, key: string, signal: AbortSignal | undefined): Promise<ObjectSummary | undefined> {
  const m = await headIfExists(store, key, { signal });
  return m && { key, size: m.size, etag: m.etag, lastModified: m.lastModified, checksums: m.checksums };
}

