import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Storage, type File, type FileMetadata } from '@google-cloud/storage';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Crc32c } from '../../../src/core/checksums.js';
import { crc32cBase64 } from './model.js';
import { startGcsTestServer, type GcsTestServer } from './server.js';

/**
 * The test server's own tests, driven through the unmodified official SDK (@google-cloud/storage 7)
 * where the SDK exposes the behaviour, and through raw HTTP for the protocol details the SDK hides
 * (chunk boundaries, interrupted requests, status queries, error bodies).
 */

const BUCKET = 'emu-test';
let server: GcsTestServer;
let storage: Storage;

beforeAll(async () => {
  server = await startGcsTestServer({ buckets: [BUCKET], rewriteBytesPerCall: 256 * 1024 });
  storage = new Storage({ apiEndpoint: server.url, projectId: 'test-project', retryOptions: { autoRetry: false, maxRetries: 0 } });
});

afterAll(async () => {
  await server?.close();
});

let prefix = '';
beforeEach(() => {
  prefix = `t-${randomBytes(4).toString('hex')}/`;
});

const bucket = () => storage.bucket(BUCKET);
const b64md5 = (b: Buffer) => createHash('md5').update(b).digest('base64');
const b64crc = (b: Buffer) => crc32cBase64(new Crc32c().update(b).value());

async function download(file: File, opts: { start?: number; end?: number; validation?: boolean | 'crc32c' | 'md5' } = {}): Promise<Buffer> {
  const parts: Buffer[] = [];
  await pipeline(file.createReadStream(opts), new Writable({
    write(chunk: Buffer, _enc, cb) {
      parts.push(chunk);
      cb();
    },
  }));
  return Buffer.concat(parts);
}

async function raw(method: string, path: string, init: { headers?: Record<string, string>; body?: Buffer | string } = {}): Promise<Response> {
  return fetch(`${server.url}${path}`, { method, headers: init.headers, body: init.body });
}

async function stats(): Promise<Record<string, number>> {
  const r = await raw('GET', '/_emulator/stats');
  return ((await r.json()) as { counters: Record<string, number> }).counters;
}

async function startSession(name: string, query = ''): Promise<string> {
  const r = await raw('POST', `/upload/storage/v1/b/${BUCKET}/o?uploadType=resumable&name=${encodeURIComponent(name)}${query}`, {
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ contentType: 'application/x-test', metadata: { a: '1' } }),
  });
  expect(r.status).toBe(200);
  return r.headers.get('location')!;
}

describe('CRC32C', () => {
  it('matches the standard check value of "123456789"', () => {
    const crc = new Crc32c().update(Buffer.from('123456789'));
    expect(crc.value()).toBe(0xe3069283);
    expect(crc32cBase64(crc.value())).toBe(Buffer.from([0xe3, 0x06, 0x92, 0x83]).toString('base64'));
  });
});

describe('buckets', () => {
  it('inserts, gets and lists buckets; a second insert conflicts', async () => {
    const [created] = await storage.createBucket('emu-other');
    expect(created.name).toBe('emu-other');
    const [meta] = await storage.bucket('emu-other').getMetadata();
    expect(meta.name).toBe('emu-other');
    const [buckets] = await storage.getBuckets();
    expect(buckets.map((b) => b.name)).toEqual(expect.arrayContaining([BUCKET, 'emu-other']));
    await expect(storage.createBucket('emu-other')).rejects.toMatchObject({ code: 409 });
    await expect(storage.bucket('emu-missing').getMetadata()).rejects.toMatchObject({ code: 404 });
  });
});

