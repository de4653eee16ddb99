/** GcsStore's copy and metadata update: objects.rewrite (also across buckets), generation-pinned patches. */
import type { File, FileMetadata } from '@google-cloud/storage';
import { AlreadyExistsError, NotFoundError, PreconditionFailedError, ProviderError, SHA256_KEY, throwIfAborted, validateKey, validateMetadata } from '../../src/core/index.js';
import type { CopyOptions, ObjectMeta, UpdateMetadataOptions } from '../../src/core/index.js';
import { checksumsOf, type GcsObjectResource } from './checksums.js';
import { PROVIDER, type ResolvedGcsOptions } from './config.js';
import { mapGcsError } from './errors.js';
import type { GcsStore } from './store.js';
import { etagOf, parseEtag, stringMap } from './resource.js';

/** The SDK's authenticated JSON request, for API calls it wraps awkwardly (rewrite with constant preconditions). */
export function requestJson<T>(file: File, reqOpts: { method: string; uri: string; qs: Record<string, string>; json: unknown }): Promise<T> {
  return new Promise((resolve, reject) => {
    file.request(reqOpts, (err, body) => {
      if (err) reject(err);
      else resolve(body as T);
    });
  });
}

/**
 * Whether two stores act as the same principal, as far as can be told without I/O: the same
 * caller-built Storage, or neither has one and both use the same key file and service account
 * (or both the SDK's ambient chain).
 */
export function sameGcsPrincipal(a: ResolvedGcsOptions, b: ResolvedGcsOptions): boolean {
  if (a.storage !== undefined || b.storage !== undefined) return a.storage === b.storage;
  return a.keyFilename === b.keyFilename && a.credentials?.client_email === b.credentials?.client_email;
}

export async function copyFrom(s: GcsStore, from: GcsStore, src: string, dst: string, opts: CopyOptions): Promise<ObjectMeta> {
  const ctx = s.ctx('copy', dst, opts.signal, opts.ifNoneMatch === '*');
  const query: Record<string, string> = {};
  if (opts.ifNoneMatch === '*') query.ifGenerationMatch = '0';
  if (opts.sourceIfMatch !== undefined) {
    const parts = parseEtag(opts.sourceIfMatch);
    if (!parts) {
      await from.resource(src, from.ctx('copy', src, opts.signal));
      throw new PreconditionFailedError(`gcs copy ${src}: source etag is not ${opts.sourceIfMatch}`, { provider: PROVIDER, key: src });
    }
    query.ifSourceGenerationMatch = parts.generation;
    if (parts.metageneration !== undefined) query.ifSourceMetagenerationMatch = parts.metageneration;
  }
  let body: Record<string, unknown> = {};
  if (opts.metadata !== undefined || opts.contentType !== undefined) {
    // Replacing: send the whole destination state, keeping the source's SHA-256 with its bytes.
    const source = await from.resource(src, from.ctx('copy', src, opts.signal));
    const sha = checksumsOf(source).sha256;
    const metadata = opts.metadata !== undefined ? { ...opts.metadata, ...(sha ? { [SHA256_KEY]: sha } : {}) } : stringMap(source.metadata);
    const contentType = opts.metadata !== undefined ? (opts.contentType ?? 'application/octet-stream') : (opts.contentType ?? source.contentType);
    body = { contentType, metadata };
    query.ifSourceGenerationMatch ??= String(source.generation);
  }
  // This store's client (its credentials) on the source's bucket: the rewrite is sent as this store.
  const srcFile = from === s ? s.file(src) : s.storage.bucket(from.options.bucket).file(from.name(src));
  const path = `/rewriteTo/b/${encodeURIComponent(s.options.bucket)}/o/${encodeURIComponent(s.name(dst))}`;
  try {
    // Large or cross-location rewrites answer with a token until done; every call repeats the request.
    for (let token: string | undefined; ;) {
      throwIfAborted(opts.signal, { provider: PROVIDER, key: dst });
      const res = await requestJson<{ done?: boolean; rewriteToken?: string; resource?: GcsObjectResource }>(srcFile, {
        method: 'POST', uri: path, qs: { ...query, ...(token ? { rewriteToken: token } : {}) }, json: body,
      });
      if (res.done && res.resource) return s.toMeta(dst, res.resource);
      if (!res.rewriteToken) throw new ProviderError(`gcs copy ${src}: rewrite answered neither done nor a rewriteToken`, { provider: PROVIDER, key: dst });
      token = res.rewriteToken;
    }
  } catch (e) {
    const mapped = mapGcsError(e, { ...ctx, createOnly: false });
    if (mapped.code === 'NotFound') throw new NotFoundError(`gcs copy: no object at ${src}`, { provider: PROVIDER, key: src, cause: mapped });
    if (mapped.code === 'PreconditionFailed') {
      if (opts.ifNoneMatch === '*' && (await s.exists(dst, ctx))) throw new AlreadyExistsError(`gcs copy: ${dst} already exists`, { provider: PROVIDER, key: dst, cause: mapped });
      throw new PreconditionFailedError(`gcs copy ${src}: source etag is not ${opts.sourceIfMatch ?? 'what it was'}`, { provider: PROVIDER, key: src, cause: mapped });
    }
    throw mapped;
  }
}

/**
 * Replaces the user metadata with a patch that nulls removed keys, conditional on the generation
 * and metageneration just read; a concurrent change without `ifMatch` is re-read and re-applied.
 */
export async function updateMetadata(s: GcsStore, key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
  validateKey(key, PROVIDER);
  validateMetadata(opts.metadata, PROVIDER, key);
  throwIfAborted(opts.signal, { provider: PROVIDER, key });
  const ctx = s.ctx('updateMetadata', key, opts.signal);
  for (let attempt = 0; ; attempt++) {
    const current = await s.resource(key, ctx);
    const etag = etagOf(current);
    if (opts.ifMatch !== undefined && opts.ifMatch !== etag) {
      throw new PreconditionFailedError(`gcs updateMetadata ${key}: etag is ${etag}, not ${opts.ifMatch}`, { provider: PROVIDER, key });
    }
    const sha = checksumsOf(current).sha256;
    const next: Record<string, string | null> = { ...(sha ? { [SHA256_KEY]: sha } : {}), ...opts.metadata };
    for (const k of Object.keys(current.metadata ?? {})) if (!(k in next)) next[k] = null;
    try {
      const [patched] = await s.file(key).setMetadata(
        { metadata: next, ...(opts.contentType !== undefined ? { contentType: opts.contentType } : {}) } as FileMetadata,
        { ifGenerationMatch: String(current.generation), ifMetagenerationMatch: String(current.metageneration) },
      );
      return s.toMeta(key, patched as GcsObjectResource);
    } catch (e) {
      const mapped = mapGcsError(e, ctx);
      if (mapped.code === 'PreconditionFailed' && opts.ifMatch === undefined && attempt < 4) continue;
      throw mapped;
    }
  }
}
