import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createPooledAgents, isStaleConnectionError } from '../../src/core/pooled-agents.js';

/**
 * The driver's own HTTP client, with keep-alive pools no other code touches: resumable-session
 * requests (chunk PUTs, status queries, cancels) and media downloads. A session URI authorizes its
 * bearer, so those need no credentials; node:http writes each chunk Buffer to the socket as is
 * (fetch would copy it first, doubling what an upload holds). Downloads come here because the SDK's
 * read stream destroys its whole shared agent when a download ends early, killing every request
 * in flight on it, its other callers' included.
 */
export class SessionClient {
  private readonly agents = createPooledAgents({ maxSockets: 16 });
  private readonly http = this.agents.http;
  private readonly https = this.agents.https;

  /** Sends one request; resolves with status, headers and the (small) response body. */
  send(uri: string, method: 'PUT' | 'DELETE', headers: Record<string, string>, body: readonly Buffer[], signal?: AbortSignal): Promise<SessionResponse> {
    const url = new URL(uri);
    const secure = url.protocol === 'https:';
    return new Promise((resolve, reject) => {
      const req = (secure ? httpsRequest : httpRequest)(url, {
        method,
        agent: secure ? this.https : this.http,
        headers: { ...headers, 'Content-Length': String(body.reduce((n, b) => n + b.byteLength, 0)) },
        ...(signal ? { signal } : {}),
      }, (res: IncomingMessage) => {
        const parts: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          // Answers are object resources or error bodies; anything huge is not ours to keep.
          if (size < 1024 * 1024) parts.push(c);
          size += c.byteLength;
        });
        res.once('end', () => resolve(new SessionResponse(res.statusCode ?? 0, res.headers, Buffer.concat(parts).toString('utf8'))));
        res.once('error', reject);
      });
      req.once('error', reject);
      // The parts go out one after another, never concatenated.
      for (const part of body) req.write(part);
      req.end();
    });
  }

  /**
   * Sends a bodiless GET and resolves with the response once its headers arrive. The caller owns
   * the response: reading it to the end returns the socket to the pool, destroying it closes the
   * socket (an abandoned download never leaves unread bytes on a pooled connection).
   *
   * A GET that meets a pooled connection the server had closed before answering is sent once more
   * on a fresh one: it never reached the server, so this is the transport's business, not a retry.
   */
  async open(url: URL, headers: Record<string, string>, signal?: AbortSignal): Promise<IncomingMessage> {
    try {
      return await this.get(url, headers, signal);
    } catch (e) {
      if (!isStaleConnectionError(e) || signal?.aborted) throw e;
      return this.get(url, headers, signal);
    }
  }

  private get(url: URL, headers: Record<string, string>, signal?: AbortSignal): Promise<IncomingMessage> {
    const secure = url.protocol === 'https:';
    return new Promise((resolve, reject) => {
      const req = (secure ? httpsRequest : httpRequest)(url, {
        method: 'GET',
        agent: secure ? this.https : this.http,
        headers,
        ...(signal ? { signal } : {}),
      }, resolve);
      req.once('error', reject);
      req.end();
    });
  }

  close(): void {
    this.http.destroy();
    this.https.destroy();
  }
}

export class SessionResponse {
  constructor(readonly status: number, private readonly headers: IncomingMessage['headers'], readonly text: string) {}

  header(name: string): string | undefined {
    const v = this.headers[name.toLowerCase()];
    return Array.isArray(v) ? v[0] : v;
  }

  json<T>(): T {
    return JSON.parse(this.text) as T;
  }
}

/** The text of a (small) error answer, read to its end so its socket goes back to the pool. */
export async function responseText(res: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of res) {
    // Error answers are small JSON documents; anything huge is not ours to keep.
    if (size < 64 * 1024) parts.push(chunk as Buffer);
    size += (chunk as Buffer).byteLength;
  }
  return Buffer.concat(parts).toString('utf8');
}
