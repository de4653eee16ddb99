import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

/**
 * The HTTP client for resumable-session requests (chunk PUTs, status queries, cancels). A session
 * URI authorizes its bearer, so these need no credentials; node:http writes each chunk Buffer to
 * the socket as is (fetch would copy it first, doubling what an upload holds).
 */
export class SessionClient {
  private readonly http = new HttpAgent({ keepAlive: true, maxSockets: 16 });
  private readonly https = new HttpsAgent({ keepAlive: true, maxSockets: 16 });

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
