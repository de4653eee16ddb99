import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the HTTP endpoints ask the daemon. */
export interface HttpHandlers {
  readiness(): Promise<{ ready: boolean; reasons: string[] }>;
  metrics(): Promise<{ contentType: string; body: string }>;
  status(): Promise<unknown>;
}

/** The daemon's HTTP listener: /healthz, /readyz, /metrics, /status; GET and HEAD only. */
export class DaemonHttpServer {
  private readonly server: Server;

  private constructor(server: Server) {
    this.server = server;
  }

  /** Binds `host:port` (port 0: any free port) and starts answering. */
  static async listen(host: string, port: number, handlers: HttpHandlers): Promise<DaemonHttpServer> {
    const server = createServer((req, res) => {
      void handle(req, res, handlers);
    });
    // Scrapers keep connections alive; a stop must not wait for them.
    server.keepAliveTimeout = 5_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new DaemonHttpServer(server);
  }

  address(): { host: string; port: number } {
    const a = this.server.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  /** Stops accepting connections and closes idle ones; answers in progress finish. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
  }
}

async function handle(req: IncomingMessage, res: ServerResponse, handlers: HttpHandlers): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'GET, HEAD' });
    return;
  }
  try {
    switch (path) {
      case '/healthz':
        send(res, 200, 'text/plain; charset=utf-8', 'ok\n');
        return;
      case '/readyz': {
        const r = await handlers.readiness();
        sendJson(res, r.ready ? 200 : 503, r);
        return;
      }
      case '/metrics': {
        const m = await handlers.metrics();
        send(res, 200, m.contentType, m.body);
        return;
      }
      case '/status':
        sendJson(res, 200, await handlers.status());
        return;
      default:
        send(res, 404, 'text/plain; charset=utf-8', 'not found: try /healthz, /readyz, /metrics, /status\n');
    }
  } catch (e) {
    send(res, 500, 'text/plain; charset=utf-8', `internal error: ${e instanceof Error ? e.message : String(e)}\n`);
  }
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(value, null, 2)}\n`);
}

function send(res: ServerResponse, status: number, contentType: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
