/** AzureStore's copy (Copy Blob, also from another container of the account) and metadata update. */
import { NotFoundError, PreconditionFailedError, SHA256_KEY, TransientError, isCloudmuxError, throwIfAborted, validateKey, validateMetadata } from '../../src/core/index.js';
import type { CopyOptions, ObjectMeta, UpdateMetadataOptions } from '../../src/core/index.js';
import { DEFAULT_CONTENT_TYPE, PROVIDER } from './config.js';
import { type AzureStore, type BlobPropsLike, unquote } from './store.js';

export async function copyFrom(s: AzureStore, from: AzureStore, src: string, dst: string, opts: CopyOptions): Promise<ObjectMeta> {
  const signal = opts.signal;
  // The source's own client: its URL carries the source's SAS when it has one.
  const source = from.container.getBlobClient(from.blobName(src));
  const target = s.container.getBlockBlobClient(s.blobName(dst));
  let props: BlobPropsLike;
  try {
    props = await source.getProperties({ abortSignal: signal });
  } catch (e) {
    throw from.mapError(e, src, signal);
  }
  if (opts.sourceIfMatch !== undefined && unquote(props.etag) !== unquote(opts.sourceIfMatch)) {
    throw new PreconditionFailedError(`source etag is ${unquote(props.etag)}, not ${opts.sourceIfMatch}`, { provider: PROVIDER, key: src });
  }
  const sha = props.metadata?.[SHA256_KEY];
  const metadata = opts.metadata ? { ...opts.metadata, ...(sha ? { [SHA256_KEY]: sha } : {}) } : undefined;
  let copyId: string | undefined;
  try {
    const poller = await target.beginCopyFromURL(source.url, {
      metadata,
      conditions: opts.ifNoneMatch === '*' ? { ifNoneMatch: '*' } : undefined,
      // Pin the version whose properties were just read, so the copy and its metadata agree.
      sourceConditions: { ifMatch: props.etag },
      intervalInMs: s.config.copyPollIntervalMs,
      abortSignal: signal,
    });
    copyId = (poller.getOperationState() as { copyId?: string }).copyId;
    const done = await poller.pollUntilDone();
    if (done.copyStatus !== 'success') {
      throw new TransientError(`server-side copy of ${src} to ${dst} ended ${done.copyStatus ?? 'without a status'}`, { provider: PROVIDER, key: dst });
    }
    let etag = done.etag;
    const wantType = opts.metadata ? (opts.contentType ?? DEFAULT_CONTENT_TYPE) : (opts.contentType ?? props.contentType ?? DEFAULT_CONTENT_TYPE);
    if (wantType !== (props.contentType ?? DEFAULT_CONTENT_TYPE)) {
      const res = await target.setHTTPHeaders(s.httpHeaders(props, wantType), { conditions: etag ? { ifMatch: etag } : undefined, abortSignal: signal });
      etag = res.etag;
    }
    const after = await target.getProperties({ abortSignal: signal });
    return s.metaFrom(dst, after);
  } catch (e) {
    if (signal?.aborted && copyId) await target.abortCopyFromURL(copyId).catch(() => undefined);
    const err = s.mapError(e, dst, signal);
    if (err.code === 'PreconditionFailed' && err.providerCode === 'SourceConditionNotMet' && opts.sourceIfMatch === undefined) {
      throw new TransientError(`${src} changed while being copied; retry`, { provider: PROVIDER, key: src, cause: err });
    }
    if (err.code === 'NotFound' && !isCloudmuxError(e)) throw new NotFoundError(`no object at ${src}`, { provider: PROVIDER, key: src, cause: err });
    throw err;
  }
}

export async function updateMetadata(s: AzureStore, key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
  validateKey(key, PROVIDER);
  validateMetadata(opts.metadata, PROVIDER, key);
  throwIfAborted(opts.signal, { provider: PROVIDER, key });
  const client = s.container.getBlobClient(s.blobName(key));
  const signal = opts.signal;
  try {
    for (let attempt = 0; ; attempt++) {
      const props = await client.getProperties({ abortSignal: signal });
      if (opts.ifMatch !== undefined && unquote(props.etag) !== unquote(opts.ifMatch)) {
        throw new PreconditionFailedError(`etag is ${unquote(props.etag)}, not ${opts.ifMatch}`, { provider: PROVIDER, key });
      }
      const sha = props.metadata?.[SHA256_KEY];
      const metadata: Record<string, string> = { ...(sha ? { [SHA256_KEY]: sha } : {}), ...opts.metadata };
      try {
        // Set Blob Metadata changes the etag; the condition keeps it from landing on a newer version than the one read.
        let res: { etag?: string; lastModified?: Date; versionId?: string } = await client.setMetadata(metadata, { conditions: { ifMatch: props.etag }, abortSignal: signal });
        const contentType = opts.contentType ?? props.contentType ?? DEFAULT_CONTENT_TYPE;
        if (contentType !== (props.contentType ?? DEFAULT_CONTENT_TYPE)) {
          res = await client.setHTTPHeaders(s.httpHeaders(props, contentType), { conditions: res.etag ? { ifMatch: res.etag } : undefined, abortSignal: signal });
        }
        return s.metaFrom(key, { ...props, metadata, contentType, etag: res.etag ?? props.etag, lastModified: res.lastModified ?? props.lastModified, versionId: res.versionId ?? props.versionId });
      } catch (e) {
        const err = s.mapError(e, key, signal);
        // Someone else rewrote it between our read and write; without a caller condition, read again.
        if (err.code === 'PreconditionFailed' && opts.ifMatch === undefined && attempt < 2) continue;
        throw err;
      }
    }
  } catch (e) {
    throw s.mapError(e, key, signal);
  }
}
