import {
  AccessDeniedError, AuthFailedError, CloudmuxError, InvalidConfigError, ProviderError, TransientError, isNetworkError,
} from '../core/errors.js';

/** The name errors from the PostgreSQL state store carry as `provider`. */
export const PG_PROVIDER = 'postgres-state';

/** SQLSTATEs a retry of the whole transaction cures (it was rolled back and nothing half-applied). */
const RETRY_TRANSACTION = new Set(['40001', '40P01']);

/** True when the failed transaction can simply be run again (serialization failure, deadlock). */
export function isRetryableTransaction(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && RETRY_TRANSACTION.has(code);
}

/**
 * Maps anything `pg` throws into the cloudmux taxonomy. Connection loss, server shutdown, too many
 * connections, timeouts and rolled-back transactions are Transient (the caller's retry may cure
 * them); authentication, privileges and a missing database are the operator's to fix. Messages are
 * the server's own text (which never contains the connection password) prefixed by the operation.
 */
export function mapPgError(e: unknown, op: string, key?: string): CloudmuxError {
  if (e instanceof CloudmuxError) return e;
  const err = e as { code?: unknown; message?: unknown } | null;
  const code = typeof err?.code === 'string' ? err.code : undefined;
  const detail = typeof err?.message === 'string' ? err.message : String(e);
  const message = `state store ${op}: ${detail}`;
  const opts = { provider: PG_PROVIDER, key, cause: e, providerCode: code };
  if (isNetworkError(e) || isConnectionFailure(detail)) return new TransientError(message, opts);
  if (code === undefined || !/^[0-9A-Z]{5}$/.test(code)) return new ProviderError(message, opts);
  const cls = code.slice(0, 2);
  // 08 connection exception, 53 insufficient resources (too many connections), 57 operator
  // intervention (shutdown, statement timeout), 40 rollbacks, 55P03 lock not available.
  if (cls === '08' || cls === '53' || cls === '57' || cls === '40' || code === '55P03') return new TransientError(message, opts);
  if (cls === '28') return new AuthFailedError(message, opts);
  if (code === '42501') return new AccessDeniedError(message, opts);
  // 3D000 database does not exist, 3F000 schema does not exist.
  if (code === '3D000' || code === '3F000') return new InvalidConfigError(message, opts);
  return new ProviderError(message, opts);
}

/** pg's own client-side failures have no SQLSTATE; recognise the connection ones by their text. */
function isConnectionFailure(message: string): boolean {
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|connection timeout/i.test(message);
}
