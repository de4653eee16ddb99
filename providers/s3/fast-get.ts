import { request as httpRequest, type Agent as HttpAgent, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest, type Agent as HttpsAgent } from 'node:https';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { isStaleConnectionError } from '../../src/core/pooled-agents.js';

/** The fields of a GetObject / HeadObject answer the store reads; the SDK's outputs have the same shape. */
export interface ObjectResponse {
  Body?: Readable;
  ETag?: string;
  VersionId?: string;
  LastModified?: Date;
  ContentType?: string;
  ContentLength?: number;
  ContentRange?: string;
  Metadata?: Record<string, string>;
  ChecksumSHA256?: string;
  ChecksumCRC32C?: string;
  ChecksumType?: string;
  ServerSideEncryption?: string;
  SSECustomerAlgorithm?: string;
}

/** What the reader needs from the store beside the SDK client. */
export interface FastReadOptions {
  bucket: string;
  /** The endpoint as configured (absent: AWS); handed to the SDK's own endpoint rules. */
  endpoint: string | undefined;
  agents: { http: HttpAgent; https: HttpsAgent };
  /** The SDK handler's connection timeout, mirrored so both paths fail alike. */
  connectionTimeoutMs: number;
}

/** Where every request of this store goes and how it is signed: resolved once, from the SDK's own rules. */
interface Target {
  https: boolean;
  hostname: string;
  port: number | undefined;
  /** Host header (with a non-default port). */
  host: string;
  /** Path before `/key`: the endpoint's path, with `/bucket` when path-style; empty for "/". */
  basePath: string;
  signingRegion: string;
  signingService: string;
  signer: { sign(request: unknown, options: Record<string, unknown>): Promise<{ headers: Record<string, string> }> };
}

/** The parts of the SDK client's resolved config this module reads (not part of S3Client's public types). */
interface ClientConfig {
  endpointProvider(params: Record<string, unknown>, context?: Record<string, unknown>): { url: URL; properties?: { authSchemes?: AuthScheme[]; backend?: string } };
  signer(authScheme: AuthScheme): Promise<Target['signer']>;
  region(): Promise<string>;
  systemClockOffset?: number;
  followRegionRedirects?: boolean;
  [k: string]: unknown;
}

interface AuthScheme {
  name: string;
  signingName?: string;
  signingRegion?: string;
  disableDoubleEncoding?: boolean;
  [k: string]: unknown;
}

/** SHA-256 of an empty payload: what the SDK sends as x-amz-content-sha256 on GET and HEAD. */
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const USER_AGENT = 'cloudmux';
/** The SDK corrects its signing clock when the server's Date is this far off (getUpdatedSystemClockOffset). */
const CLOCK_SKEW_MS = 300_000;
/** Error bodies are small XML documents; more than this is not one. */
const MAX_ERROR_BODY = 64 * 1024;
/** Node errors the SDK's handler renames to TimeoutError (NODEJS_TIMEOUT_ERROR_CODES). */
const TIMEOUT_CODES = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT']);
const META = 'x-amz-meta-';
/** Keys made only of these need no encoding (most keys): the check is cheaper than the encoding. */
const UNRESERVED_PATH = /^[A-Za-z0-9\-._~/]*$/;