describe('uploads', () => {
  it('multipart upload (save, resumable: false) stores bytes, content type, metadata, md5 and crc32c', async () => {
    const data = randomBytes(100_000);
    const file = bucket().file(`${prefix}multi`);
    await file.save(data, { resumable: false, metadata: { contentType: 'application/x-thing', metadata: { color: 'blue' } } });
    const [meta] = await file.getMetadata();
    expect(meta.size).toBe(String(data.byteLength));
    expect(meta.contentType).toBe('application/x-thing');
    expect(meta.metadata).toEqual({ color: 'blue' });
    expect(meta.md5Hash).toBe(b64md5(data));
    expect(meta.crc32c).toBe(b64crc(data));
    expect(meta.metageneration).toBe('1');
    // The SDK validates crc32c and md5 of downloads; both must be right.
    expect((await download(file, { validation: 'crc32c' })).equals(data)).toBe(true);
    expect((await download(file, { validation: 'md5' })).equals(data)).toBe(true);
  });

  it('media upload takes the bytes and the Content-Type header', async () => {
    const name = `${prefix}media`;
    const r = await raw('POST', `/upload/storage/v1/b/${BUCKET}/o?uploadType=media&name=${encodeURIComponent(name)}`, { headers: { 'Content-Type': 'text/plain' }, body: 'hello' });
    expect(r.status).toBe(200);
    const json = (await r.json()) as Record<string, string>;
    expect(json).toMatchObject({ name, size: '5', contentType: 'text/plain', md5Hash: b64md5(Buffer.from('hello')), crc32c: b64crc(Buffer.from('hello')) });
  });

  it('rejects a multipart upload whose declared crc32c or md5Hash does not match, leaving the old object', async () => {
    const file = bucket().file(`${prefix}checked`);
    await file.save('old', { resumable: false });
    const data = Buffer.from('new bytes');
    await expect(file.save(data, { resumable: false, validation: false, metadata: { crc32c: b64crc(Buffer.from('other')) } })).rejects.toMatchObject({ code: 400 });
    await expect(file.save(data, { resumable: false, validation: false, metadata: { md5Hash: b64md5(Buffer.from('other')) } })).rejects.toMatchObject({ code: 400 });
    expect((await download(file)).toString()).toBe('old');
    await file.save(data, { resumable: false, validation: false, metadata: { crc32c: b64crc(data), md5Hash: b64md5(data) } });
    expect((await download(file)).equals(data)).toBe(true);
  });

  it('resumable upload through the SDK, as one streamed request', async () => {
    const data = randomBytes(700 * 1024 + 13);
    const file = bucket().file(`${prefix}resumable-single`);
    await pipeline(Readable.from([data.subarray(0, 300_000), data.subarray(300_000)]), file.createWriteStream({ resumable: true, metadata: { contentType: 'application/x-r', metadata: { k: 'v' } } }));
    const [meta] = await file.getMetadata();
    expect(meta).toMatchObject({ size: String(data.byteLength), contentType: 'application/x-r', metadata: { k: 'v' }, md5Hash: b64md5(data), crc32c: b64crc(data) });
    expect((await download(file)).equals(data)).toBe(true);
  });

  it('resumable upload through the SDK in 256 KiB chunks answered with 308', async () => {
    const data = randomBytes(3 * 256 * 1024 + 1000);
    const file = bucket().file(`${prefix}resumable-chunked`);
    const before = (await stats())['upload.chunk'] ?? 0;
    await pipeline(Readable.from([data]), file.createWriteStream({ resumable: true, chunkSize: 256 * 1024 }));
    const after = (await stats())['upload.chunk'] ?? 0;
    expect(after - before).toBe(4);
    const [meta] = await file.getMetadata();
    expect(meta.crc32c).toBe(b64crc(data));
    expect((await download(file)).equals(data)).toBe(true);
  });

  it('an interrupted resumable upload reports what it persisted and resumes from there', async () => {
    const name = `${prefix}interrupted`;
    const data = randomBytes(3 * 256 * 1024 + 5000);
    const uri = await startSession(name);
    const chunk = 256 * 1024;
    const first = await fetch(uri, { method: 'PUT', headers: { 'Content-Range': `bytes 0-${chunk - 1}/*` }, body: data.subarray(0, chunk) });
    expect(first.status).toBe(308);
    expect(first.headers.get('range')).toBe(`bytes=0-${chunk - 1}`);

    // The second request dies after sending part of its body.
    await new Promise<void>((resolve) => {
      const req = httpRequest(uri, { method: 'PUT', headers: { 'Content-Range': `bytes ${chunk}-${2 * chunk - 1}/*`, 'Content-Length': String(chunk) } });
      req.on('error', () => resolve());
      req.write(data.subarray(chunk, chunk + 100_000), () => setTimeout(() => {
        req.destroy();
        resolve();
      }, 50));
    });
    await new Promise((r) => setTimeout(r, 50));

    const status = await fetch(uri, { method: 'PUT', headers: { 'Content-Range': 'bytes */*' } });
    expect(status.status).toBe(308);
    const persisted = Number(/bytes=0-(\d+)/.exec(status.headers.get('range') ?? '')![1]) + 1;
    expect(persisted).toBeGreaterThanOrEqual(chunk);
    expect(persisted).toBeLessThanOrEqual(chunk + 100_000);
    expect(await raw('GET', `/storage/v1/b/${BUCKET}/o/${encodeURIComponent(name)}`).then((r) => r.status)).toBe(404);

    const done = await fetch(uri, { method: 'PUT', headers: { 'Content-Range': `bytes ${persisted}-${data.byteLength - 1}/${data.byteLength}` }, body: data.subarray(persisted) });
    expect(done.status).toBe(200);
    const json = (await done.json()) as Record<string, unknown>;
    expect(json).toMatchObject({ name, size: String(data.byteLength), crc32c: b64crc(data), md5Hash: b64md5(data), contentType: 'application/x-test', metadata: { a: '1' } });
    // A completed session answers status queries with the object.
    const again = await fetch(uri, { method: 'PUT', headers: { 'Content-Range': 'bytes */*' } });
    expect(again.status).toBe(200);
    expect((await download(bucket().file(name))).equals(data)).toBe(true);
  });

  it('overlapping resent bytes are skipped; non-final chunks must be multiples of 256 KiB', async () => {
    const uri = await startSession(`${prefix}overlap`);
    const data = randomBytes(600 * 1024);
    const bad = await fetch(uri, { method: 'PUT', headers: { 'Content-Range': 'bytes 0-99999/*' }, body: data.subarray(0, 100_000) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: number; errors: { reason: string }[] } }).error).toMatchObject({ code: 400, errors: [{ reason: 'invalid' }] });
    expect((await fetch(uri, { method: 'PUT', headers: { 'Content-Range': `bytes 0-${262143}/*` }, body: data.subarray(0, 262144) })).status).toBe(308);
    // Resend from 0: the first 256 KiB are already persisted and are skipped.
    const fin = await fetch(uri, { method: 'PUT', headers: { 'Content-Range': `bytes 0-${data.byteLength - 1}/${data.byteLength}` }, body: data });
    expect(fin.status).toBe(200);
    expect(((await fin.json()) as { crc32c: string }).crc32c).toBe(b64crc(data));
    // A gap is refused.
    const gapUri = await startSession(`${prefix}gap`);
    expect((await fetch(gapUri, { method: 'PUT', headers: { 'Content-Range': 'bytes 10-19/20' }, body: data.subarray(10, 20) })).status).toBe(400);
  });

  it('validates X-Goog-Hash on the final request of a resumable upload; a mismatch creates nothing', async () => {
    const name = `${prefix}hash-final`;
    const data = randomBytes(1000);
    const uri = await startSession(name);
    const r = await fetch(uri, { method: 'PUT', headers: { 'Content-Range': `bytes 0-999/1000`, 'X-Goog-Hash': `crc32c=${b64crc(Buffer.from('x'))}` }, body: data });
    expect(r.status).toBe(400);
    expect((await raw('GET', `/storage/v1/b/${BUCKET}/o/${encodeURIComponent(name)}`)).status).toBe(404);
    const uri2 = await startSession(name);
    const ok = await fetch(uri2, { method: 'PUT', headers: { 'Content-Range': `bytes 0-999/1000`, 'X-Goog-Hash': `crc32c=${b64crc(data)},md5=${b64md5(data)}` }, body: data });
    expect(ok.status).toBe(200);
  });

  it('a cancelled session answers 499 and is gone', async () => {
    const uri = await startSession(`${prefix}cancel`);
    expect((await fetch(uri, { method: 'DELETE' })).status).toBe(499);
    expect((await fetch(uri, { method: 'PUT', headers: { 'Content-Range': 'bytes */*' } })).status).toBe(404);
  });

  it('zero-byte objects via every upload type', async () => {
    await bucket().file(`${prefix}empty-multi`).save(Buffer.alloc(0), { resumable: false });
    const uri = await startSession(`${prefix}empty-resumable`);
    const r = await fetch(uri, { method: 'PUT', headers: { 'Content-Range': 'bytes */0' } });
    expect(r.status).toBe(200);
    for (const n of ['empty-multi', 'empty-resumable']) {
      const [meta] = await bucket().file(`${prefix}${n}`).getMetadata();
      expect(meta.size).toBe('0');
      expect(meta.crc32c).toBe('AAAAAA==');
      expect((await download(bucket().file(`${prefix}${n}`))).byteLength).toBe(0);
    }
  });
});

