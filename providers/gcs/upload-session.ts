/** GcsStore's resumable-session protocol: a streamed put chunk by chunk, a chunk's send and re-send, session status and cancel. */
import { PartSource, retryInPlace, uploadParts, IntegrityError, MultiHasher, ProviderError, SHA256_KEY, abortedError, checksumMismatches, throwIfAborted } from '../../src/core/index.js';
import type { Checksums, ObjectMeta, PutOptions } from '../../src/core/index.js';
import { googHashHeader, type GcsObjectResource } from './checksums.js';
import { PROVIDER } from './config.js';
import { GcsHttpError, mapGcsError, type GcsErrorContext } from './errors.js';
import type { SessionResponse } from './session.js';
import type { GcsStore, WriteConditions } from './store.js';

export function checkExpected(expected: Checksums | undefined, actual: Checksums, key: string): void {
  if (!expected) return;
  const bad = checksumMismatches(expected, actual);
  if (bad.length > 0) throw new IntegrityError(`gcs put ${key}: body ${bad.join(', ')} differs from the expected digest; nothing was written`, { provider: PROVIDER, key });
}

/** `Range: bytes=0-N` of a 308 answer as a byte count (no header: nothing persisted). */
export function persistedBytes(range: string | null | undefined): number {
  const m = range ? /bytes=0-(\d+)/.exec(range) : null;
  return m ? Number(m[1]) + 1 : 0;
}

export function httpError(res: SessionResponse): GcsHttpError {
  return GcsHttpError.from(res.status, res.text, res.header('retry-after'));
}

/** The parts after the first `skip` bytes (subarrays, no copies). */
export function skipBytes(parts: Buffer[], skip: number): Buffer[] {
  const out: Buffer[] = [];
  for (const p of parts) {
    if (skip >= p.byteLength) {
      skip -= p.byteLength;
      continue;
    }
    out.push(skip > 0 ? p.subarray(skip) : p);
    skip = 0;
  }
  return out;
}

export async function putResumable(s: GcsStore, 
  key: string, head: Buffer[], rest: AsyncIterator<Buffer>, opts: PutOptions, conditions: WriteConditions, ctx: GcsErrorContext,
): Promise<ObjectMeta> {
  const signal = opts.signal;
  const file = s.file(key);
  const [uri] = await file.createResumableUpload({
    metadata: { contentType: opts.contentType ?? 'application/octet-stream', metadata: { ...opts.metadata } },
    preconditionOpts: conditions,
  });
  // No MD5 here: crc32c in X-Goog-Hash lets GCS check the whole object, and MD5 would cost as
  // much CPU again as the SHA-256 cloudmux needs anyway (GCS still computes its own md5Hash).
  const hasher = new MultiHasher(['crc32c']);
  async function* chunks(): AsyncGenerator<Buffer> {
    // Shifted out so the already-read head is not pinned for the whole upload.
    for (let chunk = head.shift(); chunk !== undefined; chunk = head.shift()) yield chunk;
    for (;;) {
      const next = await rest.next();
      if (next.done) return;
      yield next.value;
    }
  }
  const chunkSize = s.options.chunkSize;
  const source = new PartSource(chunks(), { partSize: chunkSize, hasher, signal, provider: PROVIDER, key });
  try {
    // Through the part engine: chunks go in order, one on the wire while the next fills (memory
    // near two chunks), and the last one is held back: it commits the object, so it carries the
    // total size and the whole object's digests. The engine owns the re-sends (`chunkRetries`,
    // on the one backoff); a re-send first asks the session what it persisted and sends the rest.
    const { held } = await uploadParts<undefined, void>(source, async (part) => {
      await sendPart(s, uri, part.bytes, (part.number - 1) * chunkSize, undefined, undefined, { ...ctx, signal: part.signal }, part.attempt > 1);
    }, { concurrency: 1, holdLast: true, backoff: s.chunkBackoff, signal });
    throwIfAborted(signal, { provider: PROVIDER, key });
    const digests = hasher.digest();
    checkExpected(opts.expect, digests, key);
    const last = held ?? { number: 1, bytes: Buffer.alloc(0) };
    const offset = (last.number - 1) * chunkSize;
    const hash = googHashHeader(digests);
    const resource = (await retryInPlace(
      (attempt) => sendPart(s, uri, last.bytes, offset, offset + last.bytes.byteLength, hash, ctx, attempt > 1),
      { backoff: s.chunkBackoff, signal },
    ))!;
    return await attachSha256(s, key, resource, digests.sha256!);
  } catch (e) {
    await cancelSession(s, uri);
    throw e;
  } finally {
    await source.close();
  }
}