/**
 * GetObject and HeadObject without the SDK's middleware stack: the request is signed with the
 * client's own signer (`config.signer`, SigV4 with its credential provider, region and clock-skew
 * offset), addressed by the client's own endpoint rules (`config.endpointProvider`, so path-style,
 * virtual-hosted, endpoint paths, FIPS/dual-stack settings come out as the SDK would send them),
 * and sent with node:http(s) over the driver's pooled agents. The answer is handed back in the
 * SDK's output shape, and failures as SDK-shaped errors, so the store maps both through the same
 * code (metaFrom, mapS3Error) whichever path served the request. It costs a fraction of the CPU
 * of `client.send` (~0.6 ms per small GET, mostly middleware, serde and endpoint resolution).
 *
 * Same transport behaviour as the SDK path: a request that meets a pooled connection the server
 * had closed is sent once more (GET and HEAD are safe to repeat); the SDK handler's connection
 * timeout; an abort destroys the request (and the body stream, if it is flowing); connection
 * resets are named TimeoutError as the SDK's handler names them.
 *
 * `read` answers `undefined` when the request must go through the SDK instead:
 * - the endpoint rules did not resolve (e.g. no region on AWS; the SDK then reports it), or name
 *   anything but plain SigV4 for this bucket (S3 Express directory buckets, SigV4a, ...);
 * - the bucket lives in another region than the client's (an answer the SDK's region redirect
 *   follows: x-amz-bucket-region with a 301, or with a 400 IllegalLocationConstraintException, when
 *   the client follows region redirects): that answer is discarded and from then on every read of
 *   this store takes the SDK path.
 */
export class FastObjectReader {
  private target: Promise<Target | undefined> | undefined;
  private disabled = false;
  /** The last Date header checked for skew: servers send the same one for a whole second. */
  private lastDate: string | undefined;
  private readonly config: ClientConfig;

  constructor(client: S3Client, private readonly options: FastReadOptions) {
    this.config = client.config as unknown as ClientConfig;
  }

