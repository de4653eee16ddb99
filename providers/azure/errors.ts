import {
  AccessDeniedError, AlreadyExistsError, AuthFailedError, CloudmuxError, IntegrityError, InvalidArgumentError,
  InvalidConfigError, InvalidKeyError, InvalidRangeError, NotFoundError, NotModifiedError, PreconditionFailedError, ProviderError,
  ThrottledError, TransientError, isNetworkError, mapSettledFailure, parseRetryAfter, type CloudmuxErrorOptions,
} from '../../src/core/errors.js';

const PROVIDER = 'azure';

/** What the mapper needs to know about the operation that failed. */
export interface AzureErrorContext {
  key?: string;
  account?: string;
  container?: string;
  signal?: AbortSignal;
}

/** The fields of an @azure/core-rest-pipeline RestError we read, without importing its type. */
interface RestErrorLike {
  name?: string;
  message?: string;
  code?: string;
  statusCode?: number;
  details?: { errorCode?: string } | unknown;
  response?: { headers?: { get?(name: string): string | undefined } };
  cause?: unknown;
}

/** Removes anything that looks like a SAS signature or key from a message. */
export function scrub(message: string): string {
  return message
    .replace(/([?&;](?:sig|se|sv|sp|skoid|sktid|skt|ske|sks|skv)=)[^&\s;"']*/gi, '$1***')
    .replace(/(AccountKey=)[^;\s"']*/gi, '$1***')
    .replace(/(SharedKey [^:\s]+:)\S+/g, '$1***')
    .replace(/(Bearer )\S+/g, '$1***');
}

/**
 * The cause attached to a mapped error: a plain Error with the service's code and request id, but
 * without the SDK's request object (its URL can carry a SAS and its headers a signature).
 */
function safeCause(e: RestErrorLike, errorCode: string | undefined, requestId: string | undefined): Error {
  const err = new Error(scrub(String(e.message ?? e.name ?? 'Azure error').split('\n')[0] ?? ''));
  err.name = e.name ?? 'Error';
  Object.assign(err, { code: e.code, statusCode: e.statusCode, errorCode, requestId });
  return err;
}

function errorCodeOf(e: RestErrorLike): string | undefined {
  const details = e.details as { errorCode?: unknown } | undefined;
  if (details && typeof details.errorCode === 'string') return details.errorCode;
  const header = e.response?.headers?.get?.('x-ms-error-code');
  if (header) return header;
  // RestError.code is the service code for most responses, or a transport code such as REQUEST_SEND_ERROR.
  return typeof e.code === 'string' && /^[A-Z][A-Za-z]+$/.test(e.code) && e.code !== 'REQUEST_SEND_ERROR' ? e.code : undefined;
}

const AUTH_FAILED = new Set(['AuthenticationFailed', 'InvalidAuthenticationInfo', 'NoAuthenticationInformation', 'AuthenticationErrorDetail']);
const ACCESS_DENIED = new Set([
  'AuthorizationFailure', 'AuthorizationPermissionMismatch', 'AuthorizationSourceIPMismatch', 'AuthorizationProtocolMismatch',
  'AuthorizationResourceTypeMismatch', 'AuthorizationServiceMismatch', 'InsufficientAccountPermissions', 'AccountIsDisabled',
  'KeyBasedAuthenticationNotPermitted', 'BlobArchived', 'BlobImmutableDueToPolicy', 'ContainerDisabled',
]);
const TRANSIENT_CODES = new Set(['OperationTimedOut', 'InternalError', 'ServiceUnavailable', 'ContainerBeingDeleted']);

/**
 * Maps any failure of an Azure SDK call into the cloudmux taxonomy. The one place Azure errors
 * are interpreted; never returns an SDK error type.
 */
export function mapAzureError(e: unknown, ctx: AzureErrorContext = {}): CloudmuxError {
  const base: CloudmuxErrorOptions = { provider: PROVIDER, key: ctx.key };
  // The SDK reports a connection cut mid-download as an AbortError although nobody aborted:
  // that is a network failure, and retrying it (resuming from the byte reached) is safe.
  const settled = mapSettledFailure(e, ctx.key ?? 'request', ctx.signal, base);
  if (settled) return settled;
  const err = (e ?? {}) as RestErrorLike;
  const status = typeof err.statusCode === 'number' ? err.statusCode : undefined;
  const code = errorCodeOf(err);
  const requestId = err.response?.headers?.get?.('x-ms-request-id');
  const opts: CloudmuxErrorOptions = { ...base, status, providerCode: code, cause: safeCause(err, code, requestId) };
  const what = ctx.key ?? ctx.container ?? 'request';
  const serviceMsg = scrub(String(err.message ?? '').split('\n')[0] ?? '');

  if (status === undefined) {
    const netCause = err.cause ?? (err as { request?: unknown }).request;
    if (isNetworkError(e) || isNetworkError(netCause) || err.code === 'REQUEST_SEND_ERROR' || err.code === 'ERR_STREAM_PREMATURE_CLOSE' || /socket hang up|aborted|ECONNRESET|received less data than required/i.test(String(err.message))) {
      return new TransientError(`network failure talking to Azure: ${serviceMsg || err.code}`, { ...opts, providerCode: err.code });
    }
    return new ProviderError(`azure: ${serviceMsg || 'unknown failure'}`, opts);
  }

  switch (code) {
    case 'BlobNotFound':
    case 'CannotVerifyCopySource':
      if (status === 404 || code === 'BlobNotFound') return new NotFoundError(`no object at ${what}`, opts);
      break;
    case 'ContainerNotFound':
      return new InvalidConfigError(`container ${ctx.container ?? '?'} does not exist in account ${ctx.account ?? '?'}`, { ...opts, key: undefined });
    case 'ResourceNotFound':
      return new NotFoundError(`not found: ${what}`, opts);
    case 'ConditionNotMet':
    case 'SourceConditionNotMet':
    case 'TargetConditionNotMet':
      return status === 304 ? new NotModifiedError(`${what} not modified`, opts) : new PreconditionFailedError(`condition not met for ${what}`, opts);
    case 'BlobAlreadyExists':
      return new AlreadyExistsError(`${what} already exists`, opts);
    case 'InvalidBlockList':
      // A concurrent writer committed (or Put Blob replaced) this key and Azure dropped our staged
      // blocks. S3/GCS would let the last writer win; here a retry of the whole put does.
      return new TransientError(`a concurrent write to ${what} discarded this upload's staged blocks; retry the put`, opts);
    case 'Md5Mismatch':
    case 'Crc64Mismatch':
      return new IntegrityError(`Azure rejected the upload of ${what}: content MD5 mismatch`, opts);
    case 'InvalidRange':
      return new InvalidRangeError(`range not satisfiable for ${what}`, opts);
    case 'ServerBusy':
    case 'TooManyRequests':
      return new ThrottledError(`Azure is throttling: ${serviceMsg || code}`, { ...opts, retryAfterMs: parseRetryAfter(err.response?.headers?.get?.('retry-after')) });
    case 'InvalidResourceName':
      return ctx.key ? new InvalidKeyError(`Azure rejected the name ${what}`, opts) : new InvalidConfigError(`Azure rejected the container name ${ctx.container ?? ''}`, opts);
    case 'InvalidMetadata':
      return new InvalidArgumentError(`Azure rejected the metadata of ${what}: ${serviceMsg}`, opts);
    default:
      break;
  }
  if (code && AUTH_FAILED.has(code)) return new AuthFailedError(`Azure could not authenticate the request (${code})`, opts);
  if (code === 'AuthorizationFailure' && /authenticate/i.test(serviceMsg)) {
    // Azurite answers a bad signature with AuthorizationFailure + "failed to authenticate".
    return new AuthFailedError(`Azure could not authenticate the request (${code})`, opts);
  }
  if (code && ACCESS_DENIED.has(code)) return new AccessDeniedError(`access denied to ${what} (${code})`, opts);
  if (code && TRANSIENT_CODES.has(code)) return new TransientError(`Azure failed transiently: ${code}`, opts);
  // Azurite reports a bad transactional MD5 as InvalidOperation "Provided contentMD5 doesn't match".
  if (status === 400 && /md5/i.test(serviceMsg) && /match/i.test(serviceMsg)) return new IntegrityError(`Azure rejected the upload of ${what}: content MD5 mismatch`, opts);

  if (status === 304) return new NotModifiedError(`${what} not modified`, opts);
  if (status === 401) return new AuthFailedError(`Azure could not authenticate the request${code ? ` (${code})` : ''}`, opts);
  if (status === 403) return new AccessDeniedError(`access denied to ${what}${code ? ` (${code})` : ''}`, opts);
  if (status === 404) return new NotFoundError(`no object at ${what}`, opts);
  if (status === 412) return new PreconditionFailedError(`condition not met for ${what}`, opts);
  if (status === 416) return new InvalidRangeError(`range not satisfiable for ${what}`, opts);
  if (status === 408) return new TransientError(`Azure request timed out${code ? ` (${code})` : ''}`, opts);
  if (status === 429) return new ThrottledError(`Azure is throttling${code ? ` (${code})` : ''}`, { ...opts, retryAfterMs: parseRetryAfter(err.response?.headers?.get?.('retry-after')) });
  if (status >= 500) return new TransientError(`Azure server error ${status}${code ? ` (${code})` : ''}`, opts);
  return new ProviderError(`Azure rejected the request for ${what}: ${status}${code ? ` ${code}` : ''}${serviceMsg ? `: ${serviceMsg}` : ''}`, opts);
}