describe('reads', () => {
  it('serves byte ranges (SDK start/end, suffix, open end) and 416 past the end', async () => {
    const data = randomBytes(10_000);
    const file = bucket().file(`${prefix}ranged`);
    await file.save(data, { resumable: false });
    expect((await download(file, { start: 100, end: 199 })).equals(data.subarray(100, 200))).toBe(true);
    const suffix = await raw('GET', `/storage/v1/b/${BUCKET}/o/${encodeURIComponent(file.name)}?alt=media`, { headers: { Range: 'bytes=-10' } });
    expect(suffix.status).toBe(206);
    expect(suffix.headers.get('content-range')).toBe('bytes 9990-9999/10000');
    expect(Buffer.from(await suffix.arrayBuffer()).equals(data.subarray(9990))).toBe(true);
    const open = await raw('GET', `/download/storage/v1/b/${BUCKET}/o/${encodeURIComponent(file.name)}?alt=media`, { headers: { Range: 'bytes=9000-' } });
    expect(Buffer.from(await open.arrayBuffer()).equals(data.subarray(9000))).toBe(true);
    const past = await raw('GET', `/storage/v1/b/${BUCKET}/o/${encodeURIComponent(file.name)}?alt=media`, { headers: { Range: 'bytes=10000-' } });
    expect(past.status).toBe(416);
    const whole = await raw('GET', `/storage/v1/b/${BUCKET}/o/${encodeURIComponent(file.name)}?alt=media`);
    expect(whole.headers.get('x-goog-hash')).toBe(`crc32c=${b64crc(data)},md5=${b64md5(data)}`);
  });

  it('answers 404 with a JSON API error body', async () => {
    const r = await raw('GET', `/storage/v1/b/${BUCKET}/o/${encodeURIComponent(`${prefix}nope`)}`);
    expect(r.status).toBe(404);
    const body = (await r.json()) as { error: { code: number; message: string; errors: { reason: string; domain: string }[] } };
    expect(body.error.code).toBe(404);
    expect(body.error.message).toContain('No such object');
    expect(body.error.errors[0]).toMatchObject({ reason: 'notFound', domain: 'global' });
    await expect(bucket().file(`${prefix}nope`).getMetadata()).rejects.toMatchObject({ code: 404 });
  });
});

