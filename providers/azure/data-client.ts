import { randomUUID } from 'node:crypto';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { createPooledAgents, isStaleConnectionError } from '../../src/core/pooled-agents.js';
import { sharedKeyAuthorization } from './shared-key.js';

/**
 * The service version cloudmux speaks on the requests it sends itself: the one @azure/storage-blob
 * 12.32 sends, so both paths see the same service behaviour.
 */
export const AZURE_SERVICE_VERSION = '2026-04-06';
const USER_AGENT = `cloudmux Node/${process.version.slice(1)} (${process.platform}; ${process.arch})`;
/** Error answers are small XML documents; anything bigger is not kept. */
const MAX_ERROR_BODY = 64 * 1024;
/** Names encodeURIComponent leaves as they are, segment by segment. */
const UNRESERVED_PATH = /^[A-Za-z0-9\-_.!~*'()/]*$/;
/** Conditions whose replay could fail a write that in fact succeeded. */
const CONDITIONAL = /^if-/;

/** How the data client authenticates: the two credentials it signs with itself. */
export type DataClientAuth = { kind: 'sharedKey'; account: string; accountKey: string } | { kind: 'sas'; sasToken: string };

/** What a successful write answers, as far as ObjectMeta needs it. */
export interface WriteResponse {
  etag?: string;
  lastModified?: Date;
  versionId?: string;
}

/** A Get Blob answer: the blob's properties from the response headers, and its (unread) body. */
export interface DownloadResponse {
  contentLength?: number;
  contentRange?: string;
  etag?: string;
  versionId?: string;
  lastModified?: Date;
  contentType?: string;
  metadata?: Record<string, string>;
  contentMD5?: Uint8Array;
  blobContentMD5?: Uint8Array;
  body?: Readable;
}

export interface PutBlobHeaders {
  blobContentType: string;
  /** Base64 of the 16 MD5 bytes, recorded as the blob's Content-MD5. */
  blobContentMD5: string;
  /** Base64 of the 16 MD5 bytes Azure checks the body against on arrival. */
  transactionalMD5: string;
  metadata: Record<string, string>;
  ifMatch?: string;
  ifNoneMatch?: string;
}

export interface GetBlobOptions {
  offset: number;
  count?: number;
  ifMatch?: string;
  ifNoneMatch?: string;
}

/**
 * A failed answer, shaped like the SDK's RestError as far as mapAzureError reads one (status,
 * service error code, message, headers), so both paths are mapped by the same function. It carries
 * neither the URL (a SAS) nor the request headers (a signature).
 */
export class AzureResponseError extends Error {
  override readonly name = 'RestError';
  readonly details: { errorCode?: string };
  readonly response: { headers: { get(name: string): string | undefined } };

  constructor(readonly statusCode: number, readonly code: string | undefined, message: string, headers: IncomingHttpHeaders) {
    super(message);
    this.details = { errorCode: code };
    this.response = { headers: { get: (name) => header(headers, name) } };
  }
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v.join(', ') : v;
}

function date(v: string | undefined): Date | undefined {
  return v === undefined ? undefined : new Date(v);
}

function bytes(b64: string | undefined): Uint8Array | undefined {
  return b64 === undefined ? undefined : Buffer.from(b64, 'base64');
}

const XML_ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function xmlText(xml: string, element: string): string | undefined {
  const m = new RegExp(`<${element}>([\\s\\S]*?)</${element}>`).exec(xml);
  return m?.[1]?.replace(/&(lt|gt|amp|quot|apos);/g, (_, e: string) => XML_ENTITIES[e]!);
}

function envValue(name: string, env: NodeJS.ProcessEnv): string | undefined {
  return env[name] || env[name.toLowerCase()] || undefined;
}

/**
 * Whether the SDK would send requests to `endpoint` through a proxy named in the environment
 * (its rule: HTTPS_PROXY, else ALL_PROXY, else HTTP_PROXY, upper or lower case, unless NO_PROXY
 * lists the host or a `.suffix` of it). The data client speaks to the endpoint directly, so the
 * store leaves such requests to the SDK.
 */
export function proxiedByEnvironment(endpoint: string, env: NodeJS.ProcessEnv = process.env): boolean {
  if (!(envValue('HTTPS_PROXY', env) ?? envValue('ALL_PROXY', env) ?? envValue('HTTP_PROXY', env))) return false;
  const host = new URL(endpoint).hostname;
  const bypass = (envValue('NO_PROXY', env) ?? '').split(',').map((p) => p.trim()).filter(Boolean);
  return !bypass.some((p) => (p.startsWith('.') ? host.endsWith(p) || host === p.slice(1) : host === p));
}

/**
 * cloudmux's own client for the hot data-path requests of block blobs: Put Blob, Put Block and
 * Get Blob, sent with node:http over keep-alive pools no other code touches, signed here with the
 * shared key or carrying the SAS. The SDK's generated client, serializers and policy pipeline
 * cost more CPU per small request than the transfer itself; everything else stays on the SDK.
 * Azure AD credentials are not handled here (the SDK's token cycling and CAE challenges stay with
 * the SDK). No retries: a request that met a pooled connection the server had closed before
 * answering is sent once more on a fresh one when repeating it is safe (see createPooledAgents).
 */
export class AzureDataClient {
  /** No socket cap, as with the SDK's agent: a caller holding many unread download bodies must not starve its next request. */
  private readonly agents = createPooledAgents();
  private readonly secure: boolean;
  private readonly hostname: string;
  private readonly port: string;
  /** URL path of the container, percent-encoded, without a trailing `/`. */
  private readonly containerPath: string;
  private readonly key: Buffer | undefined;
  /** The Host header (a request given its headers as a list gets none from node:http). */
  private readonly host: string;
  private dateSecond = 0;
  private dateText = '';

  constructor(endpoint: string, container: string, private readonly auth: DataClientAuth) {
    const u = new URL(endpoint);
    this.secure = u.protocol === 'https:';
    this.hostname = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
    this.port = u.port;
    this.host = u.host;
    this.containerPath = `${u.pathname.replace(/\/+$/, '')}/${encodeURIComponent(container)}`;
    this.key = auth.kind === 'sharedKey' ? Buffer.from(auth.accountKey, 'base64') : undefined;
  }

  /** Put Blob (block blob) of one in-memory body. */
  async putBlob(blobName: string, body: Buffer, h: PutBlobHeaders, signal?: AbortSignal): Promise<WriteResponse> {
    const headers = [
      'content-type', 'application/octet-stream',
      'content-md5', h.transactionalMD5,
      'x-ms-blob-type', 'BlockBlob',
      'x-ms-blob-content-type', h.blobContentType,
      'x-ms-blob-content-md5', h.blobContentMD5,
    ];
    for (const k in h.metadata) headers.push(`x-ms-meta-${k}`, h.metadata[k]!);
    if (h.ifMatch !== undefined) headers.push('if-match', h.ifMatch);
    if (h.ifNoneMatch !== undefined) headers.push('if-none-match', h.ifNoneMatch);
    const res = await this.send('PUT', this.blobPath(blobName), [], headers, body, signal);
    await drained(res);
    return { etag: header(res.headers, 'etag'), lastModified: date(header(res.headers, 'last-modified')), versionId: header(res.headers, 'x-ms-version-id') };
  }

  /** Put Block, with its transactional MD5 (base64) when given. */
  async putBlock(blobName: string, blockId: string, body: Buffer, md5: string | undefined, signal?: AbortSignal): Promise<void> {
    const headers = ['content-type', 'application/octet-stream', ...(md5 !== undefined ? ['content-md5', md5] : [])];
    await drained(await this.send('PUT', this.blobPath(blobName), [['comp', 'block'], ['blockid', blockId]], headers, body, signal));
  }

  /**
   * Get Blob, resolved once the headers arrived. The caller owns the body: reading it to the end
   * returns the socket to the pool, destroying it closes the socket.
   */
  async getBlob(blobName: string, o: GetBlobOptions, signal?: AbortSignal): Promise<DownloadResponse> {
    const headers: string[] = [];
    // The SDK's rule: no range for a whole-blob read, an open range for a count of 0.
    if (o.offset !== 0 || o.count) headers.push('x-ms-range', o.count ? `bytes=${o.offset}-${o.offset + o.count - 1}` : `bytes=${o.offset}-`);
    if (o.ifMatch !== undefined) headers.push('if-match', o.ifMatch);
    if (o.ifNoneMatch !== undefined) headers.push('if-none-match', o.ifNoneMatch);
    const res = await this.send('GET', this.blobPath(blobName), [], headers, undefined, signal);
    const h = res.headers;
    const metadata: Record<string, string> = {};
    for (const name of Object.keys(h)) {
      if (name.startsWith('x-ms-meta-')) metadata[name.slice(10)] = header(h, name)!;
    }
    const length = header(h, 'content-length');
    return {
      contentLength: length === undefined ? undefined : Number(length),
      contentRange: header(h, 'content-range'),
      etag: header(h, 'etag'),
      versionId: header(h, 'x-ms-version-id'),
      lastModified: date(header(h, 'last-modified')),
      contentType: header(h, 'content-type'),
      metadata,
      contentMD5: bytes(header(h, 'content-md5')),
      blobContentMD5: bytes(header(h, 'x-ms-blob-content-md5')),
      body: res,
    };
  }

  /** x-ms-date: the current time in RFC 1123 form, formatted once per second. */
  private httpDate(): string {
    const second = Math.floor(Date.now() / 1000);
    if (second !== this.dateSecond) {
      this.dateSecond = second;
      this.dateText = new Date(second * 1000).toUTCString();
    }
    return this.dateText;
  }

  close(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  private blobPath(blobName: string): string {
    // The SDK's escaping: each segment percent-encoded, `/` kept. Most names need none.
    const escaped = UNRESERVED_PATH.test(blobName) ? blobName : blobName.split('/').map(encodeURIComponent).join('/');
    return `${this.containerPath}/${escaped}`;
  }

  /**
   * Sends one request and resolves with a 2xx answer once its headers arrive; any other answer is
   * read and thrown as an AzureResponseError. Stale pooled connections: see the class comment.
   */
  private async send(method: 'GET' | 'PUT', path: string, query: [string, string][], headers: string[], body: Buffer | undefined, signal: AbortSignal | undefined): Promise<IncomingMessage> {
    let res: IncomingMessage;
    try {
      res = await this.once(method, path, query, headers, body, signal);
    } catch (e) {
      const repeatable = method === 'GET' || !headers.some((h, i) => i % 2 === 0 && CONDITIONAL.test(h));
      if (!isStaleConnectionError(e) || !repeatable || signal?.aborted) throw e;
      res = await this.once(method, path, query, headers, body, signal);
    }
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) return res;
    const text = await errorText(res);
    const code = header(res.headers, 'x-ms-error-code') ?? xmlText(text, 'Code');
    throw new AzureResponseError(status, code, xmlText(text, 'Message') ?? `Unexpected status code: ${status}`, res.headers);
  }

  /** Sends one request; `extra` is a flat `[name, value…]` list with lower-case names (it goes to node:http as is, past its per-header bookkeeping). */
  private once(method: string, path: string, query: [string, string][], extra: readonly string[], body: Buffer | undefined, signal: AbortSignal | undefined): Promise<IncomingMessage> {
    const headers = [
      ...extra,
      'host', this.host,
      'x-ms-version', AZURE_SERVICE_VERSION,
      'x-ms-date', this.httpDate(),
      'x-ms-client-request-id', randomUUID(),
      'accept', 'application/xml',
      'user-agent', USER_AGENT,
    ];
    if (body) headers.push('content-length', String(body.byteLength));
    let search = query.length === 0 ? '' : query.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&');
    if (this.auth.kind === 'sharedKey') headers.push('authorization', sharedKeyAuthorization(this.auth.account, this.key!, method, path, query, headers));
    else search = search ? `${search}&${this.auth.sasToken}` : this.auth.sasToken;
    const secure = this.secure;
    return new Promise((resolve, reject) => {
      const req = (secure ? httpsRequest : httpRequest)({
        method,
        hostname: this.hostname,
        port: this.port,
        path: search ? `${path}?${search}` : path,
        agent: secure ? this.agents.https : this.agents.http,
        headers,
        ...(signal ? { signal } : {}),
      }, resolve);
      req.once('error', reject);
      req.end(body);
    });
  }
}

/**
 * Reads a write's (empty) answer to its end: its socket is back in the pool before the caller
 * sends the next request, which would otherwise open another connection.
 */
function drained(res: IncomingMessage): Promise<void> {
  return new Promise((resolve, reject) => {
    res.once('end', resolve);
    res.once('error', reject);
    res.resume();
  });
}

/** The text of an error answer, read to its end so its socket goes back to the pool. */
async function errorText(res: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res) {
      if (size < MAX_ERROR_BODY) parts.push(chunk as Buffer);
      size += (chunk as Buffer).byteLength;
    }
  } catch {
    // The status and headers are the answer; a cut error body loses only its message.
  }
  return Buffer.concat(parts).toString('utf8');
}
