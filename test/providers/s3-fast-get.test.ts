import { execFileSync } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent as HttpAgent, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent, createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Socket as NetSocket, type AddressInfo, type Socket } from 'node:net';
import { GetObjectCommand, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { S3Store, fromUrl, mapS3Error, type S3StoreOptions } from '../../providers/s3/index.js';
import { FastObjectReader } from '../../providers/s3/fast-get.js';
import { CloudmuxError, collect, encodeMetadataValue, listAll, type GetOptions, type GetResult } from '../../src/core/index.js';
import { expectCode } from '../../src/testing/index.js';
import { emulatorOptions } from '../harness/s3.js';

/**
 * The S3 driver's own GET/HEAD path (providers/s3/fast-get.ts) against the SDK path: same meta,
 * same bytes, same errors; requests signed as S3 checks them; the cases that go to the SDK.
 */

const SECRET = 'fast-get-secret-value-0123456789';
const CREDS = { accessKeyId: 'AKIAFASTGET', secretAccessKey: SECRET, sessionToken: 'session-token-fast-get' };

// ---------------------------------------------------------------------------------------------
// A SigV4 check written from the spec, not from the SDK: what S3 recomputes for a request.

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

function rfc3986(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function sigV4Valid(req: IncomingMessage, secret: string): boolean {
  const m = /^AWS4-HMAC-SHA256 Credential=[^/]+\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(req.headers.authorization ?? '');
  if (!m) return false;
  const [, day, region, service, signed, signature] = m as unknown as [string, string, string, string, string, string];
  const url = new URL(req.url ?? '/', 'http://x');
  const query = [...url.searchParams].map(([k, v]) => [rfc3986(k), rfc3986(v)] as const)
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([k, v]) => `${k}=${v}`).join('&');
  const names = signed.split(';');
  if (!names.includes('host') || !names.includes('x-amz-date')) return false;
  const headers = names.map((n) => `${n}:${String(req.headers[n] ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
  const canonical = [req.method, url.pathname, query, headers, signed, req.headers['x-amz-content-sha256']].join('\n');
  const scope = `${day}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', req.headers['x-amz-date'], scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, day), region), service), 'aws4_request');
  return hmac(key, toSign).toString('hex') === signature;
}

// ---------------------------------------------------------------------------------------------
// A fake S3 endpoint whose answers the test scripts, recording what arrives.

interface Seen {
  method: string;
  url: string;
  host: string;
  signed: boolean;
  token?: string;
  headers: IncomingMessage['headers'];
}

type Answer = (req: IncomingMessage, res: ServerResponse) => void;

const OBJECT_HEADERS = {
  etag: '"0123456789abcdef0123456789abcdef"',
  'last-modified': 'Wed, 25 Nov 2026 10:00:00 GMT',
  'content-type': 'text/x-fast; charset=utf-8',
  'x-amz-meta-plain': 'value',
  'x-amz-meta-encoded': encodeMetadataValue('日本語 ✓ café'),
  'x-amz-meta-cloudmux_sha256': 'a'.repeat(64),
  'x-amz-version-id': 'v-1',
  'x-amz-request-id': 'req-fast',
};

function xmlError(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>rid-1</RequestId></Error>`;
}

describe('s3 fast reads against a scripted endpoint', () => {
  let server: Server;
  let port: number;
  const seen: Seen[] = [];
  let answer: Answer = (_req, res) => res.writeHead(500).end();

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push({
        method: req.method ?? '', url: req.url ?? '', host: req.headers.host ?? '', signed: sigV4Valid(req, SECRET),
        token: req.headers['x-amz-security-token'] as string | undefined, headers: req.headers,
      });
      req.resume();
      answer(req, res);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const store = (extra: Partial<S3StoreOptions> = {}): S3Store =>
    new S3Store({ bucket: 'fake-bucket', endpoint: `http://127.0.0.1:${port}`, credentials: CREDS, ...extra });

  /** Every host name connects to the fake server, so virtual-hosted addressing can be checked too. */
  class LoopbackAgent extends HttpAgent {
    override createConnection(options: object, cb?: unknown): Socket {
      const create = HttpAgent.prototype.createConnection as unknown as (this: HttpAgent, o: object, c?: unknown) => Socket;
      return create.call(this, { ...options, host: '127.0.0.1', port }, cb);
    }
  }

  it.each([
    ['path-style', { endpoint: 'http://s3.test:9000', forcePathStyle: true }],
    ['path-style, endpoint with a path', { endpoint: 'http://s3.test:9000/some/base', forcePathStyle: true }],
    ['virtual-hosted', { endpoint: 'http://s3.test:9000', forcePathStyle: false }],
    ['virtual-hosted asked, endpoint with a path', { endpoint: 'http://s3.test:9000/base/', forcePathStyle: false }],
    ['dotted bucket (path-style by the endpoint rules)', { endpoint: 'http://s3.test:9000', forcePathStyle: false, bucket: 'dotted.bucket.name' }],
    ['another region, session token', { endpoint: 'http://s3.test:9000', forcePathStyle: true, region: 'eu-central-1' }],
  ])('%s: the same host and path as the SDK sends, validly signed', async (_name, c: { endpoint: string; forcePathStyle: boolean; bucket?: string; region?: string }) => {
    answer = (req, res) => res.writeHead(200, { ...OBJECT_HEADERS, 'content-length': '3' }).end(req.method === 'HEAD' ? undefined : 'abc');
    const agent = new LoopbackAgent({ keepAlive: true });
    const bucket = c.bucket ?? 'fake-bucket';
    const client = new S3Client({
      region: c.region ?? 'us-east-1', endpoint: c.endpoint, forcePathStyle: c.forcePathStyle, credentials: CREDS, maxAttempts: 1,
      requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED', requestHandler: { httpAgent: agent, httpsAgent: agent },
    });
    const reader = new FastObjectReader(client, { bucket, endpoint: c.endpoint, agents: { http: agent, https: agent as never }, connectionTimeoutMs: 10_000 });
    const key = 'dir/odd key+(1)*!\'~ü/end';
    for (const method of ['GET', 'HEAD'] as const) {
      seen.length = 0;
      if (method === 'GET') {
        const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: 'bytes=0-2' }));
        await r.Body!.transformToByteArray();
      } else {
        await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      }
      const fast = await reader.read(method, key, method === 'GET' ? { range: 'bytes=0-2' } : {}, undefined);
      expect(fast).toBeDefined();
      if (fast?.Body) await collect(fast.Body);
      expect(seen).toHaveLength(2);
      const [sdk, own] = seen as [Seen, Seen];
      expect(own.method).toBe(method);
      expect(own.host).toBe(sdk.host);
      expect(own.url).toBe(sdk.url.replace(/[?&]x-id=GetObject$/, ''));
      expect(sdk.signed, 'the test verifier accepts the SDK signature').toBe(true);
      expect(own.signed, 'the fast path signature verifies').toBe(true);
      expect(own.token).toBe(CREDS.sessionToken);
      expect(own.headers.authorization).toContain(`/${c.region ?? 'us-east-1'}/s3/aws4_request`);
      if (method === 'GET') expect(own.headers.range).toBe('bytes=0-2');
    }
    client.destroy();
  });

  it('builds the same meta as the SDK path (metadata as stored, RFC 2047 values included; version; checksums)', async () => {
    answer = (req, res) => res.writeHead(200, { ...OBJECT_HEADERS, 'content-length': '5' }).end(req.method === 'HEAD' ? undefined : 'hello');
    const fast = store();
    const sdk = store({ fastReads: false });
    for (const s of [fast, sdk]) {
      const meta = await s.head('k');
      expect(meta).toMatchObject({ key: 'k', size: 5, etag: '0123456789abcdef0123456789abcdef', version: 'v-1', contentType: 'text/x-fast; charset=utf-8' });
    }
    expect(await fast.head('k')).toEqual(await sdk.head('k'));
    const a = await fast.get('k');
    const b = await sdk.get('k');
    expect(a.meta).toEqual(b.meta);
    expect(a.meta.metadata.encoded).toBe(encodeMetadataValue('日本語 ✓ café'));
    // The ETag of a single-part, unencrypted object is its MD5 (md5FromEtag).
    expect(a.meta.checksums).toEqual({ sha256: 'a'.repeat(64), md5: '0123456789abcdef0123456789abcdef' });
    expect((await collect(a.body)).toString()).toBe('hello');
    expect((await collect(b.body)).toString()).toBe('hello');
    seen.length = 0;
    await fast.get('k').then((r) => collect(r.body));
    expect(seen[0]?.headers['user-agent']).toBe('cloudmux');
    await fast.close();
    await sdk.close();
  });

  const errorCases: [string, number, string | undefined][] = [
    ['NoSuchKey', 404, xmlError('NoSuchKey', 'The specified key does not exist.')],
    ['404 without a body', 404, undefined],
    ['NoSuchBucket', 404, xmlError('NoSuchBucket', 'The specified bucket does not exist')],
    ['AccessDenied', 403, xmlError('AccessDenied', 'Access Denied')],
    ['403 without a body', 403, undefined],
    ['SignatureDoesNotMatch (echoes the string to sign)', 403, xmlError('SignatureDoesNotMatch', `The request signature we calculated does not match. Signature=${SECRET}`)],
    ['InvalidAccessKeyId', 403, xmlError('InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.')],
    ['PreconditionFailed', 412, xmlError('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold')],
    ['304', 304, undefined],
    ['InvalidRange', 416, xmlError('InvalidRange', 'The requested range is not satisfiable')],
    ['SlowDown', 503, xmlError('SlowDown', 'Please reduce your request rate.')],
    ['InternalError', 500, xmlError('InternalError', 'We encountered an internal error. Please try again.')],
    ['502 with an HTML body', 502, '<html><body>Bad Gateway</body></html>'],
    ['PermanentRedirect (no region redirect off AWS)', 301, xmlError('PermanentRedirect', 'The bucket you are attempting to access must be addressed using the specified endpoint.')],
    ['escaped message', 400, xmlError('InvalidArgument', 'a &lt;b&gt; &amp; &quot;c&quot;')],
  ];
  it.each(errorCases)('%s: the same typed error on both paths, no secret in it', async (_name, status, body) => {
    answer = (_req, res) => {
      res.writeHead(status, { 'content-type': 'application/xml', 'x-amz-request-id': 'rid-2', ...(status === 503 ? { 'retry-after': '2' } : {}) });
      res.end(body);
    };
    const fast = store();
    const sdk = store({ fastReads: false });
    const opts: GetOptions = status === 416 ? { range: { offset: 100, length: 5 } } : {};
    for (const op of ['get', 'head'] as const) {
      const errors: CloudmuxError[] = [];
      for (const s of [fast, sdk]) {
        const e = await (op === 'get' ? s.get('some/key', opts) : s.head('some/key')).then(() => undefined, (x: unknown) => x);
        expect(e, `${op} fails`).toBeInstanceOf(CloudmuxError);
        errors.push(e as CloudmuxError);
      }
      const [a, b] = errors as [CloudmuxError, CloudmuxError];
      const view = (e: CloudmuxError): Record<string, unknown> => ({
        code: e.code, message: e.message, retryable: e.retryable, provider: e.provider, key: e.key, status: e.status, providerCode: e.providerCode,
        retryAfterMs: e.retryAfterMs, cause: (e.cause as Error | undefined)?.message,
      });
      expect(view(a)).toEqual(view(b));
      expect(a.key).toBe('some/key');
      expect(a.provider).toBe('s3');
      expect(`${a.message} ${String(a)} ${String((a.cause as Error | undefined)?.message)} ${JSON.stringify(a)}`).not.toContain(SECRET);
      expect(JSON.stringify(a)).not.toContain(CREDS.sessionToken);
    }
    await fast.close();
    await sdk.close();
  });

  it('an abort before the answer and an abort mid-body are Aborted, as on the SDK path', async () => {
    const hold: { release?: () => void } = {};
    const releaseNow = (): void => {
      hold.release?.();
      hold.release = undefined;
    };
    answer = (req, res) => {
      if (req.url?.includes('slow-head')) {
        hold.release = () => res.destroy();
        return;
      }
      res.writeHead(200, { ...OBJECT_HEADERS, 'content-length': '100000' });
      res.write(Buffer.alloc(1000));
      hold.release = () => res.destroy();
    };
    for (const s of [store(), store({ fastReads: false })]) {
      const ac = new AbortController();
      const pending = s.get('slow-head', { signal: ac.signal });
      await vi.waitFor(() => expect(hold.release).toBeDefined());
      ac.abort();
      await expectCode(pending, 'Aborted');
      releaseNow();
      const ac2 = new AbortController();
      const r = await s.get('mid-body', { signal: ac2.signal });
      const reading = collect(r.body);
      ac2.abort();
      await expectCode(reading, 'Aborted');
      releaseNow();
      await expectCode(s.get('k', { signal: AbortSignal.abort() }), 'Aborted');
      await s.close();
    }
  });

  it('a connection cut mid-body fails the body as Transient on both paths', async () => {
    answer = (_req, res) => {
      res.writeHead(200, { ...OBJECT_HEADERS, 'content-length': '50000' });
      res.write(Buffer.alloc(2000), () => setTimeout(() => res.socket?.destroy(), 20));
    };
    for (const s of [store(), store({ fastReads: false })]) {
      const r = await s.get('cut');
      const e = await expectCode(collect(r.body), 'Transient');
      expect(e.retryable).toBe(true);
      await s.close();
    }
  });

  it('a server clock 5 minutes off becomes the signing clock, as the SDK corrects it', async () => {
    const skew = 20 * 60_000;
    answer = (req, res) => res.writeHead(200, { ...OBJECT_HEADERS, 'content-length': '0', date: new Date(Date.now() + skew).toUTCString() }).end();
    const s = store();
    seen.length = 0;
    await s.head('a');
    await s.head('b');
    const stamp = (h: IncomingMessage['headers']): number => {
      const m = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/.exec(String(h['x-amz-date']))!;
      return Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
    };
    expect(Math.abs(stamp(seen[0]!.headers) - Date.now())).toBeLessThan(60_000);
    expect(Math.abs(stamp(seen[1]!.headers) - (Date.now() + skew))).toBeLessThan(60_000);
    await s.close();
  });

  it('a region redirect from AWS turns the fast path off for the store (the SDK follows redirects)', async () => {
    answer = (_req, res) => res.writeHead(301, { 'x-amz-bucket-region': 'eu-west-3' }).end(xmlError('PermanentRedirect', 'moved'));
    const agent = new HttpAgent({ keepAlive: true });
    const client = new S3Client({ region: 'us-east-1', endpoint: `http://127.0.0.1:${port}`, forcePathStyle: true, credentials: CREDS, followRegionRedirects: true, maxAttempts: 1 });
    const reader = new FastObjectReader(client, { bucket: 'fake-bucket', endpoint: `http://127.0.0.1:${port}`, agents: { http: agent, https: agent as never }, connectionTimeoutMs: 10_000 });
    // Another 400 naming a region is an error like any other (the SDK does not redirect it either).
    answer = (_req, res) => res.writeHead(400, { 'x-amz-bucket-region': 'eu-west-3' }).end(xmlError('InvalidArgument', 'no'));
    await expect(reader.read('GET', 'k', {}, undefined)).rejects.toMatchObject({ name: 'InvalidArgument', $metadata: { httpStatusCode: 400 } });
    answer = (_req, res) => res.writeHead(301, { 'x-amz-bucket-region': 'eu-west-3' }).end(xmlError('PermanentRedirect', 'moved'));
    seen.length = 0;
    expect(await reader.read('GET', 'k', {}, undefined)).toBeUndefined();
    expect(await reader.read('HEAD', 'k', {}, undefined)).toBeUndefined();
    expect(seen).toHaveLength(1);
    client.destroy();
    agent.destroy();
  });

  it('https with a private CA (the agent\'s): the same request as over http, validly signed', async (ctx) => {
    const dir = mkdtempSync(join(tmpdir(), 'cmx-tls-'));
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1',
        '-subj', '/CN=s3.test', '-addext', 'subjectAltName=DNS:s3.test,DNS:fake-bucket.s3.test'], { stdio: 'ignore' });
    } catch {
      rmSync(dir, { recursive: true, force: true });
      return ctx.skip('no openssl to make a certificate');
    }
    const cert = readFileSync(join(dir, 'cert.pem'));
    const tls = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert }, (req, res) => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host ?? '', signed: sigV4Valid(req, SECRET), headers: req.headers });
      req.resume();
      res.writeHead(200, { ...OBJECT_HEADERS, 'content-length': '2' }).end(req.method === 'HEAD' ? undefined : 'ok');
    });
    await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
    const tlsPort = (tls.address() as AddressInfo).port;
    class LoopbackTlsAgent extends HttpsAgent {
      override createConnection(options: object, cb?: unknown): Socket {
        const create = HttpsAgent.prototype.createConnection as unknown as (this: HttpsAgent, o: object, c?: unknown) => Socket;
        return create.call(this, { ...options, host: '127.0.0.1', port: tlsPort }, cb);
      }
    }
    const agent = new LoopbackTlsAgent({ keepAlive: true, ca: cert });
    const endpoint = 'https://s3.test';
    try {
      for (const forcePathStyle of [true, false]) {
        const client = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle, credentials: CREDS, maxAttempts: 1, requestHandler: { httpsAgent: agent } });
        const reader = new FastObjectReader(client, { bucket: 'fake-bucket', endpoint, agents: { http: new HttpAgent(), https: agent }, connectionTimeoutMs: 10_000 });
        seen.length = 0;
        await (await client.send(new GetObjectCommand({ Bucket: 'fake-bucket', Key: 'a/b' }))).Body!.transformToByteArray();
        const r = await reader.read('GET', 'a/b', {}, undefined);
        expect((await collect(r!.Body!)).toString()).toBe('ok');
        const [sdk, own] = seen as [Seen, Seen];
        expect(own.host).toBe(sdk.host);
        expect(own.host).toBe(forcePathStyle ? 's3.test' : 'fake-bucket.s3.test');
        expect(own.url).toBe(sdk.url.replace(/[?&]x-id=GetObject$/, ''));
        expect(own.signed).toBe(true);
        client.destroy();
      }
    } finally {
      agent.destroy();
      tls.closeAllConnections();
      await new Promise((r) => tls.close(r));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a connection that is not established within the connection timeout fails as TimeoutError (Transient), as the SDK handler fails it', async () => {
    /** Hands out sockets that never connect. */
    class BlackholeAgent extends HttpAgent {
      override createConnection(): Socket {
        const socket = new NetSocket();
        Object.defineProperty(socket, 'connecting', { value: true });
        return socket;
      }
    }
    const agent = new BlackholeAgent();
    const client = new S3Client({ region: 'us-east-1', endpoint: `http://127.0.0.1:${port}`, forcePathStyle: true, credentials: CREDS, maxAttempts: 1 });
    const reader = new FastObjectReader(client, { bucket: 'fake-bucket', endpoint: `http://127.0.0.1:${port}`, agents: { http: agent, https: agent as never }, connectionTimeoutMs: 150 });
    const started = Date.now();
    const e = await reader.read('GET', 'k', {}, undefined).then(() => undefined, (x: unknown) => x as Error);
    expect(e?.name).toBe('TimeoutError');
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(mapS3Error(e, { op: 'get', bucket: 'fake-bucket', key: 'k' }).code).toBe('Transient');
    client.destroy();
    agent.destroy();
  });

  it('fastReads comes from the URL too', () => {
    expect(fromUrl(new URL('s3://b-url/p?endpoint=http%3A%2F%2F127.0.0.1%3A9&fastReads=false')).options.fastReads).toBe(false);
    expect(fromUrl(new URL('s3://b-url/p?endpoint=http%3A%2F%2F127.0.0.1%3A9')).options.fastReads).toBe(true);
  });

  it('takes the SDK path for a client passed in, with flexible checksums, or with fastReads off', () => {
    const fastOf = (s: S3Store): unknown => (s as unknown as { fast: unknown }).fast;
    expect(fastOf(store())).toBeInstanceOf(FastObjectReader);
    expect(fastOf(store({ fastReads: false }))).toBeUndefined();
    expect(fastOf(store({ flexibleChecksums: true }))).toBeUndefined();
    expect(fastOf(store({ client: new S3Client({ region: 'us-east-1' }) }))).toBeUndefined();
    expect(fastOf(new S3Store({ bucket: 'aws-bucket', region: 'us-east-1' }))).toBeUndefined();
    expect(fastOf(new S3Store({ bucket: 'aws-bucket', region: 'us-east-1', flexibleChecksums: false }))).toBeInstanceOf(FastObjectReader);
  });
});