describe('generations and preconditions', () => {
  it('each write makes a new generation with metageneration 1; a patch bumps only the metageneration', async () => {
    const file = bucket().file(`${prefix}gens`);
    await file.save('one', { resumable: false });
    const [m1] = await file.getMetadata();
    await file.save('two', { resumable: false });
    const [m2] = await file.getMetadata();
    expect(BigInt(m2.generation!)).toBeGreaterThan(BigInt(m1.generation!));
    expect(m2.metageneration).toBe('1');
    const [m3] = await file.setMetadata({ metadata: { x: '1' } });
    expect(m3.generation).toBe(m2.generation);
    expect(m3.metageneration).toBe('2');
    expect(m3.etag).not.toBe(m2.etag);
    // A read of an old generation is a 404 once it has been replaced.
    await expect(bucket().file(file.name, { generation: Number(m1.generation) }).getMetadata()).rejects.toMatchObject({ code: 404 });
  });

  it('ifGenerationMatch=0 means "must not exist"; a wrong generation is 412', async () => {
    const file = bucket().file(`${prefix}create-only`);
    await file.save('first', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } });
    await expect(file.save('second', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } })).rejects.toMatchObject({ code: 412 });
    const [meta] = await file.getMetadata();
    await expect(file.save('third', { resumable: false, preconditionOpts: { ifGenerationMatch: Number(meta.generation) + 1 } })).rejects.toMatchObject({ code: 412 });
    await file.save('fourth', { resumable: false, preconditionOpts: { ifGenerationMatch: Number(meta.generation) } });
    expect((await download(file)).toString()).toBe('fourth');
    // On a missing object any non-zero generation fails.
    await expect(bucket().file(`${prefix}absent`).save('x', { resumable: false, preconditionOpts: { ifGenerationMatch: 5 } })).rejects.toMatchObject({ code: 412 });
  });

  it('resumable uploads check preconditions at the start and again when they complete', async () => {
    const name = `${prefix}race`;
    const uri = await startSession(name, '&ifGenerationMatch=0');
    await bucket().file(name).save('sneaked in', { resumable: false });
    const r = await fetch(uri, { method: 'PUT', headers: { 'Content-Range': 'bytes 0-2/3' }, body: 'abc' });
    expect(r.status).toBe(412);
    expect((await download(bucket().file(name))).toString()).toBe('sneaked in');
    const start = await raw('POST', `/upload/storage/v1/b/${BUCKET}/o?uploadType=resumable&name=${encodeURIComponent(name)}&ifGenerationMatch=0`, { body: '{}' });
    expect(start.status).toBe(412);
  });

  it('ifMetagenerationMatch guards patches; ifGenerationNotMatch guards deletes (412) and reads (304)', async () => {
    const file = bucket().file(`${prefix}meta`);
    await file.save('x', { resumable: false });
    const [meta] = await file.getMetadata();
    await expect(file.setMetadata({ metadata: { a: '1' } }, { ifMetagenerationMatch: 7 })).rejects.toMatchObject({ code: 412 });
    await file.setMetadata({ metadata: { a: '1' } }, { ifMetagenerationMatch: 1 });
    await expect(file.delete({ ifGenerationNotMatch: Number(meta.generation) })).rejects.toMatchObject({ code: 412 });
    const r = await raw('GET', `/storage/v1/b/${BUCKET}/o/${encodeURIComponent(file.name)}?alt=media&ifGenerationNotMatch=${meta.generation}`);
    expect(r.status).toBe(304);
    const body = (await (await raw('POST', `/upload/storage/v1/b/${BUCKET}/o?uploadType=media&name=${encodeURIComponent(file.name)}&ifMetagenerationMatch=1`, { body: 'y' })).json()) as { error: { code: number } };
    expect(body.error.code).toBe(412);
  });

  it('patch merges metadata keys, null deletes one; delete then 404', async () => {
    const file = bucket().file(`${prefix}patch`);
    await file.save('x', { resumable: false, metadata: { metadata: { a: '1', b: '2' } } });
    const [m] = await file.setMetadata({ contentType: 'text/csv', metadata: { b: null, c: '3' } } as unknown as FileMetadata);
    expect(m.metadata).toEqual({ a: '1', c: '3' });
    expect(m.contentType).toBe('text/csv');
    await file.delete();
    await expect(file.delete()).rejects.toMatchObject({ code: 404 });
    await file.delete({ ignoreNotFound: true });
  });
});

