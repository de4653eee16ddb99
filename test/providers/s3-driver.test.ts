import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Store, fromUrl, mapS3Error, type S3StoreOptions } from '../../providers/s3/index.js';
import { md5FromEtag } from '../../providers/s3/checksums.js';
import { optionsFromUrl, resolveOptions } from '../../providers/s3/config.js';
import { openStore } from '../../src/registry.js';
import { CloudmuxError, SHA256_KEY, collect, getBuffer, listAll } from '../../src/core/index.js';
import { expectCode, generatedStream, pseudoRandomBytes, sha256Hex } from '../../src/testing/index.js';
import { S3RVER_MARK, emulatorOptions, s3rverUploadsDir } from '../harness/s3.js';
import { startStaleConnectionServer, type StaleConnectionServer } from '../harness/stale-connection-server.js';

const MiB = 1024 * 1024;
const onS3rver = process.env[S3RVER_MARK] === 's3rver';

// ---------------------------------------------------------------------------------------------
// Configuration (no network)

describe('s3 config', () => {
  it('parses s3:// URLs with a prefix and options; typed options win over URL parameters', () => {
    const s = fromUrl(new URL('s3://my-bucket/some/prefix?region=eu-west-1&endpoint=http%3A%2F%2F127.0.0.1%3A9000&partSize=10485760&queueSize=2'), { queueSize: 3 });
    expect(s.options).toMatchObject({ bucket: 'my-bucket', prefix: 'some/prefix/', region: 'eu-west-1', endpoint: 'http://127.0.0.1:9000', forcePathStyle: true, partSize: 10 * MiB, queueSize: 3 });
    expect(s.toString()).toBe('s3://my-bucket/some/prefix/?endpoint=http://127.0.0.1:9000');
  });

  it('opens through the store URL registry', async () => {
    const s = await openStore('s3://cloudmux-test/reg?endpoint=http%3A%2F%2F127.0.0.1%3A9&conditionalPut=true');
    expect(s).toBeInstanceOf(S3Store);
    expect(s.capabilities.conditionalPut).toBe(true);
    await s.close();
  });

  it('declares capabilities from configuration: conditional writes and flexible checksums on for AWS, off for custom endpoints unless set', () => {
    const aws = new S3Store({ bucket: 'b-aws', region: 'us-east-1' });
    expect(aws.capabilities).toMatchObject({ conditionalPut: true, nativeChecksums: ['sha256'], presign: true, streaming: true });
    expect(aws.options.forcePathStyle).toBe(false);
    const regional = new S3Store({ bucket: 'b-aws', endpoint: 'https://s3.eu-west-1.amazonaws.com' });
    expect(regional.capabilities.conditionalPut).toBe(true);
    const minio = new S3Store({ bucket: 'b-minio', endpoint: 'http://localhost:9000' });
    expect(minio.capabilities).toMatchObject({ conditionalPut: false, nativeChecksums: ['md5'] });
    expect(minio.options.region).toBeDefined();
    const r2 = new S3Store({ bucket: 'b-r2', endpoint: 'https://acct.r2.cloudflarestorage.com', conditionalPut: true });
    expect(r2.capabilities.conditionalPut).toBe(true);
    // Part Content-MD5: over plain http only, unless asked (flexible checksums send SHA-256 instead).
    expect(resolveOptions({ bucket: 'b-minio', endpoint: 'http://localhost:9000' }).partMd5).toBe(true);
    expect(resolveOptions({ bucket: 'b-r2', endpoint: 'https://acct.r2.cloudflarestorage.com' }).partMd5).toBe(false);
    expect(resolveOptions({ bucket: 'b-r2', endpoint: 'https://acct.r2.cloudflarestorage.com', partMd5: 'always' }).partMd5).toBe(true);
    expect(resolveOptions({ bucket: 'b-minio', endpoint: 'http://localhost:9000', partMd5: 'never' }).partMd5).toBe(false);
    expect(() => resolveOptions({ bucket: 'b-minio', endpoint: 'http://localhost:9000', partMd5: 'sometimes' as 'auto' })).toThrow(/partMd5 must be auto, always or never/);
    expect(resolveOptions(optionsFromUrl(new URL('s3://b-minio?endpoint=https%3A%2F%2Fminio.example%3A9000&partMd5=always'))).partMd5).toBe(true);
  });

  it('rejects credentials in URLs, unknown parameters, bad buckets and part sizes with InvalidConfig, never echoing secrets', () => {
    const bad = [
      () => fromUrl(new URL('s3://AKIAEXAMPLE:supersecretvalue@bucket/p')),
      () => fromUrl(new URL('s3://bucket/p?secretAccessKey=supersecretvalue')),
      () => fromUrl(new URL('s3://Bad_Bucket/')),
      () => new S3Store({ bucket: 'bucket', partSize: 1024 }),
      () => new S3Store({ bucket: 'bucket', endpoint: 'http://user:supersecretvalue@host:9000' }),
    ];
    for (const make of bad) {
      let err: unknown;
      try {
        make();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CloudmuxError);
      expect((err as CloudmuxError).code).toBe('InvalidConfig');
      expect((err as Error).message).not.toContain('supersecretvalue');
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Error mapping (no network): one mapper, every SDK failure into the taxonomy

describe('mapS3Error', () => {
  const ctx = { op: 'get', bucket: 'my-bucket', key: 'k' };
  const sdk = (name: string, status: number, extra: Record<string, unknown> = {}): Error =>
    Object.assign(new Error(`${name} message`), { name, $metadata: { httpStatusCode: status, requestId: 'req-1' }, ...extra });
  const cases: [unknown, string, boolean][] = [
    [sdk('NoSuchKey', 404), 'NotFound', false],
    [sdk('NotFound', 404), 'NotFound', false],
    [sdk('NoSuchBucket', 404), 'InvalidConfig', false],
    [sdk('PreconditionFailed', 412), 'PreconditionFailed', false],
    [sdk('NotModified', 304), 'NotModified', false],
    [sdk('InvalidRange', 416), 'InvalidRange', false],
    [sdk('AccessDenied', 403), 'AccessDenied', false],
    [sdk('SignatureDoesNotMatch', 403, { AWSAccessKeyId: 'AKIAEXAMPLE', StringToSign: 'AWS4-HMAC-SHA256 secretish' }), 'AuthFailed', false],
    [sdk('InvalidAccessKeyId', 403), 'AuthFailed', false],
    [sdk('ExpiredToken', 400), 'AuthFailed', false],
    [Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' }), 'AuthFailed', false],
    [sdk('SlowDown', 503), 'Throttled', true],
    [sdk('TooManyRequests', 429), 'Throttled', true],
    [sdk('InternalError', 500), 'Transient', true],
    [sdk('BadGateway', 502), 'Transient', true],
    [sdk('RequestTimeout', 400), 'Transient', true],
    [Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), 'Transient', true],
    [sdk('BadDigest', 400), 'IntegrityError', false],
    [sdk('NotImplemented', 501), 'NotSupported', false],
    [sdk('EntityTooSmall', 400), 'InvalidArgument', false],
    [Object.assign(new Error('This operation was aborted'), { name: 'AbortError' }), 'Transient', true], // nobody aborted: a cut connection
  ];
  it.each(cases.map(([e, code, retryable]) => [(e as Error).name, code, retryable, e] as const))('%s → %s (retryable %s)', (_name, code, retryable, e) => {
    const m = mapS3Error(e, ctx);
    expect(m).toBeInstanceOf(CloudmuxError);
    expect(m.code).toBe(code);
    expect(m.retryable).toBe(retryable);
    expect(m.provider).toBe('s3');
    expect(m.key).toBe('k');
    expect(`${m.message} ${String(m)} ${String((m.cause as Error | undefined)?.message)}`).not.toMatch(/AKIAEXAMPLE|secretish/);
  });

  it('names the bucket when it does not exist, and a 412 on a create-only write is AlreadyExists', () => {
    expect(mapS3Error(sdk('NoSuchBucket', 404), ctx).message).toContain('"my-bucket"');
    expect(mapS3Error(sdk('PreconditionFailed', 412), { ...ctx, createOnly: true }).code).toBe('AlreadyExists');
  });
});

// ---------------------------------------------------------------------------------------------
// 200 OK with an <Error> body (CopyObject, CompleteMultipartUpload): a fake endpoint

describe('s3 ETag as MD5', () => {
  const md5 = 'd41d8cd98f00b204e9800998ecf8427e';
  it('reads a single-part ETag as the MD5 only where S3 defines it so', () => {
    expect(md5FromEtag({ ETag: `"${md5.toUpperCase()}"` }, 'plain')).toBe(md5);
    expect(md5FromEtag({ ETag: `"${md5}"` }, 'aws')).toBe(md5);
    expect(md5FromEtag({ ETag: `"${md5}"`, ServerSideEncryption: 'AES256' }, 'aws')).toBe(md5);
    // Multipart, KMS, customer keys, compatibles that encrypt, odd ETags, and the switch.
    expect(md5FromEtag({ ETag: `"${md5}-3"` }, 'aws')).toBeUndefined();
    expect(md5FromEtag({ ETag: `"${md5}"`, ServerSideEncryption: 'aws:kms' }, 'aws')).toBeUndefined();
    expect(md5FromEtag({ ETag: `"${md5}"`, ServerSideEncryption: 'aws:kms:dsse' }, 'aws')).toBeUndefined();
    expect(md5FromEtag({ ETag: `"${md5}"`, SSECustomerAlgorithm: 'AES256' }, 'aws')).toBeUndefined();
    expect(md5FromEtag({ ETag: `"${md5}"`, ServerSideEncryption: 'AES256' }, 'plain')).toBeUndefined();
    expect(md5FromEtag({ ETag: '"c38a2e5e-6d5d-4c1e-9a39-2a0f5e9d1b7f"' }, 'plain')).toBeUndefined();
    expect(md5FromEtag({ ETag: `"${md5}"` }, 'never')).toBeUndefined();
    expect(md5FromEtag({}, 'aws')).toBeUndefined();
  });

  it('is on by default and off with etagMd5=false', () => {
    expect(fromUrl(new URL('s3://bkt/p?endpoint=http%3A%2F%2F127.0.0.1%3A9000')).options.etagMd5).toBe(true);
    expect(fromUrl(new URL('s3://bkt/p?endpoint=http%3A%2F%2F127.0.0.1%3A9000&etagMd5=false')).options.etagMd5).toBe(false);
  });
});

describe('s3 against a server that answers 200 with an error body', () => {
  let server: Server;
  let endpoint: string;
  const seen: string[] = [];
  const errorBody = (code: string): string => `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>try again</Message><RequestId>r</RequestId></Error>`;

  beforeAll(async () => {
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      req.on('end', () => {
        const url = new URL(req.url ?? '/', 'http://x');
        seen.push(`${req.method} ${url.search}`);
        const xml = (body: string): void => {
          res.writeHead(200, { 'content-type': 'application/xml' }).end(body);
        };
        if (req.method === 'HEAD') {
          res.writeHead(200, { etag: '"abc"', 'content-length': '3', 'last-modified': new Date().toUTCString(), 'content-type': 'text/plain' }).end();
        } else if (req.method === 'PUT' && req.headers['x-amz-copy-source']) {
          xml(errorBody('SlowDown'));
        } else if (req.method === 'POST' && url.searchParams.has('uploads')) {
          xml('<?xml version="1.0"?><InitiateMultipartUploadResult><Bucket>fake</Bucket><Key>k</Key><UploadId>up-1</UploadId></InitiateMultipartUploadResult>');
        } else if (req.method === 'PUT' && url.searchParams.has('partNumber')) {
          res.writeHead(200, { etag: `"part-${url.searchParams.get('partNumber')}"` }).end();
        } else if (req.method === 'POST' && url.searchParams.has('uploadId')) {
          xml(errorBody('InternalError'));
        } else if (req.method === 'DELETE' && url.searchParams.has('uploadId')) {
          res.writeHead(204).end();
        } else {
          res.writeHead(501).end();
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
  });

  const fake = (): S3Store => new S3Store({ bucket: 'fake', endpoint, credentials: { accessKeyId: 'AKIAFAKE', secretAccessKey: 'fake-secret-key' }, partSize: 5 * MiB });

  it('CopyObject 200 + <Error>SlowDown</Error> is Throttled (retryable), not a success', async () => {
    const s = fake();
    const err = await expectCode(s.copy('src', 'dst'), 'Throttled');
    expect(err.retryable).toBe(true);
    await s.close();
  });

  it('CompleteMultipartUpload 200 + <Error>InternalError</Error> is Transient and the upload is aborted', async () => {
    const s = fake();
    seen.length = 0;
    const err = await expectCode(s.put('k', pseudoRandomBytes(6 * MiB, 'mp')), 'Transient');
    expect(err.retryable).toBe(true);
    expect(seen.some((r) => r.startsWith('DELETE ?uploadId=up-1'))).toBe(true);
    await s.close();
  });
});

// ---------------------------------------------------------------------------------------------
// Pooled connections the server closed: a server that drops each connection when its second
// request arrives (what an idle keep-alive timeout firing just as the socket is reused looks like)

describe('s3 on pooled connections the server closes', () => {
  let server: StaleConnectionServer;
  const answer = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.method === 'HEAD') {
      res.writeHead(200, { etag: '"abc"', 'content-length': '3', 'last-modified': new Date().toUTCString(), 'content-type': 'text/plain' }).end();
    } else if (req.method === 'GET') {
      res.writeHead(200, { etag: '"abc"', 'content-length': '3', 'last-modified': new Date().toUTCString(), 'content-type': 'text/plain' }).end('abc');
    } else if (req.method === 'PUT' || req.method === 'DELETE') {
      res.writeHead(req.method === 'PUT' ? 200 : 204, { etag: '"def"' }).end();
    } else {
      res.writeHead(501).end();
    }
  };
  beforeAll(async () => {
    server = await startStaleConnectionServer(answer);
  });
  afterAll(async () => {
    await server.close();
  });
  const fake = (extra: Partial<S3StoreOptions> = {}): S3Store =>
    new S3Store({ bucket: 'fake', endpoint: server.url, credentials: { accessKeyId: 'AKIAFAKE', secretAccessKey: 'fake-secret-key' }, ...extra });
  const sent = (from: number, method: string): number => server.requests.slice(from).filter((r) => r.startsWith(`${method} `)).length;

  it('a head, get, delete or buffered put that meets a closed pooled connection is sent once more on a fresh one', async () => {
    server.mode = 'kill-reused';
    const s = fake();
    await s.head('k');
    const before = server.requests.length;
    const connections = server.connections();
    expect((await s.head('k')).etag).toBe('abc');
    expect((await getBuffer(s, 'k')).toString()).toBe('abc');
    await s.delete('k');
    await s.put('k', 'small body');
    // Each request went out twice: once on the dead connection, once on a new one.
    expect(server.requests.length - before).toBe(8);
    expect(server.connections() - connections).toBe(4);
    await s.close();
  });

  it('a conditional put is not sent again: its replay could report a write that happened as a failure', async () => {
    server.mode = 'kill-reused';
    const s = fake({ conditionalPut: true });
    await s.head('k');
    const before = server.requests.length;
    const err = await expectCode(s.put('k', 'body', { ifNoneMatch: '*' }), 'Transient');
    expect(err.retryable).toBe(true);
    expect(sent(before, 'PUT')).toBe(1);
    await s.close();
  });

  it('a reset on a fresh connection is not re-sent: it goes to the caller (and the retry policy) as Transient', async () => {
    server.mode = 'kill-all';
    const s = fake();
    const before = server.requests.length;
    await expectCode(s.head('k'), 'Transient');
    expect(sent(before, 'HEAD')).toBe(1);
    server.mode = 'kill-reused';
    await s.close();
  });

  it('a request that fails twice (closed pooled connection, then a reset on the fresh one) fails once, as Transient', async () => {
    server.mode = 'kill-reused';
    const s = fake();
    await s.head('k');
    const before = server.requests.length;
    server.mode = 'kill-all';
    await expectCode(s.head('k'), 'Transient');
    expect(sent(before, 'HEAD')).toBe(2);
    server.mode = 'kill-reused';
    await s.close();
  });
});

// ---------------------------------------------------------------------------------------------
// Against the harness endpoint (s3rver by default, MinIO with docker-compose.test.yml)

interface Call {
  name: string;
  input: Record<string, unknown>;
}

/** A client like the store's own, recording every command it sends. */
function recordingClient(): { client: S3Client; calls: Call[] } {
  const o = emulatorOptions();
  const client = new S3Client({ region: o.region, endpoint: o.endpoint, forcePathStyle: true, maxAttempts: 1, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
  const calls: Call[] = [];
  client.middlewareStack.add((next, context) => async (args) => {
    calls.push({ name: context.commandName ?? '?', input: args.input as Record<string, unknown> });
    return next(args);
  }, { step: 'initialize', name: 'recordCommands' });
  return { client, calls };
}

const hasEndpoint = Boolean(process.env.S3_ENDPOINT);

describe.runIf(hasEndpoint)('s3 driver against the harness endpoint (needs S3_ENDPOINT: CLOUDMUX_EMULATORS must include s3)', () => {
  const run = `driver-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  const open = (extra: Partial<S3StoreOptions> = {}): S3Store => new S3Store(emulatorOptions({ prefix: run, ...extra }));
  let store: S3Store;
  beforeAll(() => {
    store = open();
  });
  afterAll(async () => {
    const all = await listAll(store);
    await store.deleteMany(all.flatMap((i) => (i.type === 'object' ? [i.key] : [])));
    await store.close();
  });

  /** Uploads still open for a bucket key, where the endpoint can tell. */
  async function openUploads(client: S3Client, bucketKey: string, uploadId: string): Promise<string[]> {
    if (onS3rver) {
      // s3rver has neither AbortMultipartUpload nor ListMultipartUploads: it keeps parts on disk
      // under ._S3rver_uploads/<id>, which is what we can look at.
      const dir = s3rverUploadsDir(process.env.CLOUDMUX_S3RVER_DIR!, store.options.bucket);
      return existsSync(dir) ? readdirSync(dir).filter((id) => id === uploadId) : [];
    }
    const r = await client.send(new ListMultipartUploadsCommand({ Bucket: store.options.bucket, Prefix: bucketKey }));
    return (r.Uploads ?? []).map((u) => u.UploadId!);
  }

  it('reports the ETag of a single-part object as its MD5 on get and head, never that of a multipart one; a handed-over MD5 is checked by the server', async () => {
    const body = pseudoRandomBytes(100_000, 'etag-md5');
    const md5 = createHash('md5').update(body).digest('hex');
    await store.put('etag/single', body);
    expect((await store.head('etag/single')).checksums).toEqual({ sha256: sha256Hex(body), md5 });
    const got = await store.get('etag/single');
    await collect(got.body);
    expect(got.meta.checksums.md5).toBe(md5);
    expect((await new S3Store(emulatorOptions({ prefix: run, etagMd5: false })).head('etag/single')).checksums).toEqual({ sha256: sha256Hex(body) });
    const small = open({ partSize: 5 * MiB });
    const multi = generatedStream(5 * MiB + 1, { seed: 'etag-multi' });
    await small.put('etag/multi', multi.stream);
    const multiMd5 = createHash('md5').update(await collect(generatedStream(5 * MiB + 1, { seed: 'etag-multi' }).stream)).digest('hex');
    // S3RVER_DRIVER_DEVIATIONS.multipartEtag: s3rver's is the content MD5; elsewhere a `-2` ETag is no MD5.
    expect((await small.head('etag/multi')).checksums.md5).toBe(onS3rver ? multiMd5 : undefined);
    // The MD5 goes to the server as Content-MD5 (not computed again): a wrong one writes nothing.
    expect((await store.put('etag/given', body, { expect: { md5 } })).etag).toBe(md5);
    if (!onS3rver) { // S3RVER_DRIVER_DEVIATIONS.contentMd5
      await expectCode(store.put('etag/given-bad', body, { expect: { md5: createHash('md5').update('other').digest('hex') } }), 'IntegrityError');
      await expectCode(store.head('etag/given-bad'), 'NotFound');
    }
  });

  it('applies the store prefix to every key and strips it from listings', async () => {
    const whole = new S3Store(emulatorOptions());
    await store.put('a/b', 'x');
    expect((await getBuffer(whole, `${run}/a/b`)).toString()).toBe('x');
    expect((await listAll(store, { prefix: 'a/' })).map((i) => (i.type === 'object' ? i.key : i.prefix))).toEqual(['a/b']);
    expect((await listAll(store, { delimiter: '/' })).map((i) => (i.type === 'object' ? i.key : i.prefix))).toContain('a/');
    await whole.close();
  });

  it('streams a multipart put in parts of partSize and stamps cloudmux_sha256 by a copy in place', async () => {
    const { client, calls } = recordingClient();
    const s = open({ client, partSize: 5 * MiB, queueSize: 2 });
    const gen = generatedStream(12 * MiB + 17, { seed: 'mp' });
    const meta = await s.put('mp/one', gen.stream, { contentType: 'application/x-mp', metadata: { origin: 'test' } });
    const names = calls.map((c) => c.name);
    expect(names.filter((n) => n === 'UploadPartCommand')).toHaveLength(3);
    expect(names).toEqual(expect.arrayContaining(['CreateMultipartUploadCommand', 'CompleteMultipartUploadCommand', 'CopyObjectCommand']));
    expect(names).not.toContain('PutObjectCommand');
    const sizes = calls.filter((c) => c.name === 'UploadPartCommand').map((c) => (c.input.Body as Buffer).byteLength);
    expect(sizes).toEqual([5 * MiB, 5 * MiB, 2 * MiB + 17]);
    expect(calls.filter((c) => c.name === 'UploadPartCommand').every((c) => typeof c.input.ContentMD5 === 'string')).toBe(true);
    expect(meta.checksums.sha256).toBe(gen.sha256());
    const head = await s.head('mp/one');
    expect(head.metadata[SHA256_KEY]).toBe(gen.sha256());
    expect(head.metadata.origin).toBe('test');
    expect(head.contentType).toBe('application/x-mp');
    expect(head.etag).toBe(meta.etag);
    expect(head.size).toBe(12 * MiB + 17);
    expect((await collect((await s.get('mp/one', { verify: true })).body)).byteLength).toBe(12 * MiB + 17);
    await s.close();
  });

  it('partMd5: parts carry Content-MD5 over http (auto) or when asked; never sends none, and the object still verifies', async () => {
    for (const [mode, sent] of [[undefined, true], ['always', true], ['never', false]] as const) {
      const { client, calls } = recordingClient();
      const s = open({ client, partSize: 5 * MiB, queueSize: 2, ...(mode ? { partMd5: mode } : {}) });
      expect(s.partDigests).toEqual(sent ? ['md5'] : []); // what a resumable copy computes for it beforehand
      const gen = generatedStream(10 * MiB + 3, { seed: `part-md5-${mode}` });
      const meta = await s.put(`part-md5/${mode ?? 'auto'}`, gen.stream);
      expect(meta.checksums.sha256).toBe(gen.sha256());
      const parts = calls.filter((c) => c.name === 'UploadPartCommand');
      expect(parts).toHaveLength(3);
      for (const p of parts) expect(typeof p.input.ContentMD5 === 'string', `${mode ?? 'auto'}`).toBe(sent);
      expect(sha256Hex(await collect((await s.get(`part-md5/${mode ?? 'auto'}`, { verify: true })).body))).toBe(gen.sha256());
      // Resumable uploads (migrate's large objects) follow the same rule.
      const h = await s.startUpload(`part-md5/res-${mode ?? 'auto'}`, { size: 5 * MiB + 1, partSize: 5 * MiB });
      await s.uploadPart(h, 1, Buffer.alloc(5 * MiB, 1));
      expect(typeof calls.filter((c) => c.name === 'UploadPartCommand').at(-1)!.input.ContentMD5 === 'string').toBe(sent);
      await s.abortUpload(h).catch(() => undefined); // s3rver has no AbortMultipartUpload (see the abort case below)
      await s.close();
    }
  });

  it('with expect.sha256 a multipart put writes the digest up front (no copy) and a mismatch aborts the upload', async () => {
    const { client, calls } = recordingClient();
    const s = open({ client, partSize: 5 * MiB });
    const data = pseudoRandomBytes(11 * MiB, 'exp');
    const meta = await s.put('mp/expected', data, { expect: { sha256: sha256Hex(data) } });
    expect(calls.map((c) => c.name)).not.toContain('CopyObjectCommand');
    expect((await s.head('mp/expected')).metadata[SHA256_KEY]).toBe(sha256Hex(data));
    expect(meta.checksums.sha256).toBe(sha256Hex(data));

    calls.length = 0;
    await expectCode(s.put('mp/mismatch', data, { expect: { sha256: sha256Hex('other') } }), 'IntegrityError');
    await expectCode(s.head('mp/mismatch'), 'NotFound');
    const abort = calls.find((c) => c.name === 'AbortMultipartUploadCommand');
    const created = calls.find((c) => c.name === 'CreateMultipartUploadCommand');
    expect(abort?.input.UploadId, 'AbortMultipartUpload sent').toBeTruthy();
    expect(calls.map((c) => c.name)).not.toContain('CompleteMultipartUploadCommand');
    expect(created).toBeDefined();
    await s.close();
  });

  it('an aborted multipart put sends AbortMultipartUpload and leaves no parts (s3rver: the abort is sent; it cannot execute it)', async () => {
    const { client, calls } = recordingClient();
    const s = open({ client, partSize: 5 * MiB });
    const ac = new AbortController();
    const gen = generatedStream(30 * MiB, { seed: 'abort', onChunk: (done) => { if (done >= 16 * MiB) ac.abort(); } });
    await expectCode(s.put('mp/aborted', gen.stream, { signal: ac.signal }), 'Aborted');
    await expectCode(s.head('mp/aborted'), 'NotFound');
    const abort = calls.find((c) => c.name === 'AbortMultipartUploadCommand');
    expect(abort, 'AbortMultipartUpload sent').toBeDefined();
    const uploadId = String(abort!.input.UploadId);
    const left = await openUploads(client, `${run}/mp/aborted`, uploadId);
    if (onS3rver) {
      // Deviation, asserted so it is noticed if s3rver ever gains AbortMultipartUpload.
      expect(left, 's3rver keeps the parts of an aborted upload (no AbortMultipartUpload route)').toEqual([uploadId]);
    } else {
      expect(left).toEqual([]);
    }
    await s.close();
  });

  it('round-trips odd keys (those s3rver can store) through put, get and list', async () => {
    const names = ['with space', 'plus+sign', 'percent%20', 'hash#tag', 'question?mark', 'amp&ersand', 'equals=sign', 'colon:semi;', 'quote\'"', 'brackets[]{}()', 'tilde~at@dollar$', 'comma,bang!star*', '日本語/キー', 'emoji😀/x', 'caf\u00e9', 'cafe\u0301'];
    const keys = names.map((n) => `odd/${n}`);
    for (const k of keys) await store.put(k, `body of ${k}`);
    for (const k of keys) expect((await getBuffer(store, k)).toString()).toBe(`body of ${k}`);
    const listed = (await listAll(store, { prefix: 'odd/' })).map((i) => (i.type === 'object' ? i.key : i.prefix));
    expect(new Set(listed)).toEqual(new Set(keys));
  });

  it('copies above multipartCopyThreshold with UploadPartCopy (s3rver: NotSupported, and no destination is left)', async () => {
    const s = open({ multipartCopyThreshold: 5 * MiB, partSize: 5 * MiB });
    const data = pseudoRandomBytes(7 * MiB, 'mpc');
    // expect.sha256 spares the put its own copy in place, which would need UploadPartCopy too.
    await s.put('mpc/src', data, { metadata: { tag: 'mpc' }, expect: { sha256: sha256Hex(data) } });
    if (onS3rver) {
      await expectCode(s.copy('mpc/src', 'mpc/dst'), 'NotSupported');
      await expectCode(s.head('mpc/dst'), 'NotFound');
    } else {
      const meta = await s.copy('mpc/src', 'mpc/dst');
      expect(meta.size).toBe(data.byteLength);
      expect((await getBuffer(s, 'mpc/dst', { verify: true })).equals(data)).toBe(true);
      expect((await s.head('mpc/dst')).metadata.tag).toBe('mpc');
    }
    await s.close();
  });

  it('deleteMany sends DeleteObjects in batches of 1,000', async () => {
    const { client, calls } = recordingClient();
    const s = open({ client });
    const keys = Array.from({ length: 2500 }, (_, i) => `gone/${i}`);
    const res = await s.deleteMany(keys);
    expect(res.errors).toEqual([]);
    expect(res.deleted).toHaveLength(2500);
    const batches = calls.filter((c) => c.name === 'DeleteObjectsCommand').map((c) => ((c.input.Delete as { Objects: unknown[] }).Objects).length);
    expect(batches).toEqual([1000, 1000, 500]);
    await s.close();
  });

  it('reads any range of an empty object as empty', async () => {
    await store.put('empty', '');
    const r = await store.get('empty', { range: { offset: 0 } });
    expect((await collect(r.body)).byteLength).toBe(0);
    expect(r.range).toEqual({ offset: 0, length: 0 });
  });

  it('wrong credentials are AuthFailed and a missing bucket is InvalidConfig naming it; no secret in any message', async () => {
    const secret = 'definitely-not-the-secret-0123456789';
    const wrong = new S3Store(emulatorOptions({ credentials: { accessKeyId: 'CMXWRONGKEYID', secretAccessKey: secret } }));
    const err = await expectCode(wrong.put('x', 'y'), 'AuthFailed');
    expect(`${err.message} ${String(err)} ${String((err.cause as Error).message)}`).not.toContain(secret);
    await wrong.close();
    const missing = new S3Store(emulatorOptions({ bucket: 'no-such-bucket-cmx' }));
    const e2 = await expectCode(missing.put('x', 'y'), 'InvalidConfig');
    expect(e2.message).toContain('no-such-bucket-cmx');
    await missing.close();
  });

  it('validates presign expiry and signs a URL', async () => {
    await expectCode(store.presign('p', { method: 'GET', expiresIn: 8 * 24 * 3600 }), 'InvalidArgument');
    const url = await store.presign('p', { method: 'GET', expiresIn: 60 });
    expect(url).toContain(`/${run}/p?`);
    expect(url).toContain('X-Amz-Signature=');
  });
});
