/**
 * The one error taxonomy of cloudmux. Every driver maps its SDK's failures into it in one function;
 * no SDK error type crosses a provider folder. Messages never contain credentials.
 */
export type ErrorCode =
  | 'NotFound'
  | 'PreconditionFailed'
  | 'NotModified'
  | 'AlreadyExists'
  | 'InvalidKey'
  | 'InvalidArgument'
  | 'InvalidRange'
  | 'InvalidConfig'
  | 'AuthFailed'
  | 'AccessDenied'
  | 'Throttled'
  | 'Transient'
  | 'ProviderUnavailable'
  | 'IntegrityError'
  | 'Aborted'
  | 'NotSupported'
  | 'ProviderError';

/** The kind of operation an error came from: some codes mean one thing on a read, another on a write. */
export type OpClass = 'read' | 'write' | 'delete' | 'list';

/** What an error code means to everything that reacts to failures; one row per code in {@link ERROR_SEMANTICS}. */
export interface ErrorSemantics {
  /**
   * The request (or the caller) is at fault, not the provider: the same request fails anywhere.
   * `'writes'`: only on writes (an IntegrityError on a write is the caller's body not matching its
   * `expect`; on a read it is the provider serving bad bytes).
   */
  callerFault: boolean | 'writes';
  /** A retry (after a backoff) may cure it. A CloudmuxError may override this per instance. */
  retryable: boolean;
  /** Counts as a failure in the router's health (error rate) for the provider that answered. */
  countsAgainstHealth: boolean | 'reads';
  /** Counts as a failure in the provider's circuit breaker. */
  countsAgainstBreaker: boolean | 'reads';
  /** On a read through the router, another replica may still answer (else the error is the answer). */
  tryOtherReplica: boolean;
}

const CALLER = { callerFault: true, retryable: false, countsAgainstHealth: false, countsAgainstBreaker: false } as const;
const PROVIDER = { callerFault: false, countsAgainstHealth: true, countsAgainstBreaker: true, tryOtherReplica: true } as const;

/**
 * The one table of error semantics. The breaker (src/layers/breaker.ts), the health tracker and
 * the router (src/router) read it; nobody keeps a list of their own.
 */
export const ERROR_SEMANTICS: Readonly<Record<ErrorCode, ErrorSemantics>> = {
  // This replica lacks the key; another may hold it.
  NotFound: { ...CALLER, tryOtherReplica: true },
  PreconditionFailed: { ...CALLER, tryOtherReplica: false },
  NotModified: { ...CALLER, tryOtherReplica: false },
  AlreadyExists: { ...CALLER, tryOtherReplica: false },
  InvalidKey: { ...CALLER, tryOtherReplica: false },
  InvalidArgument: { ...CALLER, tryOtherReplica: false },
  InvalidRange: { ...CALLER, tryOtherReplica: false },
  // Another provider may support what this one does not.
  NotSupported: { ...CALLER, tryOtherReplica: true },
  // The caller's own abort (a provider-side cut is mapped to Transient).
  Aborted: { ...CALLER, tryOtherReplica: false },
  InvalidConfig: { ...PROVIDER, retryable: false },
  AuthFailed: { ...PROVIDER, retryable: false },
  AccessDenied: { ...PROVIDER, retryable: false },
  Throttled: { ...PROVIDER, retryable: true },
  Transient: { ...PROVIDER, retryable: true },
  // The breaker's own fast failure: the failure it stands for was counted when it happened.
  ProviderUnavailable: { ...PROVIDER, retryable: false, countsAgainstBreaker: false },
  IntegrityError: { callerFault: 'writes', retryable: false, countsAgainstHealth: 'reads', countsAgainstBreaker: 'reads', tryOtherReplica: true },
  ProviderError: { ...PROVIDER, retryable: false },
};

function applies(rule: boolean | 'reads' | 'writes', op: OpClass): boolean {
  if (typeof rule === 'boolean') return rule;
  return rule === 'reads' ? op === 'read' : op !== 'read';
}

/** True when `e` is the request's fault, not the provider's (anything not a CloudmuxError is the provider's). */
export function isCallerFault(e: unknown, op: OpClass): boolean {
  return e instanceof CloudmuxError && applies(ERROR_SEMANTICS[e.code].callerFault, op);
}