describe('listing', () => {
  it('lists in UTF-8 byte order with prefix, delimiter, pages, startOffset and endOffset', async () => {
    // U+FFFD sorts before U+1F600 in UTF-8 bytes but after its surrogates in UTF-16.
    const names = ['a', 'b/1', 'b/2', 'b/3', 'c', 'd/x/y', 'e\uFFFD', 'e\u{1F600}', 'f'].map((n) => `${prefix}${n}`);
    for (const n of [...names].reverse()) await bucket().file(n).save(n, { resumable: false });

    const [all] = await bucket().getFiles({ prefix });
    expect(all.map((f) => f.name)).toEqual(names);

    const pages: { items: string[]; prefixes: string[] }[] = [];
    let query: Record<string, unknown> | null = { prefix, delimiter: '/', maxResults: 2, autoPaginate: false };
    while (query) {
      const [files, next, resp]: [File[], Record<string, unknown> | null, { prefixes?: string[] }] = await bucket().getFiles(query) as never;
      pages.push({ items: files.map((f) => f.name.slice(prefix.length)), prefixes: (resp.prefixes ?? []).map((p) => p.slice(prefix.length)) });
      query = next;
    }
    expect(pages.flatMap((p) => [...p.prefixes, ...p.items]).sort()).toEqual(['a', 'b/', 'c', 'd/', 'e\uFFFD', 'e\u{1F600}', 'f'].sort());
    expect(pages.every((p) => p.items.length + p.prefixes.length <= 2)).toBe(true);
    expect(pages.length).toBe(4);

    const [ranged] = await bucket().getFiles({ prefix, startOffset: `${prefix}b/2`, endOffset: `${prefix}e\u{1F600}` });
    expect(ranged.map((f) => f.name.slice(prefix.length))).toEqual(['b/2', 'b/3', 'c', 'd/x/y', 'e\uFFFD']);
  });
});

