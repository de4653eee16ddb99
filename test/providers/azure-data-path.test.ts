import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { PassThrough } from 'node:stream';
import { ContainerSASPermissions, StorageSharedKeyCredential, generateBlobSASQueryParameters } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AzureStore, createAzureStore, mapAzureError, parseConnectionString } from '../../providers/azure/index.js';
import { AZURE_SERVICE_VERSION, AzureDataClient, proxiedByEnvironment } from '../../providers/azure/data-client.js';
import { ResponseBody } from '../../src/core/response-body.js';
import { sharedKeyAuthorization } from '../../providers/azure/shared-key.js';
import { collect } from '../../src/core/body.js';
import type { CloudmuxError } from '../../src/core/errors.js';
import { getBuffer } from '../../src/core/helpers.js';
import { encodeMetadataValue } from '../../src/core/metadata.js';
import type { GetOptions, GetResult, ObjectMeta } from '../../src/core/types.js';
import { expectCode, generatedStream, pseudoRandomBytes, sha256Hex } from '../../src/testing/index.js';
import { AZURITE_ACCOUNT, AZURITE_KEY } from '../harness/azure.js';

/**
 * cloudmux's own client for Put Blob, Put Block and Get Blob (data-client.ts) against the SDK path
 * it replaces (`sdkDataPath: true`): same requests on the wire, same ObjectMeta, same errors.
 */

const md5Hex = (b: Buffer | string): string => createHash('md5').update(b).digest('hex');