  /**
   * Sends a GET or HEAD for the bucket key with `headers` (Range, If-Match, ...). Resolves with the
   * answer (GET: Body is the response stream, not yet read), rejects with an SDK-shaped error for
   * an error answer, or resolves `undefined` when the SDK path must serve this request.
   */
  async read(method: 'GET' | 'HEAD', bucketKey: string, headers: Record<string, string>, signal: AbortSignal | undefined): Promise<ObjectResponse | undefined> {
    if (this.disabled) return undefined;
    const t = await (this.target ??= this.resolveTarget());
    if (!t || this.disabled) return undefined;
    if (signal?.aborted) throw abortError(signal);
    const path = `${t.basePath}/${encodeKey(bucketKey)}`;
    const offset = this.config.systemClockOffset ?? 0;
    const signed = await t.signer.sign({
      method, protocol: t.https ? 'https:' : 'http:', hostname: t.hostname, port: t.port, path, query: {},
      headers: { ...headers, host: t.host, 'x-amz-content-sha256': EMPTY_SHA256 },
    }, { signingDate: new Date(Date.now() + offset), signingRegion: t.signingRegion, signingService: t.signingService });
    const out: OutgoingHttpHeaders = { ...signed.headers, 'user-agent': USER_AGENT };
    let res: IncomingMessage;
    try {
      res = await this.send(t, method, path, out, signal);
    } catch (e) {
      // The request never reached S3's application: not a retry (transport.ts, resendOnStaleConnection).
      if (!isStaleConnectionError(e)) throw e;
      res = await this.send(t, method, path, out, signal);
    }
    this.correctClock(res);
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) {
      // The connection goes back to the pool at the end of the (empty) body: before the caller's next request.
      if (method === 'HEAD') await drain(res);
      return responseFrom(res, method);
    }
    const error = await errorFrom(res);
    // What the SDK's regionRedirectMiddleware follows: the SDK path serves this store from now on.
    if (this.config.followRegionRedirects && res.headers['x-amz-bucket-region']
      && (status === 301 || (status === 400 && error.name === 'IllegalLocationConstraintException'))) {
      this.disabled = true;
      return undefined;
    }
    throw error;
  }

  /** The SDK's own endpoint rules and signer for this bucket; undefined when they call for anything but plain SigV4. */
  private async resolveTarget(): Promise<Target | undefined> {
    const c = this.config;
    try {
      const value = async (v: unknown): Promise<unknown> => (typeof v === 'function' ? await (v as () => unknown)() : v);
      const region = await c.region();
      const endpoint = c.endpointProvider({
        Bucket: this.options.bucket,
        Region: region,
        Endpoint: this.options.endpoint,
        ForcePathStyle: await value(c.forcePathStyle),
        UseFIPS: await value(c.useFipsEndpoint),
        UseDualStack: await value(c.useDualstackEndpoint),
        Accelerate: await value(c.useAccelerateEndpoint),
        UseGlobalEndpoint: await value(c.useGlobalEndpoint),
        UseArnRegion: await value(c.useArnRegion),
        DisableMultiRegionAccessPoints: await value(c.disableMultiregionAccessPoints),
        DisableS3ExpressSessionAuth: await value(c.disableS3ExpressSessionAuth),
      }, {});
      const scheme = endpoint.properties?.authSchemes?.[0];
      if (!scheme || scheme.name !== 'sigv4' || !scheme.signingRegion || scheme.signingRegion === '*' || endpoint.properties?.backend) return undefined;
      const url = endpoint.url;
      if (url.search || (url.protocol !== 'http:' && url.protocol !== 'https:')) return undefined;
      const signer = await c.signer({ ...scheme });
      const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
      return {
        https: url.protocol === 'https:',
        hostname,
        port: url.port ? Number(url.port) : undefined,
        host: url.host,
        // As the SDK joins them: `/{Key+}` appended to the endpoint's path unless that is just "/".
        basePath: url.pathname === '/' ? '' : url.pathname,
        signingRegion: scheme.signingRegion,
        signingService: scheme.signingName ?? 's3',
        signer,
      };
    } catch {
      // The SDK path meets the same failure and reports it through its own error.
      return undefined;
    }
  }

  /** One request; resolves at the response head. */
  private send(t: Target, method: string, path: string, headers: OutgoingHttpHeaders, signal: AbortSignal | undefined): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      // Signing is asynchronous: the signal may have fired since read() looked.
      if (signal?.aborted) {
        reject(abortError(signal));
        return;
      }
      let connectTimer: NodeJS.Timeout | undefined;
      let settled = false;
      const settle = (): boolean => {
        if (settled) return false;
        settled = true;
        if (connectTimer) clearTimeout(connectTimer);
        return true;
      };
      const req: ClientRequest = (t.https ? httpsRequest : httpRequest)({
        host: t.hostname, port: t.port, method, path, headers, agent: t.https ? this.options.agents.https : this.options.agents.http,
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (!settle()) return;
        if (TIMEOUT_CODES.has(e.code ?? '')) e.name = 'TimeoutError';
        reject(e);
      });
      req.once('response', (res) => {
        if (settle()) resolve(res);
        else res.resume();
      });
      req.once('socket', (socket: Socket) => {
        if (!socket.connecting || settled) return;
        const ms = this.options.connectionTimeoutMs;
        connectTimer = setTimeout(() => {
          if (!settle()) return;
          req.destroy();
          reject(Object.assign(new Error(`the request socket did not establish a connection with the server within ${ms} ms`), { name: 'TimeoutError' }));
        }, ms);
        socket.once('connect', () => {
          if (connectTimer) clearTimeout(connectTimer);
        });
      });
      if (signal) {
        // Until the request is done, body included: an abort mid-body destroys the stream too.
        const onAbort = (): void => {
          req.destroy();
          if (settle()) reject(abortError(signal));
        };
        signal.addEventListener('abort', onAbort, { once: true });
        req.once('close', () => signal.removeEventListener('abort', onAbort));
      }
      req.end();
    });
  }

  /** As the SDK's signer does on every answer: a server clock 5 minutes off becomes the signing clock. */
  private correctClock(res: IncomingMessage): void {
    const date = res.headers.date;
    if (!date || date === this.lastDate) return;
    this.lastDate = date;
    const server = Date.parse(date);
    if (Number.isNaN(server)) return;
    const offset = this.config.systemClockOffset ?? 0;
    if (Math.abs(Date.now() + offset - server) >= CLOCK_SKEW_MS) this.config.systemClockOffset = server - Date.now();
  }
}

/** The key as the SDK puts it in the path: each segment URI-encoded, `!'()*` too. */
export function encodeKey(key: string): string {
  if (UNRESERVED_PATH.test(key)) return key;
  return key.split('/').map((s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)).join('/');
}