describe('copy, rewrite and compose', () => {
  it('copies through rewrite, looping on rewriteToken for large objects', async () => {
    const data = randomBytes(700 * 1024);
    const src = bucket().file(`${prefix}src`);
    await src.save(data, { resumable: false, metadata: { contentType: 'application/x-src', metadata: { m: '1' } } });
    const before = (await stats())['objects.rewrite'] ?? 0;
    const [dst] = await src.copy(bucket().file(`${prefix}dst`));
    expect((await stats())['objects.rewrite']! - before).toBe(3);
    const [meta] = await dst.getMetadata();
    expect(meta).toMatchObject({ size: String(data.byteLength), contentType: 'application/x-src', metadata: { m: '1' }, md5Hash: b64md5(data), crc32c: b64crc(data) });
    expect((await download(dst)).equals(data)).toBe(true);
  });

  it('rewrite replaces metadata from the request body and honours destination and source preconditions', async () => {
    const src = bucket().file(`${prefix}rsrc`);
    await src.save('payload', { resumable: false, metadata: { metadata: { old: 'y' } } });
    const [srcMeta] = await src.getMetadata();
    const path = (dst: string, q: string) => `/storage/v1/b/${BUCKET}/o/${encodeURIComponent(src.name)}/rewriteTo/b/${BUCKET}/o/${encodeURIComponent(`${prefix}${dst}`)}?${q}`;
    const ok = await raw('POST', path('r1', ''), { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ contentType: 'text/x', metadata: { fresh: '1' } }) });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { done: boolean; resource: Record<string, unknown> }).resource).toMatchObject({ contentType: 'text/x', metadata: { fresh: '1' } });
    expect((await raw('POST', path('r1', 'ifGenerationMatch=0'), { body: '{}' })).status).toBe(412);
    expect((await raw('POST', path('r2', `ifSourceGenerationMatch=${BigInt(srcMeta.generation!) + 1n}`), { body: '{}' })).status).toBe(412);
    expect((await raw('POST', path('r2', `ifSourceGenerationMatch=${srcMeta.generation}`), { body: '{}' })).status).toBe(200);
    const copied = await raw('POST', `/storage/v1/b/${BUCKET}/o/${encodeURIComponent(src.name)}/copyTo/b/${BUCKET}/o/${encodeURIComponent(`${prefix}c1`)}`, { body: '{}' });
    expect(((await copied.json()) as Record<string, unknown>)).toMatchObject({ name: `${prefix}c1`, metadata: { old: 'y' } });
  });

  it('compose concatenates; the result has crc32c but no md5Hash, and a component count', async () => {
    const parts = [randomBytes(1000), randomBytes(2000), randomBytes(3)];
    const files = parts.map((_, i) => bucket().file(`${prefix}part${i}`));
    for (let i = 0; i < parts.length; i++) await files[i]!.save(parts[i]!, { resumable: false });
    const [combined] = await bucket().combine(files, `${prefix}whole`);
    const [meta] = await combined.getMetadata();
    const all = Buffer.concat(parts);
    expect(meta.crc32c).toBe(b64crc(all));
    expect(meta.md5Hash).toBeUndefined();
    expect(meta.componentCount).toBe(3);
    expect((await download(combined, { validation: 'crc32c' })).equals(all)).toBe(true);
  });
});