/** True when `e` counts as a provider failure in its health (anything not a CloudmuxError does). */
export function countsAgainstHealth(e: unknown, op: OpClass): boolean {
  return !(e instanceof CloudmuxError) || applies(ERROR_SEMANTICS[e.code].countsAgainstHealth, op);
}

/** True when `e` counts as a failure in the provider's circuit breaker (anything not a CloudmuxError does). */
export function countsAgainstBreaker(e: unknown, op: OpClass): boolean {
  return !(e instanceof CloudmuxError) || applies(ERROR_SEMANTICS[e.code].countsAgainstBreaker, op);
}

/** True when a read failing with `e` on one replica may still succeed on another. */
export function mayTryOtherReplica(e: unknown): boolean {
  return !(e instanceof CloudmuxError) || ERROR_SEMANTICS[e.code].tryOtherReplica;
}

export interface CloudmuxErrorOptions {
  /** Provider (store) name, e.g. `s3`, `memory`. */
  provider?: string;
  /** The key the operation was about, if any. */
  key?: string;
  cause?: unknown;
  /** Overrides the code's default retryability. */
  retryable?: boolean;
  /** For Throttled: how long the provider asked us to wait, in milliseconds. */
  retryAfterMs?: number;
  /** HTTP status or provider error code, for diagnostics. */
  status?: number;
  providerCode?: string;
}

export class CloudmuxError extends Error {
  override readonly name: string = 'CloudmuxError';
  readonly code: ErrorCode;
  readonly provider: string | undefined;
  readonly key: string | undefined;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  readonly status: number | undefined;
  readonly providerCode: string | undefined;

  constructor(code: ErrorCode, message: string, opts: CloudmuxErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.provider = opts.provider;
    this.key = opts.key;
    this.retryable = opts.retryable ?? ERROR_SEMANTICS[code].retryable;
    this.retryAfterMs = opts.retryAfterMs;
    this.status = opts.status;
    this.providerCode = opts.providerCode;
    this.name = `${code}Error`;
  }
}

type Ctor = new (message: string, opts?: CloudmuxErrorOptions) => CloudmuxError;
function define(code: ErrorCode): Ctor {
  return class extends CloudmuxError {
    constructor(message: string, opts?: CloudmuxErrorOptions) {
      super(code, message, opts);
    }
  };
}

export const NotFoundError = define('NotFound');
export type NotFoundError = CloudmuxError & { readonly code: 'NotFound' };
export const PreconditionFailedError = define('PreconditionFailed');
export type PreconditionFailedError = CloudmuxError & { readonly code: 'PreconditionFailed' };
export const NotModifiedError = define('NotModified');
export type NotModifiedError = CloudmuxError & { readonly code: 'NotModified' };
export const AlreadyExistsError = define('AlreadyExists');
export type AlreadyExistsError = CloudmuxError & { readonly code: 'AlreadyExists' };
export const InvalidKeyError = define('InvalidKey');
export type InvalidKeyError = CloudmuxError & { readonly code: 'InvalidKey' };
export const InvalidArgumentError = define('InvalidArgument');
export type InvalidArgumentError = CloudmuxError & { readonly code: 'InvalidArgument' };
export const InvalidRangeError = define('InvalidRange');
export type InvalidRangeError = CloudmuxError & { readonly code: 'InvalidRange' };
export const InvalidConfigError = define('InvalidConfig');
export type InvalidConfigError = CloudmuxError & { readonly code: 'InvalidConfig' };
export const AuthFailedError = define('AuthFailed');
export type AuthFailedError = CloudmuxError & { readonly code: 'AuthFailed' };
export const AccessDeniedError = define('AccessDenied');
export type AccessDeniedError = CloudmuxError & { readonly code: 'AccessDenied' };
export const ThrottledError = define('Throttled');
export type ThrottledError = CloudmuxError & { readonly code: 'Throttled' };
export const TransientError = define('Transient');
export type TransientError = CloudmuxError & { readonly code: 'Transient' };
export const ProviderUnavailableError = define('ProviderUnavailable');
export type ProviderUnavailableError = CloudmuxError & { readonly code: 'ProviderUnavailable' };
export const IntegrityError = define('IntegrityError');
export type IntegrityError = CloudmuxError & { readonly code: 'IntegrityError' };
export const AbortedError = define('Aborted');
export type AbortedError = CloudmuxError & { readonly code: 'Aborted' };
export const NotSupportedError = define('NotSupported');
export type NotSupportedError = CloudmuxError & { readonly code: 'NotSupported' };
export const ProviderError = define('ProviderError');
export type ProviderError = CloudmuxError & { readonly code: 'ProviderError' };

