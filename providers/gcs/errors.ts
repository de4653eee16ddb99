import { CloudmuxError, isNetworkError, mapSettledFailure, parseRetryAfter, type ErrorCode } from '../../src/core/errors.js';

/** What the mapper needs to know about the call that failed. */
export interface GcsErrorContext {
  op: string;
  bucket: string;
  /** The key as the caller named it (without the store prefix). */
  key?: string;
  /** A write with ifGenerationMatch=0: a 412 (or 409) means "already exists". */
  createOnly?: boolean;
  signal?: AbortSignal;
}

/**
 * An HTTP answer from GCS that the provider read itself (resumable chunk uploads go through
 * node:http, not the SDK), carried to {@link mapGcsError} in the same shape as SDK errors.
 */
export class GcsHttpError extends Error {
  constructor(readonly code: number, message: string, readonly errors: { reason?: string; message?: string }[], readonly retryAfter: string | undefined) {
    super(message);
    this.name = 'GcsHttpError';
  }

  /** Builds one from an answer with a JSON API error body (or none). */
  static from(status: number, text: string, retryAfter: string | undefined): GcsHttpError {
    let message = `HTTP ${status}`;
    let errors: { reason?: string; message?: string }[] = [];
    try {
      const body = JSON.parse(text) as { error?: { message?: string; errors?: { reason?: string; message?: string }[] } };
      if (body.error?.message) message = body.error.message;
      if (Array.isArray(body.error?.errors)) errors = body.error.errors;
    } catch {
      // not JSON: keep the status
    }
    return new GcsHttpError(status, message, errors, retryAfter);
  }
}

interface SdkErrorShape {
  name?: string;
  code?: number | string;
  message?: string;
  errors?: { reason?: string; message?: string }[];
  retryAfter?: string;
  response?: { status?: number; statusCode?: number; headers?: Record<string, unknown> | { get?(n: string): string | null } };
  cause?: unknown;
}

const THROTTLE_REASONS = new Set(['rateLimitExceeded', 'userRateLimitExceeded', 'quotaExceeded', 'tooManyRequests']);

/**
 * The one place GCS failures (SDK ApiErrors, gaxios errors, answers read with fetch, network
 * errors) become CloudmuxErrors. The SDK error is not kept as `cause`: it holds the request it
 * made, Authorization header included. A plain Error naming status, reason and message is kept.
 */
