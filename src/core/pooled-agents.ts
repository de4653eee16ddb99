import { Agent as HttpAgent, type ClientRequest } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * Longest time a pooled keep-alive socket waits idle before the client closes it. Node servers
 * (s3rver, Azurite, the GCS test server, many proxies) close idle connections after 5 s; a socket
 * kept longer may be handed to a request just as the server closes it. A `Keep-Alive: timeout=`
 * hint from the server shortens it further (Node applies the hint minus 1 s).
 */
export const DEFAULT_IDLE_SOCKET_MS = 4_000;

const STALE = Symbol.for('cloudmux.staleConnection');
/** What a request on a socket the server already closed fails with: a reset, or a write into a closed pipe. */
const STALE_CODES = new Set(['ECONNRESET', 'EPIPE']);

export interface PooledAgentOptions {
  maxSockets?: number;
  /** Default {@link DEFAULT_IDLE_SOCKET_MS}. */
  idleSocketMs?: number;
}

/**
 * Keep-alive agents for a driver's own connection pool: idle sockets are closed after
 * `idleSocketMs`, and a request that fails on a reused socket before any byte of its answer
 * arrived has its error marked (see {@link isStaleConnectionError}), so the caller may send it again
 * when the request is safe to repeat.
 */
export function createPooledAgents(opts: PooledAgentOptions = {}): { http: HttpAgent; https: HttpsAgent } {
  const idle = opts.idleSocketMs ?? DEFAULT_IDLE_SOCKET_MS;
  const base = { keepAlive: true, maxSockets: opts.maxSockets ?? Infinity };
  const PooledHttpAgent = pooled(HttpAgent, idle);
  const PooledHttpsAgent = pooled(HttpsAgent, idle);
  return { http: new PooledHttpAgent(base), https: new PooledHttpsAgent(base) };
}

/**
 * True when `e` is a connection failure on a pooled socket before any byte of the answer arrived:
 * the server had closed the idle connection (or closed it as the request arrived). Such a request
 * never reached the server's application unless the server crashed mid-request, so an idempotent
 * one may be sent once more on a fresh connection without that being a retry in the policy sense.
 */
export function isStaleConnectionError(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as Record<symbol, unknown>)[STALE] === true;
}

/**
 * The pooling rules over either agent class (https.Agent extends http.Agent): one body for both,
 * so the idle bound and the stale-socket watch cannot drift apart.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- TypeScript's mixin rule: a base constructor of (...args: any[])
function pooled<T extends new (...args: any[]) => HttpAgent>(Base: T, idleSocketMs: number): T {
  return class extends Base {
    override keepSocketAlive(socket: Duplex): boolean {
      return boundIdle(socket, super.keepSocketAlive(socket) as unknown, idleSocketMs);
    }

    override reuseSocket(socket: Duplex, request: ClientRequest): void {
      super.reuseSocket(socket, request);
      watchReuse(socket as Socket, request);
    }
  };
}

/** Caps the idle timeout Node set (none, or the server's hint) at `idleMs`; the agent destroys a free socket on timeout. */
function boundIdle(socket: Duplex, kept: unknown, idleMs: number): boolean {
  if (kept === false) return false;
  const s = socket as Socket;
  if (!s.timeout || s.timeout > idleMs) s.setTimeout(idleMs);
  return true;
}

/**
 * Marks the request's error when it fails before the server sent a byte on this socket. Reuse is
 * attached inside the request's constructor, so this listener runs before any the caller adds and
 * the caller sees the mark on the same error object.
 */
function watchReuse(socket: Socket, request: ClientRequest): void {
  const readBefore = socket.bytesRead;
  request.once('error', (e: NodeJS.ErrnoException) => {
    if (e && typeof e === 'object' && STALE_CODES.has(e.code ?? '') && socket.bytesRead === readBefore) {
      Object.defineProperty(e, STALE, { value: true });
    }
  });
}