/** A scripted Azure: records each request and answers with what `answer` returns. */
interface Recorded {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

async function fakeAzure(answer: (req: Recorded, res: ServerResponse, raw: IncomingMessage) => void): Promise<{ server: Server; endpoint: string; requests: Recorded[] }> {
  const requests: Recorded[] = [];
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const r = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(parts) };
      requests.push(r);
      answer(r, res, req);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return { server, endpoint: `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`, requests };
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

const BLOB_HEADERS = {
  etag: '"0x8DC0FFEE"',
  'last-modified': 'Thu, 26 Nov 2026 10:00:00 GMT',
  'x-ms-version': AZURE_SERVICE_VERSION,
};

function storeAt(endpoint: string, sdkDataPath = false, extra: Record<string, unknown> = {}): AzureStore {
  return createAzureStore({ accountKey: AZURITE_KEY, account: AZURITE_ACCOUNT, endpoint, container: 'fake-box', prefix: 'p', sdkDataPath, ...extra });
}

/** Headers whose values legitimately differ between two sends of the same request. */
const VOLATILE = new Set(['x-ms-date', 'x-ms-client-request-id', 'authorization', 'user-agent']);

function comparable(h: IncomingHttpHeaders): Record<string, unknown> {
  return Object.fromEntries(Object.entries(h).filter(([k]) => !VOLATILE.has(k)).sort(([a], [b]) => a.localeCompare(b)));
}

describe('azure data path on the wire (a scripted server)', () => {
  it('leaves requests to the SDK where the SDK would go through a proxy from the environment', () => {
    const ep = 'https://acct.blob.core.windows.net';
    expect(proxiedByEnvironment(ep, {})).toBe(false);
    expect(proxiedByEnvironment(ep, { HTTPS_PROXY: 'http://proxy:3128' })).toBe(true);
    expect(proxiedByEnvironment(ep, { http_proxy: 'http://proxy:3128' })).toBe(true);
    expect(proxiedByEnvironment(ep, { ALL_PROXY: 'http://proxy:3128', NO_PROXY: 'localhost, .core.windows.net' })).toBe(false);
    expect(proxiedByEnvironment(ep, { HTTPS_PROXY: 'http://proxy:3128', no_proxy: 'acct.blob.core.windows.net' })).toBe(false);
    expect(proxiedByEnvironment(ep, { HTTPS_PROXY: 'http://proxy:3128', NO_PROXY: 'other.blob.core.windows.net,windows.net' })).toBe(true);
  });

  it('sends Put Blob, Put Block and Get Blob with the same headers, path and query as the SDK', async () => {
    const fake = await fakeAzure((req, res) => {
      if (req.method === 'PUT') {
        res.writeHead(201, { ...BLOB_HEADERS, 'content-md5': req.headers['content-md5'] as string });
        res.end();
        return;
      }
      res.writeHead(206, { ...BLOB_HEADERS, 'content-length': '3', 'content-range': 'bytes 1-3/10', 'content-type': 'text/plain', 'x-ms-blob-content-md5': Buffer.alloc(16, 1).toString('base64') });
      res.end('abc');
    });
    try {
      const sent: Recorded[][] = [];
      for (const sdk of [false, true]) {
        const store = storeAt(fake.endpoint, sdk);
        const from = fake.requests.length;
        await store.put('dir/ü b+c%d', Buffer.from('hello'), {
          contentType: 'text/plain; charset=utf-8', ifNoneMatch: '*',
          metadata: { a: '1', a1: '2', a_b: '3', b9_: '4', ab: '5', a_1: '6', z_: '7', uni: encodeMetadataValue('héllo ✓') },
        });
        await store.put('dir/ü b+c%d', Buffer.from('hello'), { ifMatch: 'abc', expect: { md5: md5Hex('hello') } });
        const got = await store.get('dir/ü b+c%d', { range: { offset: 1, length: 3 }, ifMatch: 'e1' });
        await collect(got.body);
        const handle = await store.startUpload('k', { size: 5, partSize: 5 });
        await store.uploadPart(handle, 1, Buffer.from('hello'));
        await store.close();
        sent.push(fake.requests.slice(from));
      }
      const [lean, sdk] = sent as [Recorded[], Recorded[]];
      expect(lean.length).toBe(4);
      expect(sdk.length).toBe(4);
      for (let i = 0; i < 4; i++) {
        const a = lean[i]!;
        const b = sdk[i]!;
        // Block ids are random per upload; the rest of the URL is the SDK's byte for byte.
        const url = (u: string): string => u.replace(/blockid=[^&]+/, 'blockid=*');
        expect(`${a.method} ${url(a.url)}`).toBe(`${b.method} ${url(b.url)}`);
        expect(comparable(a.headers)).toEqual(comparable(b.headers));
        expect(a.body.equals(b.body)).toBe(true);
        expect(a.headers.authorization).toMatch(/^SharedKey devstoreaccount1:[A-Za-z0-9+/]{43}=$/);
      }
      // Our signer, given exactly what the SDK sent, signs it as the SDK did (culture-aware header order included).
      for (const r of sdk) {
        const url = new URL(r.url, 'http://x');
        const flat = Object.entries(r.headers).flatMap(([k, v]) => [k, String(v)]);
        const query = [...url.searchParams.entries()];
        expect(sharedKeyAuthorization(AZURITE_ACCOUNT, Buffer.from(AZURITE_KEY, 'base64'), r.method, url.pathname, query, flat)).toBe(r.headers.authorization);
      }
      expect(lean[0]!.headers).toMatchObject({
        'x-ms-version': AZURE_SERVICE_VERSION, 'x-ms-blob-type': 'BlockBlob', 'if-none-match': '*',
        'content-md5': Buffer.from(md5Hex('hello'), 'hex').toString('base64'), 'x-ms-meta-a_b': '3',
      });
      expect(lean[2]!.headers).toMatchObject({ 'x-ms-range': 'bytes=1-3', 'if-match': '"e1"' });
    } finally {
      await closeServer(fake.server);
    }
  });

  it('builds the same ObjectMeta, range and body from the response headers as the SDK path', async () => {
    const fake = await fakeAzure((req, res) => {
      const ranged = req.headers['x-ms-range'] !== undefined;
      res.writeHead(ranged ? 206 : 200, {
        ...BLOB_HEADERS,
        'content-length': ranged ? '4' : '10',
        ...(ranged ? { 'content-range': 'bytes 2-5/10', 'content-md5': Buffer.alloc(16, 9).toString('base64') } : { 'content-md5': Buffer.alloc(16, 7).toString('base64') }),
        'x-ms-blob-content-md5': Buffer.alloc(16, 7).toString('base64'),
        'content-type': 'text/plain; charset=utf-8',
        'x-ms-meta-owner': 'me',
        'x-ms-meta-uni': encodeMetadataValue('héllo ✓'),
        'x-ms-meta-cloudmux_sha256': 'ab'.repeat(32),
        'x-ms-version-id': '2026-11-26T10:00:00.0000000Z',
      });
      res.end(ranged ? '2345' : '0123456789');
    });
    try {
      for (const opts of [{}, { range: { offset: 2, length: 4 } }] as GetOptions[]) {
        const results: { meta: ObjectMeta; range: GetResult['range']; body: string }[] = [];
        for (const sdk of [false, true]) {
          const store = storeAt(fake.endpoint, sdk);
          const got = await store.get('k', opts);
          results.push({ meta: got.meta, range: got.range, body: (await collect(got.body)).toString() });
          await store.close();
        }
        expect(results[0]).toEqual(results[1]);
        expect(results[0]!.meta).toMatchObject({
          size: 10, etag: '0x8DC0FFEE', version: '2026-11-26T10:00:00.0000000Z', contentType: 'text/plain; charset=utf-8',
          metadata: { owner: 'me', uni: encodeMetadataValue('héllo ✓') },
          checksums: { sha256: 'ab'.repeat(32), md5: Buffer.alloc(16, 7).toString('hex') },
        });
      }
    } finally {
      await closeServer(fake.server);
    }
  });

  it('maps error answers like the SDK path: code header or XML body, Retry-After, no secret in the error', async () => {
    const script: Record<string, [number, Record<string, string>, string]> = {
      missing: [404, { 'x-ms-error-code': 'BlobNotFound' }, ''],
      nobox: [404, {}, '<?xml version="1.0" encoding="utf-8"?><Error><Code>ContainerNotFound</Code><Message>The specified container does not exist.\nRequestId:1</Message></Error>'],
      cond: [412, { 'x-ms-error-code': 'ConditionNotMet' }, ''],
      range: [416, { 'x-ms-error-code': 'InvalidRange' }, ''],
      busy: [503, { 'x-ms-error-code': 'ServerBusy', 'retry-after': '2' }, '<Error><Code>ServerBusy</Code><Message>busy</Message></Error>'],
      auth: [403, { 'x-ms-error-code': 'AuthenticationFailed' }, `<Error><Code>AuthenticationFailed</Code><Message>Signature did not match. url=https://a.blob.core.windows.net/c/k?sv=2024&amp;sig=SECRETSIG AccountKey=${AZURITE_KEY}</Message></Error>`],
      md5: [400, { 'x-ms-error-code': 'InvalidOperation' }, "<Error><Code>InvalidOperation</Code><Message>Provided contentMD5 doesn't match.</Message></Error>"],
      exists: [409, { 'x-ms-error-code': 'BlobAlreadyExists' }, ''],
      boom: [500, {}, 'not xml'],
    };
    const fake = await fakeAzure((req, res) => {
      const name = decodeURIComponent(req.url.split('?')[0]!.split('/').pop()!);
      const [status, headers, body] = script[name] ?? [500, {}, ''];
      res.writeHead(status, { 'content-type': 'application/xml', 'x-ms-request-id': 'req-1', ...headers });
      res.end(body);
    });
    try {
      const codes: Record<string, string>[] = [];
      for (const sdk of [false, true]) {
        const store = storeAt(fake.endpoint, sdk);
        const out: Record<string, string> = {};
        for (const name of Object.keys(script)) {
          const get = await store.get(name).then(() => 'ok', (e: CloudmuxError) => e);
          const put = await store.put(name, 'x').then(() => 'ok', (e: CloudmuxError) => e);
          for (const [op, e] of [['get', get], ['put', put]] as const) {
            if (typeof e === 'string') {
              out[`${op} ${name}`] = e;
              continue;
            }
            out[`${op} ${name}`] = `${e.code}${e.retryAfterMs !== undefined ? ` after ${e.retryAfterMs}` : ''} ${e.status ?? ''} ${e.providerCode ?? ''}`;
            const text = JSON.stringify({ m: e.message, s: String(e), c: String(e.cause), cause: e.cause });
            expect(text).not.toContain('SECRETSIG');
            expect(text).not.toContain(AZURITE_KEY);
          }
        }
        codes.push(out);
        await store.close();
      }
      expect(codes[0]).toEqual(codes[1]);
      expect(codes[0]).toMatchObject({
        'get missing': 'NotFound 404 BlobNotFound', 'get nobox': 'InvalidConfig 404 ContainerNotFound', 'get cond': 'PreconditionFailed 412 ConditionNotMet',
        'get range': 'InvalidRange 416 InvalidRange', 'get busy': 'Throttled after 2000 503 ServerBusy', 'get auth': 'AuthFailed 403 AuthenticationFailed',
        'put md5': 'IntegrityError 400 InvalidOperation', 'put exists': 'AlreadyExists 409 BlobAlreadyExists', 'get boom': 'Transient 500 ',
      });
    } finally {
      await closeServer(fake.server);
    }
  });

  it('a connection cut mid-body is Transient; an abort is Aborted, before the headers or mid-body', async () => {
    const fake = await fakeAzure((req, res, raw) => {
      if (req.url.includes('/hang')) return; // never answers
      res.writeHead(200, { ...BLOB_HEADERS, 'content-length': '100000' });
      res.write(Buffer.alloc(1000));
      if (req.url.includes('/cut')) setTimeout(() => raw.socket.destroy(), 20);
    });
    try {
      const store = storeAt(fake.endpoint);
      const cut = await store.get('cut');
      await expectCode(collect(cut.body), 'Transient');
      const ac = new AbortController();
      const slow = await store.get('slow', { signal: ac.signal });
      setTimeout(() => ac.abort(), 20);
      await expectCode(collect(slow.body), 'Aborted');
      const ac2 = new AbortController();
      setTimeout(() => ac2.abort(), 20);
      await expectCode(store.get('hang', { signal: ac2.signal }), 'Aborted');
      await expectCode(store.put('hang', 'x', { signal: AbortSignal.timeout(20) }), 'Aborted');
      await store.close();
    } finally {
      await closeServer(fake.server);
    }
  });

  it('many downloads held open unread do not starve the next request (no socket cap)', async () => {
    const fake = await fakeAzure((_req, res) => {
      res.writeHead(200, { ...BLOB_HEADERS, 'content-length': '1' });
      res.end('x');
    });
    try {
      const store = storeAt(fake.endpoint);
      const held = await Promise.all(Array.from({ length: 100 }, (_, i) => store.get(`k${i}`)));
      for (const g of held) expect((await collect(g.body)).toString()).toBe('x');
      await store.close();
    } finally {
      await closeServer(fake.server);
    }
  });

  it('re-sends a request that met a pooled connection the server had closed, unless it is conditional', async () => {
    const served = new WeakMap<object, number>();
    const fake = await fakeAzure((req, res, raw) => {
      const n = (served.get(raw.socket) ?? 0) + 1;
      served.set(raw.socket, n);
      // Every connection answers once, then drops the next request unanswered: a stale keep-alive socket.
      if (n > 1) {
        raw.socket.destroy();
        return;
      }
      res.writeHead(req.method === 'PUT' ? 201 : 200, { ...BLOB_HEADERS, 'content-length': req.method === 'PUT' ? '0' : '2' });
      res.end(req.method === 'PUT' ? undefined : 'ok');
    });
    try {
      const store = storeAt(fake.endpoint);
      expect((await getBuffer(store, 'a')).toString()).toBe('ok');
      expect((await getBuffer(store, 'a')).toString()).toBe('ok');
      await store.put('b', 'x');
      expect(fake.requests.length).toBe(5);
      // A conditional write is not sent twice: the first might have landed and the second would then fail it.
      const e = await expectCode(store.put('b', 'x', { ifNoneMatch: '*' }), 'Transient');
      expect(e.message).toMatch(/network failure/);
      await store.close();
    } finally {
      await closeServer(fake.server);
    }
  });
});

describe('azure download body', () => {
  const mapped = (e: unknown): Error => mapAzureError(e, { key: 'k' });

  it('passes bytes through with backpressure, and a check may fail it at the end', async () => {
    const src = new PassThrough();
    const seen: number[] = [];
    const body = new ResponseBody(src, mapped, { update: (c) => seen.push(c.length), end: () => undefined });
    const big = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < 8; i++) src.write(big);
    src.end(Buffer.from('tail'));
    expect((await collect(body)).length).toBe(8 * 1024 * 1024 + 4);
    expect(seen.reduce((a, b) => a + b, 0)).toBe(8 * 1024 * 1024 + 4);
    const src2 = new PassThrough();
    const failing = new ResponseBody(src2, mapped, { update: () => undefined, end: () => new Error('digest mismatch') });
    src2.end('x');
    await expect(collect(failing)).rejects.toThrow('digest mismatch');
  });

  it('maps a source error, fails a source that closed before its end, and destroys the source when dropped', async () => {
    const src = new PassThrough();
    const body = new ResponseBody(src, mapped);
    src.write('a');
    src.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
    await expectCode(collect(body), 'Transient');
    const cut = new PassThrough();
    const cutBody = new ResponseBody(cut, mapped);
    cut.write('a');
    cut.destroy();
    await expectCode(collect(cutBody), 'Transient');
    const dropped = new PassThrough();
    new ResponseBody(dropped, mapped).destroy();
    expect(dropped.destroyed).toBe(true);
  });
});

