/** GcsStore's media downloads: the request on the pooled session client, and the body the caller reads. */
import type { IncomingMessage } from 'node:http';
import { PassThrough, Readable, type Transform } from 'node:stream';
import { abortedError, throwIfAborted, holdErrors } from '../../src/core/index.js';
import { PROVIDER } from './config.js';
import { GcsHttpError, mapGcsError, type GcsErrorContext } from './errors.js';
import { responseText } from './session.js';
import type { GcsStore, SdkRequestOptions } from './store.js';

/**
 * A download's body as the caller sees it: failures mapped, an abort ends it, and destroying it (a
 * reader that stops early) destroys the response, so its socket is closed rather than pooled.
 */
export function mediaBody(res: IncomingMessage, ctx: GcsErrorContext, verify?: Transform): Readable {
  const out = holdErrors(verify ?? new PassThrough());
  const onAbort = (): void => {
    out.destroy(abortedError(ctx.signal, { provider: PROVIDER, key: ctx.key }));
  };
  if (ctx.signal?.aborted) onAbort();
  ctx.signal?.addEventListener('abort', onAbort, { once: true });
  res.once('error', (e) => out.destroy(mapGcsError(e, ctx)));
  out.once('close', () => {
    ctx.signal?.removeEventListener('abort', onAbort);
    if (!res.destroyed) res.destroy();
  });
  res.pipe(out);
  return out;
}

export function headerRecord(headers: SdkRequestOptions['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) if (value !== undefined && value !== null) out[name] = String(value);
  return out;
}

export function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Starts the media download of one generation through the driver's own HTTP client, with the
 * headers the SDK would send (its request decoration: credentials exactly when it would use them).
 * Resolves once a 200/206 answer's headers arrive; any other answer is thrown as a GcsHttpError.
 */
export async function openMedia(s: GcsStore, key: string, generation: string, range: { offset: number; length: number } | undefined, ctx: GcsErrorContext): Promise<IncomingMessage> {
  const decorated = await decorate(s, {
    uri: `${s.storage.baseUrl}/b/${encodeURIComponent(s.options.bucket)}/o/${encodeURIComponent(s.name(key))}`,
    qs: { alt: 'media', generation },
    headers: {
      // With decompress off the SDK asked for gzip too: a gzip-stored object comes as stored,
      // matching its size and checksums, instead of being transcoded.
      'Accept-Encoding': 'gzip',
      'Cache-Control': 'no-store',
      ...(range ? { Range: `bytes=${range.offset}-${range.offset + range.length - 1}` } : {}),
    },
  });
  throwIfAborted(ctx.signal, { provider: PROVIDER, key });
  const url = new URL(decorated.uri);
  for (const [name, value] of Object.entries(decorated.qs ?? {})) {
    if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
  }
  const res = await s.sessions.open(url, headerRecord(decorated.headers), ctx.signal);
  const status = res.statusCode ?? 0;
  if (status === 200 || status === 206) return res;
  const text = await responseText(res).catch(() => '');
  throw GcsHttpError.from(status, text, headerValue(res.headers['retry-after']));
}

/** The SDK's decoration of a request (project id, credentials when it would send them), without sending it. */
export function decorate(s: GcsStore, reqOpts: SdkRequestOptions): Promise<SdkRequestOptions> {
  return new Promise((resolve, reject) => {
    s.storage.makeAuthenticatedRequest(reqOpts, {
      onAuthenticated: (err, decorated) => (err ? reject(err) : resolve(decorated ?? reqOpts)),
    });
  });
}
