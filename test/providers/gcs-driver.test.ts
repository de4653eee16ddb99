import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { Storage } from '@google-cloud/storage';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GcsStore, fromUrl, mapGcsError } from '../../providers/gcs/index.js';
import { CloudmuxError, Crc32c, collect, getBuffer, listAll, SHA256_KEY } from '../../src/core/index.js';
import { openStore } from '../../src/registry.js';
import { expectCode } from '../../src/testing/index.js';
import { generatedStream, sha256Hex } from '../../src/testing/data.js';
import { startStaleConnectionServer, type StaleConnectionServer } from '../harness/stale-connection-server.js';
import { FaultProxy } from '../faults/proxy.js';
import { partOf } from '../harness/part-faults.js';

/**
 * GCS-specific behaviour beyond the conformance suite: configuration, the error mapper, the
 * resumable path (chunking, resuming after a dropped connection, integrity), etag/generation
 * semantics, rewrite loops, and failure injection through the test server's controls.
 */

const endpoint = process.env.GCS_EMULATOR_HOST;
const bucket = process.env.GCS_BUCKET ?? 'cloudmux-test';
let controls = false;

async function control(path: string, init?: RequestInit): Promise<Response> {
  const res = await fetch(`${endpoint}/_emulator/${path}`, init);
  if (!res.ok) throw new Error(`control ${path}: HTTP ${res.status}`);
  return res;
}

async function counters(): Promise<Record<string, number>> {
  return ((await (await control('stats')).json()) as { counters: Record<string, number> }).counters;
}

async function fault(f: Record<string, unknown>): Promise<void> {
  await control('faults', { method: 'POST', body: JSON.stringify(f) });
}

beforeAll(async () => {
  if (!endpoint) return;
  try {
    controls = (await fetch(`${endpoint}/_emulator/stats`)).ok;
  } catch {
    controls = false;
  }
});

