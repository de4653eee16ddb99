import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { seededRandom } from './random.js';

/**
 * What the proxy can do to one request:
 * - `resetRequest`: drop the connection while the request (its body, if any) is arriving;
 * - `resetResponse`: forward, send the status line, headers and part of the body, then drop the connection;
 * - `slowDown`: answer 503 with a throttling error body (S3 `SlowDown` XML by default, see `protocol`), without forwarding;
 * - `tooManyRequests`: answer 429 with `Retry-After` and an error body in the protocol's form, without forwarding;
 * - `stall`: never answer; drop the connection after `stallMs`;
 * - `flipByte`: forward, flipping one byte of the response body (GET responses with a body only).
 */
export type ProxyFault = 'resetRequest' | 'resetResponse' | 'slowDown' | 'tooManyRequests' | 'stall' | 'flipByte';

export interface ProxyRequestInfo {
  method: string;
  /** Path and query, as sent. */
  path: string;
  headers: IncomingMessage['headers'];
}

/**
 * Whose error documents the proxy's own 503 and 429 answers imitate, so each SDK parses them as
 * its service's: S3 XML `<Error><Code>`, the GCS JSON API's `{"error":{…}}`, Azure XML with the
 * `x-ms-error-code` header.
 */
export type ProxyProtocol = 's3' | 'gcs' | 'azure';

export interface FaultProxyOptions {
  /** Where requests go, e.g. `http://127.0.0.1:4568`. */
  upstream: string;
  /** PRNG seed of the fault schedule. Default 1. */
  seed?: number;
  /** Probability that a request (that `match` accepts) gets a fault. Default 0. */
  rate?: number;
  /** Relative weights of the faults drawn at random. Default: all equal. */
  weights?: Partial<Record<ProxyFault, number>>;
  /** Decides the fault of each request (undefined: fall through to `script` and `rate`; null: none). Wins over both. */
  decide?(req: ProxyRequestInfo, n: number): ProxyFault | null | undefined;
  /** Faults for given request numbers (1-based, over all requests); `null` forces none. Wins over `rate`. */
  script?: Record<number, ProxyFault | null>;
  /** Only requests this accepts are faulted (all are logged). Default: all. */
  match?(req: ProxyRequestInfo): boolean;
  /** Whether `fault` may hit this request (drawn among the faults that may). Default: all may. */
  allow?(fault: ProxyFault, req: ProxyRequestInfo): boolean;
  /** Requests whose response body `flipByte` may hit. Default: GETs. Only 2xx bodies are ever flipped. */
  canFlip?(req: ProxyRequestInfo): boolean;
  /** Error body style of `slowDown` and `tooManyRequests`. Default `s3`. */
  protocol?: ProxyProtocol;
  /** Retry-After of `tooManyRequests`, in seconds. Default 1. */
  retryAfterSeconds?: number;
  /** How long `stall` holds a request before dropping it. Default 5000 ms. */
  stallMs?: number;
  /** Requests served before the proxy answers 503 to everything (a runaway client cannot loop forever). Default 10 000. */
  maxRequests?: number;
  /** The proxy closes itself after this long, so a failed test never leaves it listening. Default 300 000 ms. */
  lifetimeMs?: number;
}

/** One request as the proxy saw it. */
export interface ProxyLogEntry {
  n: number;
  method: string;
  path: string;
  /** The Range header, if any (`bytes=1000-`). */
  range?: string;
  /** The If-Match header, if any. */
  ifMatch?: string;
  /** The Content-Range header, if any (GCS resumable chunks: `bytes 0-262143/*`). */
  contentRange?: string;
  /** The server-side copy source header, if any (S3 `x-amz-copy-source`, Azure `x-ms-copy-source`). */
  copySource?: string;
  /** The request's Content-Length (bytes it carried). */
  bodyBytes?: number;
  fault?: ProxyFault;
  /** Status sent to the client (undefined when the connection was dropped before one). */
  status?: number;
  /** For resetResponse/flipByte: the body byte where the fault hit. */
  at?: number;
}

const ALL_FAULTS: ProxyFault[] = ['resetRequest', 'resetResponse', 'slowDown', 'tooManyRequests', 'stall', 'flipByte'];