export function isCloudmuxError(e: unknown, code?: ErrorCode): e is CloudmuxError {
  return e instanceof CloudmuxError && (code === undefined || e.code === code);
}

/** True for errors a retry may cure (Throttled, Transient, or anything marked retryable). */
export function isRetryable(e: unknown): boolean {
  return e instanceof CloudmuxError && e.retryable;
}

/** An AbortError from an AbortSignal, mapped into the taxonomy. */
export function abortedError(signal: AbortSignal | undefined, opts: CloudmuxErrorOptions = {}): CloudmuxError {
  const reason: unknown = signal?.reason;
  if (reason instanceof CloudmuxError) return reason;
  return new AbortedError('operation aborted', { ...opts, cause: reason });
}

/** Throws Aborted when the signal has fired; call before starting I/O. */
export function throwIfAborted(signal: AbortSignal | undefined, opts: CloudmuxErrorOptions = {}): void {
  if (signal?.aborted) throw abortedError(signal, opts);
}

/** Node's own network failures that mean "try again". */
const TRANSIENT_NET = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENOTFOUND',
  'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT', 'ERR_STREAM_PREMATURE_CLOSE',
]);

/** True when `e` is a low-level network failure (reset, refused, timeout). */
export function isNetworkError(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && TRANSIENT_NET.has(code);
}

/** Best-effort check for an abort coming from an AbortSignal (DOMException or Node AbortError). */
export function isAbortError(e: unknown): boolean {
  if (e instanceof CloudmuxError) return e.code === 'Aborted';
  const err = e as { name?: unknown; code?: unknown } | null;
  return err?.name === 'AbortError' || err?.code === 'ABORT_ERR';
}

/**
 * The rules every cloud provider's error mapper starts with, so that the mappers agree: a
 * CloudmuxError is already mapped; once the caller's signal has fired the failure is the signal's
 * reason when that is a CloudmuxError (a deadline, a lost lease), else Aborted; an AbortError
 * nobody asked for is the transport giving up on a connection, Transient. Undefined when none
 * applies and the provider's own mapping decides. `where` starts the messages; `opts.cause` is
 * what they carry (a mapper that must not keep the SDK error leaves it out).
 */
export function mapSettledFailure(e: unknown, where: string, signal: AbortSignal | undefined, opts: CloudmuxErrorOptions): CloudmuxError | undefined {
  if (e instanceof CloudmuxError) return e;
  if (signal?.aborted) {
    const reason: unknown = signal.reason;
    if (reason instanceof CloudmuxError) return reason;
    return new AbortedError(`${where}: aborted`, { ...opts, cause: reason ?? opts.cause });
  }
  if (isAbortError(e)) return new TransientError(`${where}: the connection was cut (${(e as Error | null)?.message || 'aborted'})`, opts);
  return undefined;
}

/**
 * One line describing any error, for logs, `reason` fields and stderr: `Code (provider key): message`
 * for a CloudmuxError (a key with control characters is JSON-quoted so the line stays one line),
 * the message otherwise, its white space (newlines included) folded to single spaces. `where:
 * false` leaves out provider and key (a reason already about one provider); `maxLength` cuts the
 * line (journal and report fields). Never a stack; drivers keep credentials out of messages.
 */
export function describeError(e: unknown, opts: { where?: boolean; maxLength?: number } = {}): string {
  let line: string;
  if (e instanceof CloudmuxError) {
    // eslint-disable-next-line no-control-regex
    const key = e.key !== undefined && /[\u0000-\u001f\u007f-\u009f]/.test(e.key) ? JSON.stringify(e.key) : e.key;
    const where = opts.where === false ? '' : [e.provider, key].filter(Boolean).join(' ');
    line = `${e.code}${where ? ` (${where})` : ''}: ${oneLine(e.message)}`;
  } else {
    line = oneLine(e instanceof Error ? e.message : String(e));
  }
  return opts.maxLength === undefined ? line : line.slice(0, opts.maxLength);
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

/** Parses an HTTP Retry-After header (seconds or HTTP date) into milliseconds. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const secs = Number(value);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
