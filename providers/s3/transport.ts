import type { S3Client } from '@aws-sdk/client-s3';
import { createPooledAgents, isStaleConnectionError } from '../../src/core/pooled-agents.js';

/** How long a request waits for a new connection to be established (the SDK handler's connectionTimeout). */
export const S3_CONNECTION_TIMEOUT_MS = 10_000;

/** Keep-alive pools whose idle sockets expire (see createPooledAgents), shared by the SDK client and the fast read path. */
export function s3Agents(): ReturnType<typeof createPooledAgents> {
  return createPooledAgents({ maxSockets: 64 });
}

/** What the S3 client's request handler is built from. */
export function s3RequestHandlerOptions(agents = s3Agents()): { httpAgent: unknown; httpsAgent: unknown; connectionTimeout: number } {
  return { httpAgent: agents.http, httpsAgent: agents.https, connectionTimeout: S3_CONNECTION_TIMEOUT_MS };
}

/** The parts of the SDK's HTTP request this module reads. */
interface SentRequest {
  method: string;
  headers: Record<string, string>;
  body?: unknown;
}

/** Conditions whose replay could fail a write that in fact succeeded (the first send changed what they compare). */
const CONDITIONAL = /^(if-|x-amz-copy-source-if-)/i;

/**
 * Whether a request may be sent twice: reads always; PUT and DELETE when their body is held in
 * memory (not a stream already consumed) and no precondition could turn the replay into a false
 * failure; POST (create/complete multipart, batch delete) never.
 */
export function safeToResend(request: SentRequest): boolean {
  const method = request.method.toUpperCase();
  if (method === 'GET' || method === 'HEAD') return true;
  if (method !== 'PUT' && method !== 'DELETE') return false;
  if (Object.keys(request.headers).some((h) => CONDITIONAL.test(h))) return false;
  const body = request.body;
  return body === undefined || body === null || typeof body === 'string' || body instanceof Uint8Array;
}

/**
 * Sends a request once more, at once, when it failed on a pooled connection the server had closed
 * before answering a byte, and it is safe to repeat. This is the transport's business, not a retry:
 * the request never reached S3's application, no attempt was spent from S3's point of view, and
 * the breaker and health tracker should not count a stale pool entry as a provider failure. Go's
 * net/http does the same for reused connections. Any other failure (including a second one on the
 * fresh connection) goes to the caller and to cloudmux's retry policy untouched.
 *
 * Installed on clients the driver creates (a client the user passes in keeps its own behaviour).
 */
export function resendOnStaleConnection(client: S3Client): void {
  const middleware = (next: SendNext) => async (args: { request: unknown }): Promise<unknown> => {
    try {
      return await next(args);
    } catch (e) {
      const request = args.request as SentRequest | undefined;
      if (!request || !isStaleConnectionError(e) || !safeToResend(request)) throw e;
      return next(args);
    }
  };
  client.middlewareStack.addRelativeTo(
    // The SDK's middleware types are a union over steps; this one is a finalize-step middleware.
    middleware as unknown as Parameters<S3Client['middlewareStack']['addRelativeTo']>[0],
    // After signing: the signed request is re-sent as is.
    { relation: 'after', toMiddleware: 'httpSigningMiddleware', name: 'cloudmuxStaleConnectionResend', override: true },
  );
}

/** The next handler of a finalize-step middleware, as far as this module uses it. */
type SendNext = (args: { request: unknown }) => Promise<unknown>;