/**
 * Sends `data` as bytes `start…` of a resumable session (`total` set on the final chunk), for a
 * caller that retries: `resuming` (a re-send after a failed attempt) first asks the session what
 * it persisted and sends only the rest, or nothing when the upload already completed.
 */
export async function sendPart(s: GcsStore, uri: string, data: Buffer, start: number, total: number | undefined, hash: string | undefined, ctx: GcsErrorContext, resuming: boolean): Promise<GcsObjectResource | undefined> {
  let from = start;
  if (resuming) {
    const status = await querySession(s, uri, ctx).catch((e: unknown) => {
      throw mapGcsError(e, ctx);
    });
    if (status.resource) return total === undefined ? undefined : status.resource;
    if (status.persisted < start) throw new ProviderError(`gcs put ${ctx.key}: the upload session lost bytes it had acknowledged`, { provider: PROVIDER, key: ctx.key });
    from = Math.min(status.persisted, start + data.byteLength);
  }
  return sendChunk(s, uri, [data.subarray(from - start)], from, total, hash, ctx);
}

/**
 * Sends `data` as bytes `start…` of a resumable session (`total` set on the final chunk), in one
 * attempt: a 308 that persisted fewer bytes than sent is answered by sending the rest (progress,
 * not a retry), and any failure is thrown mapped. Whoever retries (the part engine, or the
 * caller of uploadPart/completeUpload) re-sends through {@link sendPart}, which asks the session
 * first. Returns the object resource once the upload is complete.
 */
export async function sendChunk(s: GcsStore, uri: string, data: Buffer[], start: number, total: number | undefined, hash: string | undefined, ctx: GcsErrorContext): Promise<GcsObjectResource | undefined> {
  const length = data.reduce((n, b) => n + b.byteLength, 0);
  let from = start;
  for (let rounds = 0; rounds < 1000; rounds++) {
    const rest = skipBytes(data, from - start);
    const restLength = start + length - from;
    try {
      const headers: Record<string, string> = {
        'Content-Range': restLength === 0 ? `bytes */${total ?? '*'}` : `bytes ${from}-${from + restLength - 1}/${total ?? '*'}`,
      };
      if (hash && total !== undefined) headers['X-Goog-Hash'] = hash;
      const res = await s.sessions.send(uri, 'PUT', headers, rest, ctx.signal);
      if (res.status === 308) {
        const persisted = persistedBytes(res.header('range'));
        if (total === undefined && persisted >= start + length) return undefined;
        if (persisted < start) throw new ProviderError(`gcs put ${ctx.key}: the upload session lost bytes it had acknowledged (has ${persisted}, expected ${start})`, { provider: PROVIDER, key: ctx.key });
        // Fewer bytes persisted than sent (or the final request did not complete): send the rest.
        from = persisted;
        continue;
      }
      if (res.status === 200 || res.status === 201) return total === undefined ? undefined : res.json<GcsObjectResource>();
      throw httpError(res);
    } catch (e) {
      if (ctx.signal?.aborted) throw abortedError(ctx.signal, { provider: PROVIDER, key: ctx.key });
      throw mapGcsError(e, ctx);
    }
  }
  throw new ProviderError(`gcs put ${ctx.key}: the upload session made no progress`, { provider: PROVIDER, key: ctx.key });
}

/** Asks a resumable session how many bytes it holds (or for the object, once complete). */
export async function querySession(s: GcsStore, uri: string, ctx: GcsErrorContext): Promise<{ persisted: number; resource?: GcsObjectResource }> {
  const res = await s.sessions.send(uri, 'PUT', { 'Content-Range': 'bytes */*' }, [], ctx.signal);
  if (res.status === 308) return { persisted: persistedBytes(res.header('range')) };
  if (res.status === 200 || res.status === 201) return { persisted: -1, resource: res.json<GcsObjectResource>() };
  throw httpError(res);
}

/** Best effort: a session that is not cancelled expires on its own after a week. */
export async function cancelSession(s: GcsStore, uri: string): Promise<void> {
  try {
    await s.sessions.send(uri, 'DELETE', {}, [], AbortSignal.timeout(10_000));
  } catch {
    // nothing to do
  }
}

export async function attachSha256(s: GcsStore, key: string, resource: GcsObjectResource, sha256: string): Promise<ObjectMeta> {
  try {
    const [patched] = await s.file(key).setMetadata(
      { metadata: { [SHA256_KEY]: sha256 } },
      { ifGenerationMatch: String(resource.generation), ifMetagenerationMatch: String(resource.metageneration ?? 1) },
    );
    return s.toMeta(key, patched as GcsObjectResource);
  } catch {
    // The bytes are stored and crc32c-checked; only the SHA-256 annotation is missing.
    const meta = s.toMeta(key, resource);
    meta.checksums.sha256 = sha256;
    return meta;
  }
}