describe('test controls', () => {
  it('injects status faults (with Retry-After) and connection resets', async () => {
    await raw('POST', '/_emulator/faults', { body: JSON.stringify({ method: 'GET', path: '/o/', status: 429, retryAfter: 3, times: 1 }) });
    const r = await raw('GET', `/storage/v1/b/${BUCKET}/o/${encodeURIComponent(`${prefix}x`)}`);
    expect(r.status).toBe(429);
    expect(r.headers.get('retry-after')).toBe('3');
    server.injectFault({ method: 'GET', path: 'faulty', status: 503 });
    await expect(bucket().file(`${prefix}faulty`).getMetadata()).rejects.toMatchObject({ code: 503 });
    server.injectFault({ method: 'GET', path: 'reset-me', reset: true });
    await expect(raw('GET', `/storage/v1/b/${BUCKET}/o/reset-me`)).rejects.toThrow();
  });

  it('corrupts a stored byte without touching the recorded hashes, so validation catches it', async () => {
    const file = bucket().file(`${prefix}corrupt`);
    await file.save(randomBytes(5000), { resumable: false });
    await raw('POST', `/_emulator/corrupt?bucket=${BUCKET}&name=${encodeURIComponent(file.name)}`);
    await expect(download(file, { validation: 'crc32c' })).rejects.toMatchObject({ code: 'CONTENT_DOWNLOAD_MISMATCH' });
  });
});

describe('V4 signed URLs (XML API)', () => {
  it('serves GET and PUT through URLs the SDK signs, and refuses expired ones', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const signer = new Storage({
      apiEndpoint: server.url,
      projectId: 'test-project',
      credentials: { client_email: 'signer@test-project.iam.gserviceaccount.com', private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() },
    });
    const file = signer.bucket(BUCKET).file(`${prefix}signed`);
    const [putUrl] = await file.getSignedUrl({ version: 'v4', action: 'write', expires: Date.now() + 60_000, contentType: 'text/plain' });
    expect(putUrl.startsWith(server.url)).toBe(true);
    expect((await fetch(putUrl, { method: 'PUT', headers: { 'Content-Type': 'text/plain' }, body: 'signed body' })).status).toBe(200);
    const [getUrl] = await file.getSignedUrl({ version: 'v4', action: 'read', expires: Date.now() + 60_000 });
    const got = await fetch(getUrl);
    expect(got.status).toBe(200);
    expect(await got.text()).toBe('signed body');
    const expired = new URL(getUrl);
    expired.searchParams.set('X-Goog-Date', '20200101T000000Z');
    expect((await fetch(expired)).status).toBe(400);
  });
});