/**
 * A fault-injecting HTTP proxy on loopback, between a real SDK (pointed at `proxy.url`) and a
 * real emulator. The schedule is seeded, every request is logged (method, path, Range, the fault
 * injected) for assertions, and the proxy is bounded in requests and lifetime.
 *
 * @example
 * const proxy = await FaultProxy.start({ upstream: process.env.S3_ENDPOINT!, rate: 0.2, seed: 7 });
 * const s3 = new S3Store({ endpoint: proxy.url, … });
 * …
 * expect(proxy.log.filter((e) => e.fault === 'resetResponse')).not.toHaveLength(0);
 * await proxy.close();
 */
export class FaultProxy {
  readonly log: ProxyLogEntry[] = [];
  private readonly random: () => number;
  private readonly upstream: URL;
  private readonly sockets = new Set<Socket>();
  private readonly lifetime: NodeJS.Timeout;
  private closed = false;

  private constructor(private readonly server: Server, private options: FaultProxyOptions) {
    this.random = seededRandom(options.seed ?? 1);
    this.upstream = new URL(options.upstream);
    this.lifetime = setTimeout(() => void this.close(), options.lifetimeMs ?? 300_000);
    this.lifetime.unref();
  }

  /** Starts a proxy on a free loopback port. */
  static async start(options: FaultProxyOptions): Promise<FaultProxy> {
    const server = createServer();
    const proxy = new FaultProxy(server, options);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => proxy.handle(req, res));
    server.on('connection', (s: Socket) => {
      proxy.sockets.add(s);
      s.once('close', () => proxy.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  /** `http://127.0.0.1:<port>`. */
  get url(): string {
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}`;
  }

  /** Changes the fault rate (e.g. 0 to heal). */
  setRate(rate: number): void {
    this.options = { ...this.options, rate };
  }

  /** Faults injected so far, by kind. */
  faultCounts(): Partial<Record<ProxyFault, number>> {
    const out: Partial<Record<ProxyFault, number>> = {};
    for (const e of this.log) if (e.fault) out[e.fault] = (out[e.fault] ?? 0) + 1;
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.lifetime);
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private pick(n: number, info: ProxyRequestInfo): ProxyFault | undefined {
    const decided = this.options.decide?.(info, n);
    if (decided !== undefined) return decided ?? undefined;
    const scripted = this.options.script?.[n];
    if (scripted !== undefined) return scripted ?? undefined;
    if (!this.options.rate || (this.options.match && !this.options.match(info))) return undefined;
    if (this.random() >= this.options.rate) return undefined;
    const canFlip = this.options.canFlip ? this.options.canFlip(info) : info.method === 'GET';
    const kinds = ALL_FAULTS.filter((k) => (k !== 'flipByte' || canFlip) && (this.options.weights?.[k] ?? 1) > 0 && (this.options.allow?.(k, info) ?? true));
    if (kinds.length === 0) return undefined;
    const total = kinds.reduce((s, k) => s + (this.options.weights?.[k] ?? 1), 0);
    let r = this.random() * total;
    for (const k of kinds) {
      r -= this.options.weights?.[k] ?? 1;
      if (r < 0) return k;
    }
    return kinds[kinds.length - 1];
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const n = this.log.length + 1;
    const info: ProxyRequestInfo = { method: req.method ?? 'GET', path: req.url ?? '/', headers: req.headers };
    const entry: ProxyLogEntry = { n, method: info.method, path: info.path };
    // Azure sends its range and condition as x-ms-range / If-Match.
    const range = req.headers.range ?? req.headers['x-ms-range'];
    if (typeof range === 'string') entry.range = range;
    if (typeof req.headers['if-match'] === 'string') entry.ifMatch = req.headers['if-match'];
    if (typeof req.headers['content-range'] === 'string') entry.contentRange = req.headers['content-range'];
    const copySource = req.headers['x-amz-copy-source'] ?? req.headers['x-ms-copy-source'];
    if (typeof copySource === 'string') entry.copySource = copySource;
    if (req.headers['content-length'] !== undefined) entry.bodyBytes = Number(req.headers['content-length']);
    this.log.push(entry);
    if (n > (this.options.maxRequests ?? 10_000)) {
      req.resume();
      res.writeHead(503, { 'content-type': 'text/plain' }).end('fault proxy: request budget spent');
      entry.status = 503;
      return;
    }
    const fault = this.pick(n, info);
    if (fault) entry.fault = fault;
    switch (fault) {
      case 'resetRequest': {
        const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
        // Let a little of the body arrive, if there is one, then drop the connection.
        if (hasBody) req.once('data', () => req.socket.destroy()).resume();
        else req.socket.destroy();
        return;
      }
      case 'slowDown':
      case 'tooManyRequests':
        req.resume();
        req.once('end', () => {
          const status = fault === 'slowDown' ? 503 : 429;
          entry.status = status;
          const { headers, body } = errorDocument(this.options.protocol ?? 's3', status);
          if (status === 429) headers['retry-after'] = String(this.options.retryAfterSeconds ?? 1);
          res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(body) }).end(info.method === 'HEAD' ? undefined : body);
        });
        return;
      case 'stall': {
        req.resume();
        const t = setTimeout(() => req.socket.destroy(), this.options.stallMs ?? 5000);
        req.socket.once('close', () => clearTimeout(t));
        return;
      }
      default:
        this.forward(req, res, entry, fault);
    }
  }

  private forward(req: IncomingMessage, res: ServerResponse, entry: ProxyLogEntry, fault: 'resetResponse' | 'flipByte' | undefined): void {
    const up = httpRequest({
      host: this.upstream.hostname,
      port: this.upstream.port,
      method: req.method,
      path: req.url,
      // Unchanged, Host included: the SDK signed them.
      headers: req.headers,
    }, (upRes) => {
      const length = Number(upRes.headers['content-length'] ?? NaN);
      const hasBody = req.method !== 'HEAD' && upRes.statusCode !== 204 && upRes.statusCode !== 304 && length > 0;
      entry.status = upRes.statusCode;
      const ok = (upRes.statusCode ?? 500) >= 200 && (upRes.statusCode ?? 500) < 300;
      if (fault === 'flipByte' && (!ok || !hasBody)) {
        // An error document or an empty body: nothing a client could verify, so no fault.
        delete entry.fault;
        fault = undefined;
      }
      res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, upRes.headers);
      if (fault === 'resetResponse' && !hasBody) {
        // Nothing to cut in the middle of: drop the connection after the headers.
        res.flushHeaders();
        upRes.destroy();
        setImmediate(() => req.socket.destroy());
        return;
      }
      const at = hasBody && fault ? Math.floor(this.random() * length) : -1;
      if (at >= 0) entry.at = at;
      let pos = 0;
      upRes.on('data', (chunk: Buffer) => {
        const start = pos;
        pos += chunk.byteLength;
        if (at >= start && at < pos) {
          const i = at - start;
          if (fault === 'resetResponse') {
            res.write(chunk.subarray(0, i), () => req.socket.destroy());
            upRes.destroy();
            return;
          }
          const copy = Buffer.from(chunk);
          copy[i] = copy[i]! ^ 0x01;
          chunk = copy;
        }
        if (!res.write(chunk)) {
          upRes.pause();
          res.once('drain', () => upRes.resume());
        }
      });
      upRes.on('end', () => res.end());
      upRes.on('error', () => req.socket.destroy());
    });
    up.on('error', () => req.socket.destroy());
    req.on('error', () => up.destroy());
    res.on('close', () => { if (!res.writableFinished) up.destroy(); });
    req.pipe(up);
  }
}

/** The proxy's own throttling answer (503 or 429) as `protocol`'s service would write it. */
function errorDocument(protocol: ProxyProtocol, status: 503 | 429): { headers: Record<string, string>; body: string } {
  switch (protocol) {
    case 'gcs': {
      const reason = status === 503 ? 'backendError' : 'rateLimitExceeded';
      const message = status === 503 ? 'Backend Error' : 'The rate of requests is too high.';
      return {
        headers: { 'content-type': 'application/json; charset=UTF-8' },
        body: JSON.stringify({ error: { code: status, message, errors: [{ domain: 'global', reason, message }] } }),
      };
    }
    case 'azure': {
      // Azure answers 503 ServerBusy when an account or partition is over its targets.
      const code = status === 503 ? 'ServerBusy' : 'TooManyRequests';
      const message = status === 503 ? 'The server is busy.' : 'Too many requests.';
      return {
        headers: { 'content-type': 'application/xml', 'x-ms-error-code': code, 'x-ms-request-id': 'fault-proxy' },
        body: `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${message}\nRequestId:fault-proxy</Message></Error>`,
      };
    }
    default:
      return status === 503
        ? { headers: { 'content-type': 'application/xml' }, body: '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>fault-proxy</RequestId></Error>' }
        : { headers: { 'content-type': 'application/xml' }, body: '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>TooManyRequests</Code><Message>Too many requests.</Message></Error>' };
  }
}