const run = `gcs-driver/${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;

function store(extra: Partial<ConstructorParameters<typeof GcsStore>[0]> = {}): GcsStore {
  return new GcsStore({ bucket, apiEndpoint: endpoint!, projectId: 'test-project', ...extra });
}

function needsServer(ctx: { skip: (reason: string) => void }, withControls = false): void {
  if (!endpoint) ctx.skip('GCS_EMULATOR_HOST is not set: the harness did not start the GCS test server');
  if (withControls && !controls) ctx.skip('GCS_EMULATOR_HOST is not the project test server: no fault injection controls');
}

describe('configuration', () => {
  it('parses gs:// URLs with prefix and parameters; options win over the URL', () => {
    const s = fromUrl(new URL('gs://my-bucket/some/prefix?apiEndpoint=http%3A%2F%2F127.0.0.1%3A1&chunkSize=524288&projectId=p'), { projectId: 'q' });
    expect(s.options).toMatchObject({ bucket: 'my-bucket', prefix: 'some/prefix/', apiEndpoint: 'http://127.0.0.1:1', chunkSize: 524288, projectId: 'q' });
    expect(s.toString()).toBe('gs://my-bucket/some/prefix/');
    expect(s.capabilities).toMatchObject({ conditionalPut: true, streaming: true, presign: false, nativeChecksums: ['crc32c', 'md5'] });
  });

  it('rejects bad configuration with InvalidConfig and never echoes secrets', async () => {
    const bad = [
      'gs://my-bucket/?unknown=1', 'gs://user:secret-pass@my-bucket/', 'gs://my-bucket/?chunkSize=1000', 'gs://UPPER/',
      'gs://my-bucket/?apiEndpoint=ftp%3A%2F%2Fx', 'gs://my-bucket/?chunkRetries=-1',
    ];
    for (const url of bad) {
      const err = await expectCode(openStore(url), 'InvalidConfig');
      expect(err.message).not.toContain('secret-pass');
    }
    expect(() => new GcsStore({ bucket: 'my-bucket', credentials: { client_email: 'x' } as never })).toThrow(/client_email and private_key/);
  });

  it('declares presign from configured credentials, and throws NotSupported without', async () => {
    const without = new GcsStore({ bucket: 'my-bucket', apiEndpoint: 'http://127.0.0.1:1' });
    await expectCode(without.presign('k', { method: 'GET', expiresIn: 60 }), 'NotSupported');
    const withKey = new GcsStore({ bucket: 'my-bucket', apiEndpoint: 'http://127.0.0.1:1', credentials: { client_email: 'a@b.iam.gserviceaccount.com', private_key: 'not-used-until-signing' } });
    expect(withKey.capabilities.presign).toBe(true);
    await expectCode(withKey.presign('k', { method: 'GET', expiresIn: 8 * 24 * 3600 }), 'InvalidArgument');
  });
});

describe('error mapping', () => {
  const ctx = { op: 'get', bucket: 'b', key: 'k' };
  const api = (code: number, message = 'm', reason?: string, headers?: Record<string, string>) =>
    Object.assign(new Error(message), { code, errors: reason ? [{ reason }] : [], response: { headers, request: { headers: { Authorization: 'Bearer ya29.secret-token' } } } });

  it('maps statuses onto the taxonomy', () => {
    const cases: [unknown, string, boolean][] = [
      [api(404, 'No such object: b/k'), 'NotFound', false],
      [api(404, 'The specified bucket does not exist.'), 'InvalidConfig', false],
      [api(412), 'PreconditionFailed', false],
      [api(416), 'InvalidRange', false],
      [api(401), 'AuthFailed', false],
      [api(403, 'forbidden', 'forbidden'), 'AccessDenied', false],
      [api(403, 'slow down', 'rateLimitExceeded'), 'Throttled', true],
      [api(429), 'Throttled', true],
      [api(500), 'Transient', true],
      [api(502), 'Transient', true],
      [api(503), 'Transient', true],
      [api(409), 'Transient', true],
      [api(400, 'Provided CRC32C "x" doesn\'t match calculated CRC32C "y".'), 'IntegrityError', false],
      [api(400, 'Invalid argument'), 'InvalidArgument', false],
      [api(304), 'NotModified', false],
      [Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), 'Transient', true],
      [new TypeError('fetch failed', { cause: Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }) }), 'Transient', true],
      [new Error('Could not load the default credentials.'), 'AuthFailed', false],
    ];
    for (const [e, code, retryable] of cases) {
      const m = mapGcsError(e, ctx);
      expect(m, String(e)).toBeInstanceOf(CloudmuxError);
      expect(m.code, (e as Error).message).toBe(code);
      expect(m.retryable, code).toBe(retryable);
      expect(m.provider).toBe('gcs');
      expect(`${m.message} ${String(m.cause)}`).not.toContain('secret-token');
    }
  });

  it('turns 412 and 409 into AlreadyExists for create-only writes, and reads Retry-After', () => {
    expect(mapGcsError(api(412), { ...ctx, createOnly: true }).code).toBe('AlreadyExists');
    expect(mapGcsError(api(409), { ...ctx, createOnly: true }).code).toBe('AlreadyExists');
    expect(mapGcsError(api(429, 'm', 'rateLimitExceeded', { 'retry-after': '3' }), ctx).retryAfterMs).toBe(3000);
  });

  it('an aborted signal wins over whatever the SDK reported', () => {
    const ac = new AbortController();
    ac.abort();
    expect(mapGcsError(api(500), { ...ctx, signal: ac.signal }).code).toBe('Aborted');
  });
});

describe('media downloads on pooled connections the server closes', () => {
  // The server drops a connection when a second media request arrives on it (an idle keep-alive
  // timeout firing just as the socket is reused); the SDK's own JSON requests are always answered.
  const isMedia = (req: IncomingMessage): boolean => (req.url ?? '').includes('alt=media');
  const answer = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.method !== 'GET') {
      res.writeHead(501).end();
    } else if (isMedia(req)) {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '3' }).end('abc');
    } else {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
        name: 'k', bucket: 'fake-bucket', generation: '7', metageneration: '1', size: '3', contentType: 'text/plain', updated: new Date().toISOString(),
      }));
    }
  };
  let server: StaleConnectionServer;
  beforeAll(async () => {
    server = await startStaleConnectionServer(answer, 'kill-reused', isMedia);
  });
  afterAll(async () => {
    await server.close();
  });
  const media = (): number => server.requests.filter((r) => r.includes('alt=media')).length;

  it('a get whose media request meets a closed pooled connection is sent once more on a fresh one', async () => {
    server.mode = 'kill-reused';
    const s = new GcsStore({ bucket: 'fake-bucket', apiEndpoint: server.url, projectId: 'test-project' });
    expect((await getBuffer(s, 'k')).toString()).toBe('abc');
    expect((await getBuffer(s, 'k')).toString()).toBe('abc');
    expect(media()).toBe(3);
    expect(server.requests.filter((r) => r.includes('alt=media')).every((r) => r.includes('generation=7'))).toBe(true);
    await s.close();
  });

  it('a reset on a fresh connection is not re-sent: the get fails Transient', async () => {
    server.mode = 'kill-all';
    const s = new GcsStore({ bucket: 'fake-bucket', apiEndpoint: server.url, projectId: 'test-project' });
    const before = media();
    await expectCode(s.get('k'), 'Transient');
    expect(media() - before).toBe(1);
    server.mode = 'kill-reused';
    await s.close();
  });
});

describe('against the test server', () => {
  it('a store prefix is applied to names and stripped from listings', async (ctx) => {
    needsServer(ctx);
    const s = store({ prefix: `${run}/pfx` });
    await s.put('a/1', 'one');
    await s.put('b', 'two');
    expect((await listAll(s, { delimiter: '/' })).map((i) => (i.type === 'object' ? i.key : `${i.prefix}*`))).toEqual(['a/*', 'b']);
    const raw = new Storage({ apiEndpoint: endpoint, projectId: 'test-project' });
    const [text] = await raw.bucket(bucket).file(`${run}/pfx/a/1`).download();
    expect(text.toString()).toBe('one');
    await s.deleteMany(['a/1', 'b']);
  });

  it('large bodies go through a chunked resumable upload with crc32c, md5 and cloudmux_sha256', async (ctx) => {
    needsServer(ctx, true);
    const s = store({ singleRequestThreshold: 256 * 1024, chunkSize: 256 * 1024 });
    const data = randomBytes(5 * 256 * 1024 + 777);
    const before = await counters();
    const meta = await s.put(`${run}/resumable`, Readable.from([data.subarray(0, 100_000), data.subarray(100_000)]), { metadata: { note: 'x' } });
    const after = await counters();
    expect((after['upload.start'] ?? 0) - (before['upload.start'] ?? 0)).toBeGreaterThanOrEqual(1);
    expect((after['upload.chunk'] ?? 0) - (before['upload.chunk'] ?? 0)).toBeGreaterThanOrEqual(6);
    expect(meta.metadata[SHA256_KEY]).toBe(sha256Hex(data));
    expect(meta.metadata.note).toBe('x');
    const head = await s.head(`${run}/resumable`);
    expect(head.checksums.sha256).toBe(sha256Hex(data));
    expect(head.checksums.crc32c).toMatch(/^[0-9a-f]{8}$/);
    expect(head.checksums.md5).toBe((await import('node:crypto')).createHash('md5').update(data).digest('hex'));
    expect((await getBuffer(s, `${run}/resumable`, { verify: true })).equals(data)).toBe(true);
  });

  it('a resumable upload survives a dropped connection mid-chunk by resuming from the persisted offset', async (ctx) => {
    needsServer(ctx, true);
    const s = store({ singleRequestThreshold: 256 * 1024, chunkSize: 512 * 1024 });
    const key = `${run}/resumed`;
    const gen = generatedStream(2 * 1024 * 1024 + 10, { chunkSize: 64 * 1024, seed: 'resume' });
    await fault({ method: 'PUT', path: 'upload_id', reset: true, afterBytes: 300_000, times: 1 });
    const meta = await s.put(key, gen.stream);
    expect(meta.checksums.sha256).toBe(gen.sha256());
    expect(meta.size).toBe(2 * 1024 * 1024 + 10);
    const read = await getBuffer(s, key, { verify: true });
    expect(read.byteLength).toBe(meta.size);
  });

  // In this file (not gcs-resumable.test.ts): its session PUTs would take the server-wide faults other cases here set.
  it('uploadPart and completeUpload make one attempt each (their caller\'s part engine owns re-sends); a re-send resumes from what the session holds', async (ctx) => {
    needsServer(ctx);
    const CHUNK = 256 * 1024;
    const data = randomBytes(3 * CHUNK + 1000);
    const part = (n: number): Buffer => data.subarray((n - 1) * CHUNK, Math.min(data.byteLength, n * CHUNK));
    let resetNext = 0;
    const proxy = await FaultProxy.start({
      upstream: endpoint!,
      decide: (info) => {
        const contentRange = typeof info.headers['content-range'] === 'string' ? info.headers['content-range'] : undefined;
        if (partOf('gcs', { method: info.method, path: info.path, ...(contentRange ? { contentRange } : {}) }) === undefined || resetNext === 0) return null;
        resetNext--;
        return 'resetRequest';
      },
    });
    try {
      const s = new GcsStore({ bucket, apiEndpoint: proxy.url, projectId: 'test-project', prefix: run, chunkSize: CHUNK, singleRequestThreshold: CHUNK });
      const handle = await s.startUpload('one-attempt', { size: data.byteLength, partSize: CHUNK });
      const chunkRequests = (): number => proxy.log.filter((e) => partOf('gcs', e) !== undefined).length;
      await s.uploadPart(handle, 1, part(1));
      resetNext = 1;
      let before = chunkRequests();
      await expect(s.uploadPart(handle, 2, part(2))).rejects.toMatchObject({ code: 'Transient', retryable: true });
      expect(chunkRequests() - before, 'one chunk request: no re-send inside uploadPart').toBe(1);
      before = chunkRequests();
      await s.uploadPart(handle, 2, part(2));
      await s.uploadPart(handle, 3, part(3));
      expect(chunkRequests() - before).toBe(2);
      const parts = [1, 2, 3, 4].map((n) => ({ partNumber: n, size: part(n).byteLength }));
      const done = { checksums: { sha256: sha256Hex(data), crc32c: new Crc32c().update(data).hex() }, lastPart: part(4) };
      resetNext = 1;
      before = chunkRequests();
      await expect(s.completeUpload(handle, parts, done)).rejects.toMatchObject({ code: 'Transient', retryable: true });
      expect(chunkRequests() - before, 'one final chunk request: no re-send inside completeUpload').toBe(1);
      expect((await s.completeUpload(handle, parts, done)).size).toBe(data.byteLength);
      expect((await getBuffer(s, 'one-attempt', { verify: true })).equals(data)).toBe(true);
      await s.close();
    } finally {
      await proxy.close();
    }
  });

  it('with chunkRetries 0 a dropped connection fails the put as Transient and writes nothing', async (ctx) => {
    needsServer(ctx, true);
    const s = store({ singleRequestThreshold: 256 * 1024, chunkSize: 256 * 1024, chunkRetries: 0 });
    const key = `${run}/dropped`;
    await fault({ method: 'PUT', path: 'upload_id', reset: true, afterBytes: 100_000, times: 1 });
    const err = await expectCode(s.put(key, generatedStream(1024 * 1024, { seed: 'drop' }).stream), 'Transient');
    expect(err.retryable).toBe(true);
    await expectCode(s.head(key), 'NotFound');
  });

  it('an expected-digest mismatch on a streamed upload cancels the session: nothing is written', async (ctx) => {
    needsServer(ctx);
    const s = store({ singleRequestThreshold: 256 * 1024, chunkSize: 256 * 1024 });
    const key = `${run}/expect-large`;
    await s.put(key, 'previous');
    await expectCode(s.put(key, generatedStream(1024 * 1024, { seed: 'e' }).stream, { expect: { sha256: sha256Hex('other') } }), 'IntegrityError');
    expect((await getBuffer(s, key)).toString()).toBe('previous');
  });

  it('a single-request put sends a handed-over MD5 as md5Hash instead of computing it: GCS refuses bytes that do not match', async (ctx) => {
    needsServer(ctx);
    const { createHash } = await import('node:crypto');
    const s = store();
    const body = randomBytes(50_000);
    const md5 = createHash('md5').update(body).digest('hex');
    expect((await s.put(`${run}/given-md5`, body, { expect: { md5 } })).checksums.md5).toBe(md5);
    await expectCode(s.put(`${run}/given-md5-bad`, body, { expect: { md5: createHash('md5').update('other').digest('hex'), sha256: sha256Hex(body) } }), 'IntegrityError');
    await expectCode(s.head(`${run}/given-md5-bad`), 'NotFound');
  });

  it('throttling and server errors arrive as Throttled (with Retry-After) and Transient', async (ctx) => {
    needsServer(ctx, true);
    const s = store();
    const key = `${run}/faults`;
    await s.put(key, 'x');
    await fault({ method: 'GET', path: encodeURIComponent(key), status: 429, retryAfter: 2, times: 1 });
    const throttled = await expectCode(s.head(key), 'Throttled');
    expect(throttled.retryAfterMs).toBe(2000);
    await fault({ method: 'GET', path: encodeURIComponent(key), status: 503, times: 1 });
    expect((await expectCode(s.head(key), 'Transient')).retryable).toBe(true);
    await fault({ method: 'GET', path: encodeURIComponent(key), reset: true, times: 1 });
    await expectCode(s.head(key), 'Transient');
    expect((await getBuffer(s, key)).toString()).toBe('x');
  });

  it('etag is generation.metageneration: metadata updates change it, the version (generation) stays', async (ctx) => {
    needsServer(ctx);
    const s = store();
    const key = `${run}/etag`;
    const put = await s.put(key, 'body');
    expect(put.etag).toBe(`${put.version}.1`);
    const updated = await s.updateMetadata(key, { metadata: { a: '1' } });
    expect(updated.version).toBe(put.version);
    expect(updated.etag).toBe(`${put.version}.2`);
    await expectCode(s.put(key, 'stale', { ifMatch: put.etag }), 'PreconditionFailed');
    await expectCode(s.put(key, 'garbage', { ifMatch: 'W/"not-ours"' }), 'PreconditionFailed');
    const next = await s.put(key, 'fresh', { ifMatch: updated.etag });
    expect(BigInt(next.version!)).toBeGreaterThan(BigInt(put.version!));
    // A bare generation is accepted as ifMatch too.
    await s.put(key, 'by generation', { ifMatch: next.version! });
    expect((await getBuffer(s, key)).toString()).toBe('by generation');
  });

  it('copy of a large object loops on rewriteToken until done', async (ctx) => {
    needsServer(ctx, true);
    const s = store();
    const data = randomBytes(3 * 1024 * 1024 + 5);
    await s.put(`${run}/big-src`, data, { metadata: { k: 'v' } });
    const before = (await counters())['objects.rewrite'] ?? 0;
    const meta = await s.copy(`${run}/big-src`, `${run}/big-dst`);
    expect(((await counters())['objects.rewrite'] ?? 0) - before).toBeGreaterThanOrEqual(4);
    expect(meta.metadata.k).toBe('v');
    expect(meta.checksums.sha256).toBe(sha256Hex(data));
    expect((await getBuffer(s, `${run}/big-dst`, { verify: true })).equals(data)).toBe(true);
  });

  it('startAfter skips the equal key across small pages, with and without a delimiter', async (ctx) => {
    needsServer(ctx);
    const s = store({ prefix: `${run}/pages` });
    for (const k of ['a', 'b', 'b/x', 'b/y', 'c', 'd']) await s.put(k, k);
    const names = async (opts: Parameters<typeof listAll>[1]) => (await listAll(s, opts)).map((i) => (i.type === 'object' ? i.key : `${i.prefix}*`));
    expect(await names({ startAfter: 'b', pageSize: 1 })).toEqual(['b/x', 'b/y', 'c', 'd']);
    expect(await names({ startAfter: 'b', pageSize: 1, delimiter: '/' })).toEqual(['b/*', 'c', 'd']);
    expect(await names({ startAfter: 'b/y', pageSize: 2, delimiter: '/' })).toEqual(['c', 'd']);
  });

  it('an abort during a read ends the body with Aborted', async (ctx) => {
    needsServer(ctx);
    const s = store();
    const key = `${run}/abort-read`;
    await s.put(key, randomBytes(4 * 1024 * 1024));
    const ac = new AbortController();
    const { body } = await s.get(key, { signal: ac.signal });
    let err: unknown;
    try {
      for await (const _ of body) ac.abort();
    } catch (e) {
      err = e;
    }
    expect((err as CloudmuxError).code).toBe('Aborted');
  });

  // The SDK's read stream destroys its shared keep-alive agent when a download ends early, which
  // killed every request in flight on it; the driver downloads through its own client instead.
  it('a get body abandoned mid-stream leaves the next request and other downloads in flight working', async (ctx) => {
    needsServer(ctx);
    const s = store();
    const key = `${run}/abandoned`;
    const data = randomBytes(2 * 1024 * 1024);
    await s.put(key, data);
    const other = await s.get(key);
    const otherChunks: Buffer[] = [];
    const otherIt = other.body[Symbol.asyncIterator]();
    otherChunks.push((await otherIt.next()).value as Buffer);
    // Abandoned by breaking out of for-await...
    const first = await s.get(key);
    for await (const _ of first.body) break;
    expect((await listAll(s, { prefix: `${run}/abandoned` })).length).toBe(1);
    // ...and by destroying the body after a read.
    const second = await s.get(key);
    await second.body[Symbol.asyncIterator]().next();
    second.body.destroy();
    expect((await s.head(key)).size).toBe(data.byteLength);
    // The download that was in flight all along still completes with the right bytes.
    for (let r = await otherIt.next(); !r.done; r = await otherIt.next()) otherChunks.push(r.value as Buffer);
    expect(Buffer.concat(otherChunks).equals(data)).toBe(true);
    expect((await getBuffer(s, key, { verify: true })).equals(data)).toBe(true);
  });

  it('a range read abandoned mid-stream leaves the next request working', async (ctx) => {
    needsServer(ctx);
    const s = store();
    const key = `${run}/abandoned-range`;
    const data = randomBytes(1024 * 1024);
    await s.put(key, data);
    for (let i = 0; i < 3; i++) {
      const { body, range } = await s.get(key, { range: { offset: 100_000, length: 800_000 } });
      expect(range).toEqual({ offset: 100_000, length: 800_000 });
      for await (const _ of body) break;
      const next = await s.get(key, { range: { offset: 1000, length: 10 } });
      expect((await collect(next.body)).equals(data.subarray(1000, 1010))).toBe(true);
    }
  });

  it('a download whose signal aborts before anyone reads it fails with Aborted when read (no unhandled error)', async (ctx) => {
    needsServer(ctx);
    const s = store();
    const key = `${run}/abort-unread`;
    await s.put(key, randomBytes(512 * 1024));
    const ac = new AbortController();
    const { body } = await s.get(key, { signal: ac.signal });
    ac.abort();
    await new Promise((r) => setTimeout(r, 20));
    await expectCode((async () => {
      for await (const _ of body) { /* drain */ }
    })(), 'Aborted');
  });

  it('an error answer to the media request maps like any other (and the connection stays usable)', async (ctx) => {
    needsServer(ctx, true);
    const s = store();
    const key = `${run}/media-503`;
    await s.put(key, 'bytes');
    // This object's media request only: other files' tests share the server.
    const media = `${encodeURIComponent(key)}?alt=media`;
    await fault({ method: 'GET', path: media, status: 503, times: 1 });
    expect((await expectCode(s.get(key), 'Transient')).retryable).toBe(true);
    await fault({ method: 'GET', path: media, status: 429, retryAfter: 1, times: 1 });
    expect((await expectCode(s.get(key), 'Throttled')).retryAfterMs).toBe(1000);
    expect((await getBuffer(s, key)).toString()).toBe('bytes');
  });

  it('verify reports a corrupted stored byte as IntegrityError at the end of the stream', async (ctx) => {
    needsServer(ctx, true);
    const s = store();
    const key = `${run}/corrupt`;
    await s.put(key, randomBytes(100_000));
    await control(`corrupt?bucket=${bucket}&name=${encodeURIComponent(key)}`, { method: 'POST' });
    const { body } = await s.get(key, { verify: true });
    await expect(collect(body)).rejects.toMatchObject({ code: 'IntegrityError' });
  });
});
