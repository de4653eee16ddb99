import {
  CloudmuxError, isNetworkError, mapSettledFailure, parseRetryAfter, type ErrorCode,
} from '../../src/core/errors.js';

/** What the mapper needs to know about the call that failed. */
export interface S3ErrorContext {
  op: string;
  bucket: string;
  /** The key as the caller named it (without the store prefix). */
  key?: string;
  /** A write with `If-None-Match: *`: a 412 means "already exists". */
  createOnly?: boolean;
  signal?: AbortSignal;
}

interface SdkErrorShape {
  name?: string;
  Code?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number; requestId?: string };
  $response?: { headers?: Record<string, string | undefined> };
}

const AUTH = new Set([
  'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken', 'TokenRefreshRequired', 'InvalidToken',
  'RequestTimeTooSkewed', 'CredentialsProviderError', 'InvalidClientTokenId', 'MissingSecurityHeader',
  'AuthorizationQueryParametersError', 'ExpiredTokenException', 'UnrecognizedClientException',
]);
const THROTTLE = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'RequestLimitExceeded', 'TooManyRequests', 'TooManyRequestsException', 'RequestThrottled', 'ServiceUnavailable']);
const TRANSIENT = new Set(['InternalError', 'RequestTimeout', 'RequestTimeoutException', 'TimeoutError', 'ConditionalRequestConflict', 'OperationAborted', 'ServerError', 'BadGateway', 'GatewayTimeout']);
const CONFIG = new Set(['InvalidBucketName', 'PermanentRedirect', 'AuthorizationHeaderMalformed', 'IllegalLocationConstraintException', 'InvalidRegion']);
const ARGUMENT = new Set(['InvalidArgument', 'EntityTooLarge', 'EntityTooSmall', 'InvalidPart', 'InvalidPartOrder', 'KeyTooLongError', 'MetadataTooLarge', 'MalformedXML', 'InvalidRequest', 'InvalidStorageClass', 'TooManyParts']);
const INTEGRITY = new Set(['BadDigest', 'InvalidDigest', 'XAmzContentSHA256Mismatch', 'XAmzContentChecksumMismatch']);
const UNSUPPORTED = new Set(['NotImplemented', 'MethodNotAllowed']);

/**
 * The one place S3 SDK failures become CloudmuxErrors. The SDK's own error object is not kept as
 * `cause` (a SignatureDoesNotMatch error carries the access key id and string-to-sign); a plain
 * Error naming the S3 code, status and request id is kept instead. Network failures keep their
 * Node error, which carries no credentials.
 *
 * 200-with-error-body answers (CopyObject, CompleteMultipartUpload) arrive here already turned into
 * 503 errors named after their code by the SDK's throw-200-exceptions middleware.
 */
export function mapS3Error(e: unknown, ctx: S3ErrorContext): CloudmuxError {
  const base = { provider: 's3', key: ctx.key };
  const where = `s3 ${ctx.op}${ctx.key !== undefined ? ` ${ctx.key}` : ''}`;
  const settled = mapSettledFailure(e, where, ctx.signal, { ...base, cause: e });
  if (settled) return settled;
  if (isNetworkError(e) || (e as { name?: string } | null)?.name === 'TimeoutError') {
    return new CloudmuxError('Transient', `${where}: ${(e as Error).message}`, { ...base, cause: e });
  }
  const err = (e ?? {}) as SdkErrorShape;
  const status = err.$metadata?.httpStatusCode;
  const name = err.Code ?? err.name ?? err.code ?? 'Unknown';
  const requestId = err.$metadata?.requestId;
  const message = safeMessage(err.message);
  const cause = Object.assign(new Error(`${name}${status ? ` (HTTP ${status})` : ''}${requestId ? ` request ${requestId}` : ''}: ${message}`), { name });
  const opts = { ...base, cause, status, providerCode: name };
  const make = (code: ErrorCode, text: string, extra: { retryAfterMs?: number } = {}): CloudmuxError =>
    new CloudmuxError(code, `${where}: ${text}`, { ...opts, ...extra });

  if (name === 'NoSuchBucket') return make('InvalidConfig', `bucket "${ctx.bucket}" does not exist`);
  if (name === 'NoSuchKey' || name === 'NoSuchUpload' || (status === 404 && name === 'NotFound')) return make('NotFound', 'no such object');
  if (name === 'NotModified' || status === 304) return make('NotModified', 'not modified (etag matches)');
  if (name === 'PreconditionFailed' || status === 412) {
    return ctx.createOnly ? make('AlreadyExists', 'the key already exists') : make('PreconditionFailed', 'precondition failed (etag differs)');
  }
  if (name === 'InvalidRange' || status === 416) return make('InvalidRange', 'range not satisfiable');
  if (AUTH.has(name) || /credential/i.test(name)) return make('AuthFailed', `authentication failed (${name})`);
  if (name === 'AccessDenied' || name === 'AllAccessDisabled' || status === 403) return make('AccessDenied', `access denied (${name})`);
  if (THROTTLE.has(name) || status === 429) {
    return make('Throttled', `throttled (${name})`, { retryAfterMs: parseRetryAfter(err.$response?.headers?.['retry-after']) });
  }
  if (TRANSIENT.has(name) || status === 408) return make('Transient', `${name}: ${message}`);
  if (INTEGRITY.has(name)) return make('IntegrityError', `the provider rejected the upload's checksum (${name})`);
  if (UNSUPPORTED.has(name) || status === 501) return make('NotSupported', `the endpoint does not implement this (${name})`);
  if (CONFIG.has(name) || status === 301 || /region is missing/i.test(message)) return make('InvalidConfig', `${name}: ${message}`);
  if (ARGUMENT.has(name)) return make('InvalidArgument', `${name}: ${message}`);
  if (status !== undefined && status >= 500) return make('Transient', `${name} (HTTP ${status}): ${message}`);
  if (status === undefined && e instanceof Error && !('$metadata' in e)) {
    // Not an S3 answer: a bug or an unexpected local failure. Keep it as cause; it has no secrets.
    return new CloudmuxError('ProviderError', `${where}: ${e.message}`, { ...base, cause: e });
  }
  return make('ProviderError', `${name}${status ? ` (HTTP ${status})` : ''}: ${message}`);
}

/** S3 messages are generic, but strip anything that looks like a signature or key material anyway. */
function safeMessage(m: string | undefined): string {
  if (!m) return 'no message';
  return m.replace(/(Signature|Credential|X-Amz-Security-Token|AWSAccessKeyId)=[^&\s]+/gi, '$1=***').slice(0, 500);
}