export function mapGcsError(e: unknown, ctx: GcsErrorContext): CloudmuxError {
  const base = { provider: 'gcs', key: ctx.key };
  const where = `gcs ${ctx.op}${ctx.key !== undefined ? ` ${ctx.key}` : ''}`;
  const settled = mapSettledFailure(e, where, ctx.signal, base);
  if (settled) return settled;
  const err = (e ?? {}) as SdkErrorShape;
  const network = networkCode(e);
  if (network) return new CloudmuxError('Transient', `${where}: network failure (${network})`, { ...base, cause: Object.assign(new Error(network), { code: network }) });

  const status = typeof err.code === 'number' ? err.code : (err.response?.status ?? err.response?.statusCode);
  const reason = err.errors?.[0]?.reason ?? (typeof err.code === 'string' ? err.code : undefined);
  const message = safeMessage(err.message);
  if (status === undefined) {
    if (/default credentials|could not load the default|invalid_grant|unauthorized_client|private key/i.test(message)) {
      return new CloudmuxError('AuthFailed', `${where}: could not obtain credentials (${message})`, { ...base });
    }
    return new CloudmuxError('ProviderError', `${where}: ${message}`, { ...base, cause: e instanceof Error && !('response' in e) ? e : new Error(message) });
  }
  const cause = Object.assign(new Error(`HTTP ${status}${reason ? ` ${reason}` : ''}: ${message}`), { name: 'GcsError' });
  const opts = { ...base, cause, status, providerCode: reason };
  const make = (code: ErrorCode, text: string, extra: { retryAfterMs?: number } = {}): CloudmuxError =>
    new CloudmuxError(code, `${where}: ${text}`, { ...opts, ...extra });
  const retryAfter = (): number | undefined => parseRetryAfter(err.retryAfter ?? header(err.response?.headers, 'retry-after'));

  switch (status) {
    case 304:
      return make('NotModified', 'not modified (etag matches)');
    case 400:
      if (/CRC32C|MD5/i.test(message) && /match/i.test(message)) return make('IntegrityError', `the server rejected the upload's checksum: ${message}`);
      if (/object name|name is too long/i.test(message)) return make('InvalidKey', message);
      return make('InvalidArgument', message);
    case 401:
      return make('AuthFailed', `authentication failed: ${message}`);
    case 403:
      if (reason && THROTTLE_REASONS.has(reason)) return make('Throttled', `throttled (${reason})`, { retryAfterMs: retryAfter() });
      return make('AccessDenied', `access denied: ${message}`);
    case 404:
      if (/bucket does not exist/i.test(message)) return make('InvalidConfig', `bucket "${ctx.bucket}" does not exist`);
      return make('NotFound', 'no such object');
    case 408:
      return make('Transient', `request timeout: ${message}`);
    case 409:
      if (ctx.createOnly) return make('AlreadyExists', 'the key already exists');
      // GCS answers 409 to concurrent mutations of one object: a retry sees the settled state.
      return make('Transient', `conflict: ${message}`);
    case 410:
      return make('Transient', `upload session expired: ${message}`);
    case 412:
      return ctx.createOnly ? make('AlreadyExists', 'the key already exists') : make('PreconditionFailed', 'precondition failed (generation differs)');
    case 416:
      return make('InvalidRange', 'range not satisfiable');
    case 429:
      return make('Throttled', `throttled (${reason ?? 'rateLimitExceeded'})`, { retryAfterMs: retryAfter() });
    case 503:
      // GCS says "slow down" with a rate-limit reason; any other 503 is a passing failure.
      if (reason && THROTTLE_REASONS.has(reason)) return make('Throttled', `throttled (${reason})`, { retryAfterMs: retryAfter() });
      return make('Transient', `HTTP 503: ${message}`, { retryAfterMs: retryAfter() });
    case 499:
      return make('Aborted', 'request cancelled');
    case 501:
      return make('NotSupported', `not implemented by the endpoint: ${message}`);
    default:
      if (status >= 500) return make('Transient', `HTTP ${status}: ${message}`, { retryAfterMs: retryAfter() });
      return make('ProviderError', `HTTP ${status}: ${message}`);
  }
}

/** A low-level network failure code, looking through fetch's TypeError('fetch failed') wrapper. */
function networkCode(e: unknown): string | undefined {
  for (let cur: unknown = e, depth = 0; cur && depth < 4; cur = (cur as { cause?: unknown }).cause, depth++) {
    if (isNetworkError(cur)) return (cur as { code: string }).code;
    const c = cur as { type?: string; code?: unknown; errno?: unknown };
    if (c.type === 'system' && typeof c.errno === 'string') return c.errno;
  }
  if (e instanceof TypeError && /fetch failed|terminated|socket/i.test(e.message)) return 'UND_ERR_SOCKET';
  return undefined;
}

function header(headers: unknown, name: string): string | undefined {
  if (!headers) return undefined;
  const h = headers as { get?(n: string): string | null } & Record<string, unknown>;
  if (typeof h.get === 'function') return h.get(name) ?? undefined;
  const v = h[name] ?? h[name.toLowerCase()];
  return typeof v === 'string' ? v : Array.isArray(v) ? String(v[0]) : undefined;
}

/** GCS messages are plain, but strip anything that looks like a token or signature anyway. */
function safeMessage(m: string | undefined): string {
  if (!m) return 'no message';
  return m.replace(/(X-Goog-Signature|X-Goog-Credential|access_token|Bearer|upload_id)([=\s])[^&\s"]+/gi, '$1$2***').slice(0, 500);
}