// ---------------------------------------------------------------------------------------------
// Against the harness endpoint (s3rver by default): both paths read the same objects alike

describe.runIf(Boolean(process.env.S3_ENDPOINT))('s3 fast reads against the harness endpoint', () => {
  const run = `fast-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  let fast: S3Store;
  let sdk: S3Store;
  let reads: { calls: number; served: number };
  const data = randomBytes(300_000);

  beforeAll(async () => {
    fast = new S3Store(emulatorOptions({ prefix: run }));
    sdk = new S3Store(emulatorOptions({ prefix: run, fastReads: false }));
    const reader = (fast as unknown as { fast: FastObjectReader }).fast;
    reads = { calls: 0, served: 0 };
    const read = reader.read.bind(reader);
    vi.spyOn(reader, 'read').mockImplementation(async (...args) => {
      reads.calls++;
      const r = await read(...args);
      if (r) reads.served++;
      return r;
    });
    await fast.put('meta/unicode', data, { contentType: 'application/x-test', metadata: { plain: 'v', encoded: encodeMetadataValue('ünïcødé 日本 😀') } });
    await fast.put('meta/empty', '');
    await fast.put('meta/default-type', 'abc');
    await fast.put('odd/with space+plus(1)*!\'~', 'odd');
  });
  afterAll(async () => {
    const all = await listAll(fast);
    await fast.deleteMany(all.flatMap((i) => (i.type === 'object' ? [i.key] : [])));
    await fast.close();
    await sdk.close();
  });

  it('head and get: the same meta and bytes, the fast path serving every read', async () => {
    for (const key of ['meta/unicode', 'meta/empty', 'meta/default-type', 'odd/with space+plus(1)*!\'~']) {
      const before = reads.served;
      expect(await fast.head(key)).toEqual(await sdk.head(key));
      const a = await fast.get(key, { verify: true });
      const b = await sdk.get(key, { verify: true });
      expect(a.meta).toEqual(b.meta);
      expect(a.range).toEqual(b.range);
      expect((await collect(a.body)).equals(await collect(b.body))).toBe(true);
      expect(reads.served - before).toBe(2);
    }
    const meta = await fast.head('meta/unicode');
    expect(meta.metadata.encoded).toBe(encodeMetadataValue('ünïcødé 日本 😀'));
    expect(meta.contentType).toBe('application/x-test');
    expect(meta.size).toBe(data.byteLength);
    expect(reads.calls).toBe(reads.served);
  });

  it('ranges: the same served range and bytes (including ranges of an empty object)', async () => {
    const ranges: GetOptions['range'][] = [{ offset: 0, length: 1 }, { offset: 1000, length: 5000 }, { offset: 299_990 }, { offset: 0 }, { offset: 5, length: 300_000 }];
    for (const range of ranges) {
      const settle = (p: Promise<GetResult>): Promise<GetResult | CloudmuxError> => p.catch((e: unknown) => e as CloudmuxError);
      const [a, b] = await Promise.all([settle(fast.get('meta/unicode', { range })), settle(sdk.get('meta/unicode', { range }))]);
      if (a instanceof CloudmuxError || b instanceof CloudmuxError) {
        // s3rver misreads some ranges (bytes=0-0 as the whole object); the driver refuses them alike on both paths.
        expect([(a as CloudmuxError).code, (a as Error).message]).toEqual([(b as CloudmuxError).code, (b as Error).message]);
        continue;
      }
      expect(a.range).toEqual(b.range);
      expect(a.meta).toEqual(b.meta);
      const bytes = await collect(a.body);
      expect(bytes.equals(await collect(b.body))).toBe(true);
      expect(bytes.equals(data.subarray(a.range!.offset, a.range!.offset + a.range!.length))).toBe(true);
    }
    for (const s of [fast, sdk]) {
      const r = await s.get('meta/empty', { range: { offset: 0 } });
      expect(r.range).toEqual({ offset: 0, length: 0 });
      expect((await collect(r.body)).byteLength).toBe(0);
      await expectCode(s.get('meta/unicode', { range: { offset: 400_000, length: 1 } }), 'InvalidRange');
    }
  });

  it('conditions and missing keys: the same typed errors', async () => {
    const { etag } = await fast.head('meta/default-type');
    for (const s of [fast, sdk]) {
      expect((await collect((await s.get('meta/default-type', { ifMatch: etag })).body)).toString()).toBe('abc');
      await expectCode(s.get('meta/default-type', { ifMatch: 'not-the-etag' }), 'PreconditionFailed');
      await expectCode(s.get('meta/default-type', { ifNoneMatch: etag }), 'NotModified');
      expect((await collect((await s.get('meta/default-type', { ifNoneMatch: 'other' })).body)).toString()).toBe('abc');
      await expectCode(s.get('no/such/key'), 'NotFound');
      await expectCode(s.head('no/such/key'), 'NotFound');
    }
  });

  it('wrong credentials: AuthFailed / AccessDenied as on the SDK path, no secret in any message', async () => {
    const wrong = { accessKeyId: 'CMXWRONGKEYID', secretAccessKey: SECRET };
    const a = new S3Store(emulatorOptions({ prefix: run, credentials: wrong }));
    const b = new S3Store(emulatorOptions({ prefix: run, credentials: wrong, fastReads: false }));
    for (const op of ['get', 'head'] as const) {
      const errs: CloudmuxError[] = [];
      for (const s of [a, b]) {
        const e = await (op === 'get' ? s.get('meta/default-type') : s.head('meta/default-type')).then(() => undefined, (x: unknown) => x);
        expect(e).toBeInstanceOf(CloudmuxError);
        errs.push(e as CloudmuxError);
      }
      expect(errs[0]!.code).toBe(errs[1]!.code);
      expect(errs[0]!.message).toBe(errs[1]!.message);
      expect(['AuthFailed', 'AccessDenied']).toContain(errs[0]!.code);
      expect(`${errs[0]!.message} ${String((errs[0]!.cause as Error).message)}`).not.toContain(SECRET);
    }
    await a.close();
    await b.close();
  });
});