function responseFrom(res: IncomingMessage, method: string): ObjectResponse {
  const h = res.headers;
  const metadata: Record<string, string> = {};
  for (const name in h) {
    if (!name.startsWith(META)) continue;
    const v = h[name];
    const short = name.slice(META.length);
    if (typeof v === 'string' && short !== '__proto__') metadata[short] = v;
  }
  const length = h['content-length'];
  const lastModified = h['last-modified'];
  let modified: Date | undefined;
  if (lastModified !== undefined) {
    modified = new Date(lastModified);
    if (Number.isNaN(modified.getTime())) {
      res.destroy();
      throw new Error(`the server sent an unreadable Last-Modified header: ${JSON.stringify(lastModified.slice(0, 64))}`);
    }
  }
  return {
    Body: method === 'HEAD' ? undefined : res,
    ETag: h.etag,
    VersionId: str(h['x-amz-version-id']),
    LastModified: modified,
    ContentType: h['content-type'],
    ContentLength: length === undefined ? undefined : Number(length),
    ContentRange: h['content-range'],
    Metadata: metadata,
    ChecksumSHA256: str(h['x-amz-checksum-sha256']),
    ChecksumCRC32C: str(h['x-amz-checksum-crc32c']),
    ChecksumType: str(h['x-amz-checksum-type']),
    ServerSideEncryption: str(h['x-amz-server-side-encryption']),
    SSECustomerAlgorithm: str(h['x-amz-server-side-encryption-customer-algorithm']),
  };
}

/** Reads a body to its end (or its failure) and discards it. */
function drain(res: IncomingMessage): Promise<void> {
  return new Promise((resolve) => {
    if (res.readableEnded || res.destroyed) {
      resolve();
      return;
    }
    res.once('end', resolve);
    res.once('close', resolve);
    res.resume();
  });
}

function str(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(',') : v;
}

/**
 * An error answer as the SDK would throw it: named after the XML `<Code>` (404 without one:
 * NotFound, else Unknown), with `$metadata.httpStatusCode` and the request id, for mapS3Error.
 */
async function errorFrom(res: IncomingMessage): Promise<Error> {
  const status = res.statusCode ?? 0;
  let xml = '';
  try {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of res as AsyncIterable<Buffer>) {
      if (size < MAX_ERROR_BODY) chunks.push(c);
      size += c.byteLength;
    }
    xml = Buffer.concat(chunks).toString('utf8');
  } catch {
    // A body cut short still leaves the status to go by.
  }
  const code = xmlField(xml, 'Code');
  const name = code ?? (status === 404 ? 'NotFound' : 'Unknown');
  const message = xmlField(xml, 'Message') ?? 'UnknownError';
  const requestId = str(res.headers['x-amz-request-id']) ?? xmlField(xml, 'RequestId');
  return Object.assign(new Error(message), {
    name,
    ...(code !== undefined ? { Code: code } : {}),
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status, requestId, extendedRequestId: str(res.headers['x-amz-id-2']), attempts: 1, totalRetryDelay: 0 },
    $response: { statusCode: status, headers: { ...res.headers } },
  });
}

function xmlField(xml: string, tag: string): string | undefined {
  const m = new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(xml);
  return m ? unescapeXml(m[1]!) : undefined;
}

function unescapeXml(s: string): string {
  return s.replace(/&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-fA-F]+);/g, (_, e: string) => {
    switch (e) {
      case 'lt': return '<';
      case 'gt': return '>';
      case 'amp': return '&';
      case 'quot': return '"';
      case 'apos': return '\'';
      default: return String.fromCodePoint(e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
    }
  });
}

/** What the SDK's handler rejects with on an abort (buildAbortError). */
function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  const e = new Error(reason instanceof Error || reason === undefined ? 'Request aborted' : String(reason));
  e.name = 'AbortError';
  if (reason instanceof Error) e.cause = reason;
  return e;
}