const connectionString = process.env.AZURE_STORAGE_CONNECTION_STRING;
const containerName = process.env.AZURE_CONTAINER ?? 'cloudmux-test';

describe.runIf(connectionString)('azure data path against the harness endpoint', () => {
  const run = `data-path-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  const MiB = 1024 * 1024;
  let lean: AzureStore;
  let sdk: AzureStore;
  let parsed: ReturnType<typeof parseConnectionString>;

  beforeAll(() => {
    parsed = parseConnectionString(connectionString!);
    lean = createAzureStore({ connectionString, container: containerName, prefix: run, blockSize: MiB, singleShotThreshold: MiB });
    sdk = createAzureStore({ connectionString, container: containerName, prefix: run, blockSize: MiB, singleShotThreshold: MiB, sdkDataPath: true });
  });

  afterAll(async () => {
    for await (const item of lean.list()) if (item.type === 'object') await lean.delete(item.key).catch(() => undefined);
    await lean.close();
    await sdk.close();
  });

  /** What get answers through both paths, for the same blob and options. */
  async function bothGets(key: string, opts: GetOptions = {}): Promise<unknown[]> {
    const out: unknown[] = [];
    for (const s of [lean, sdk]) {
      const r = await s.get(key, opts).then(async (g) => ({ meta: g.meta, range: g.range, body: (await collect(g.body)).toString('hex') }), (e: CloudmuxError) => e.code);
      out.push(r);
    }
    return out;
  }

  it('the lean and the SDK path write and read the same blob the same way', async () => {
    const metadata = { owner: 'me', uni: encodeMetadataValue('Grüße, 世界 ✓'), a1: 'x', a_b: 'y', b9_: 'z' };
    const body = pseudoRandomBytes(100_000, 'same');
    const written = [
      await lean.put('same/lean', body, { contentType: 'text/plain; charset=utf-8', metadata }),
      await sdk.put('same/sdk', body, { contentType: 'text/plain; charset=utf-8', metadata }),
    ];
    const strip = (m: ObjectMeta): unknown => ({ ...m, key: undefined, etag: undefined, version: undefined, lastModified: undefined });
    expect(strip(written[0]!)).toEqual(strip(written[1]!));
    for (const key of ['same/lean', 'same/sdk']) {
      for (const opts of [{}, { range: { offset: 5, length: 1000 } }, { range: { offset: 99_990 } }, { range: { suffix: 7 } }, { range: { offset: 100_000 } }, { verify: true }] as GetOptions[]) {
        const [a, b] = await bothGets(key, opts);
        expect(a).toEqual(b);
      }
      const [a] = await bothGets(key);
      expect(a).toMatchObject({ meta: { size: 100_000, contentType: 'text/plain; charset=utf-8', metadata: { ...metadata, cloudmux_sha256: sha256Hex(body) }, checksums: { sha256: sha256Hex(body), md5: md5Hex(body) } } });
      expect((await lean.head(key)).metadata).toEqual({ ...metadata, cloudmux_sha256: sha256Hex(body) });
    }
    // Conditions on reads.
    const etag = written[0]!.etag;
    expect(await bothGets('same/lean', { ifMatch: etag })).toHaveLength(2);
    const [nm1, nm2] = await bothGets('same/lean', { ifNoneMatch: etag });
    expect(nm1).toBe(nm2);
    const [pf1, pf2] = await bothGets('same/lean', { ifMatch: '0x0' });
    expect([pf1, pf2]).toEqual(['PreconditionFailed', 'PreconditionFailed']);
    expect(await bothGets('same/none')).toEqual(['NotFound', 'NotFound']);
  });

  it('an empty blob reads the same through both paths, whole and ranged', async () => {
    const written = [await lean.put('empty/lean', Buffer.alloc(0)), await sdk.put('empty/sdk', '')];
    expect(written[0]!.checksums).toEqual(written[1]!.checksums);
    for (const key of ['empty/lean', 'empty/sdk']) {
      for (const opts of [{}, { range: { offset: 0 } }, { range: { offset: 0, length: 10 } }, { range: { suffix: 3 } }, { range: { offset: 1 } }] as GetOptions[]) {
        const [a, b] = await bothGets(key, opts);
        expect(a).toEqual(b);
      }
      expect((await bothGets(key))[0]).toMatchObject({ meta: { size: 0, checksums: { md5: md5Hex('') } }, body: '' });
    }
  });

  it('signs with the shared key and carries a SAS: single-shot, staged and resumable puts, ranged reads', async () => {
    const sas = generateBlobSASQueryParameters({
      containerName, permissions: ContainerSASPermissions.parse('racwdl'), expiresOn: new Date(Date.now() + 3600_000),
    }, new StorageSharedKeyCredential(parsed.accountName!, parsed.accountKey!)).toString();
    const viaSas = createAzureStore({ sasToken: sas, account: parsed.accountName, endpoint: parsed.blobEndpoint, container: containerName, prefix: run, blockSize: MiB, singleShotThreshold: MiB });
    for (const [name, s] of [['key', lean], ['sas', viaSas]] as const) {
      await s.put(`auth/${name}/small`, 'small body', { metadata: { n: name } });
      const staged = generatedStream(2 * MiB + 17, { seed: name });
      await s.put(`auth/${name}/staged`, staged.stream);
      const handle = await s.startUpload(`auth/${name}/resumable`, { size: 6, partSize: 3 });
      await s.uploadPart(handle, 2, Buffer.from('def'));
      await s.uploadPart(handle, 1, Buffer.from('abc'));
      await s.completeUpload(handle, await s.listParts(handle), { checksums: { sha256: sha256Hex('abcdef') } });
      // Each written through one path reads back the same through the other.
      for (const reader of [lean, viaSas]) {
        expect((await getBuffer(reader, `auth/${name}/small`)).toString()).toBe('small body');
        expect((await getBuffer(reader, `auth/${name}/staged`, { verify: true })).length).toBe(2 * MiB + 17);
        const part = await reader.get(`auth/${name}/resumable`, { range: { offset: 2, length: 3 } });
        expect((await collect(part.body)).toString()).toBe('cde');
        expect(part.range).toEqual({ offset: 2, length: 3 });
      }
    }
    await viaSas.close();
  });

  it('a wrong key or a forged SAS fails authentication on every lean request, without the secret in the error', async () => {
    const wrongKey = randomBytes(64).toString('base64');
    const bad = createAzureStore({ accountKey: wrongKey, account: parsed.accountName, endpoint: parsed.blobEndpoint, container: containerName, prefix: run, blockSize: MiB, singleShotThreshold: MiB });
    await lean.put('auth-fail/k', 'x');
    const errors = [
      await expectCode(bad.put('auth-fail/k', 'y'), 'AuthFailed'),
      await expectCode(bad.get('auth-fail/k'), 'AuthFailed'),
      await expectCode(bad.put('auth-fail/staged', generatedStream(2 * MiB, { seed: 'bad' }).stream), 'AuthFailed'),
    ];
    const forged = 'sv=2025-11-05&se=2099-01-01T00%3A00%3A00Z&sr=c&sp=racwdl&sig=Rm9yZ2VkU2lnbmF0dXJlRm9yZ2VkU2lnbmF0dXJlRm8%3D';
    const badSas = createAzureStore({ sasToken: forged, account: parsed.accountName, endpoint: parsed.blobEndpoint, container: containerName, prefix: run });
    for (const p of [badSas.put('auth-fail/k', 'y'), badSas.get('auth-fail/k')]) {
      const e = await p.then(() => expect.unreachable(), (x: CloudmuxError) => x);
      expect(e.code).toMatch(/^(AuthFailed|AccessDenied)$/);
      errors.push(e);
    }
    for (const e of errors) {
      const text = JSON.stringify({ m: e.message, s: String(e), c: String(e.cause), cause: e.cause, stack: e.stack });
      expect(text).not.toContain(wrongKey);
      expect(text).not.toContain(parsed.accountKey!);
      expect(text).not.toContain('Rm9yZ2VkU2lnbmF0dXJl');
    }
    expect((await getBuffer(lean, 'auth-fail/k')).toString()).toBe('x');
    await bad.close();
    await badSas.close();
  });

  it('a transactional MD5 mismatch is IntegrityError and writes nothing', async () => {
    const body = pseudoRandomBytes(50_000, 'md5');
    await expectCode(lean.put('md5/single', body, { expect: { md5: md5Hex('other') } }), 'IntegrityError');
    await expectCode(lean.head('md5/single'), 'NotFound');
    // An existing blob is left as it was.
    await lean.put('md5/existing', 'old');
    await expectCode(lean.put('md5/existing', body, { expect: { md5: md5Hex('other') } }), 'IntegrityError');
    expect((await getBuffer(lean, 'md5/existing')).toString()).toBe('old');
    // Put Block: the service refuses a block whose bytes do not hash to the MD5 sent with it.
    const client = new AzureDataClient(parsed.blobEndpoint!, containerName, { kind: 'sharedKey', account: parsed.accountName!, accountKey: parsed.accountKey! });
    const e = await client.putBlock(`${run}/md5/block`, Buffer.from('id-1').toString('base64'), Buffer.from('abc'), createHash('md5').update('abd').digest('base64'))
      .then(() => undefined, (x: unknown) => x);
    expect(mapAzureError(e, { key: 'md5/block' }).code).toBe('IntegrityError');
    client.close();
  });
});
