import { randomBytes } from 'node:crypto';
import { closeSync, createReadStream, mkdtempSync, openSync, readSync, writeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ApiError, ContentHasher, GcsModel, bucketResource, checkPreconditions, checkSuppliedHashes, compareNames, crc32cBase64,
  etagOf, newAttributes, objectResource, parseGoogHash, patchAttributes, removeDir, removeQuietly,
  type ObjectAttributes, type StoredObject,
} from './model.js';
import { MultipartError, readMultipartRelated } from './multipart.js';

/**
 * A Google Cloud Storage JSON API server for tests, written from the public API reference and
 * faithful enough that the unmodified @google-cloud/storage SDK works against it via `apiEndpoint`.
 * Bytes live in a temp directory (one file per generation) and stream through in bounded memory.
 *
 * Besides the API it answers a few control routes under `/_emulator/` (fault injection, corrupting a
 * stored byte, request counters) so tests in another process can drive failure cases.
 */

export interface GcsTestServerOptions {
  /** Loopback port; 0 (default) picks a free one. */
  port?: number;
  host?: string;
  /** Where bytes are kept; a fresh temp directory (removed on close) by default. */
  dir?: string;
  /** Buckets to create at start. */
  buckets?: string[];
  /**
   * Bytes a rewrite copies per call before answering with a rewriteToken (GCS does this for large
   * or cross-location copies). Small by default so clients' rewriteToken loops get exercised.
   */
  rewriteBytesPerCall?: number;
}

/** A failure to inject into matching requests (the next `times` of them). */
export interface Fault {
  /** HTTP method to match; any when absent. */
  method?: string;
  /** Substring of the request path+query to match; any when absent. */
  path?: string;
  /** Answer with this status and a JSON API error body. */
  status?: number;
  /** Destroy the connection instead of answering; with `afterBytes`, after that many body bytes arrived. */
  reset?: boolean;
  afterBytes?: number;
  /** Retry-After header (seconds) to send with the status. */
  retryAfter?: number;
  times?: number;
}

export interface GcsTestServer {
  /** `http://127.0.0.1:port`, what the SDK takes as `apiEndpoint`. */
  readonly url: string;
  readonly port: number;
  readonly model: GcsModel;
  injectFault(fault: Fault): void;
  close(): Promise<void>;
}

interface UploadSession {
  id: string;
  bucket: string;
  name: string;
  attributes: ObjectAttributes;
  declaredSize: number | undefined;
  preconditions: URLSearchParams;
  tempPath: string;
  file: FileHandle | undefined;
  hasher: ContentHasher;
  busy: boolean;
  result: StoredObject | undefined;
}

interface RewriteState {
  srcBucket: string;
  srcName: string;
  dstBucket: string;
  dstName: string;
  tempPath: string;
  size: number;
  copied: number;
  fields: Omit<StoredObject, 'bucket' | 'name' | 'generation' | 'metageneration' | 'timeCreated' | 'updated' | 'path'>;
  query: URLSearchParams;
}

const RESUMABLE_CHUNK_MULTIPLE = 256 * 1024;
const MAX_JSON_BYTES = 1024 * 1024;
const JSON_TYPE = 'application/json; charset=utf-8';

export async function startGcsTestServer(opts: GcsTestServerOptions = {}): Promise<GcsTestServer> {
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'cloudmux-gcs-'));
  const model = new GcsModel(dir);
  for (const b of opts.buckets ?? []) model.createBucket(b);
  const rewriteBytesPerCall = opts.rewriteBytesPerCall ?? 1024 * 1024;
  const sessions = new Map<string, UploadSession>();
  const rewrites = new Map<string, RewriteState>();
  const faults: (Fault & { times: number })[] = [];
  const counters: Record<string, number> = {};

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) sendError(req, res, e);
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5000;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const base = `http://${req.headers.host ?? 'localhost'}`;
    const url = new URL(req.url ?? '/', base);
    const segs = url.pathname.split('/').slice(1).map((s) => decodeURIComponent(s));
    const q = url.searchParams;
    const method = req.method ?? 'GET';

    if (segs[0] === '_emulator') return control(req, res, segs.slice(1), q);
    const fault = takeFault(method, url.pathname + url.search);
    if (fault && (fault.status !== undefined || (fault.reset && !fault.afterBytes))) {
      if (fault.reset) {
        req.socket.destroy();
        return;
      }
      if (fault.retryAfter !== undefined) res.setHeader('Retry-After', String(fault.retryAfter));
      throw new ApiError(fault.status!, fault.status === 429 ? 'rateLimitExceeded' : 'backendError', `injected fault ${fault.status}`);
    }
    const body = bodyReader(req, fault?.afterBytes);

    const count = (label: string): void => {
      counters[label] = (counters[label] ?? 0) + 1;
    };

    // JSON API: /storage/v1/b[/bucket[/o[/object[/...]]]]
    if (segs[0] === 'storage' && segs[1] === 'v1' && segs[2] === 'b') {
      const [, , , bucket, o, object, ...rest] = segs;
      if (bucket === undefined || bucket === '') {
        if (method === 'GET') {
          count('buckets.list');
          const prefix = q.get('prefix') ?? '';
          const items = [...model.buckets.values()].filter((b) => b.name.startsWith(prefix)).sort((a, b) => compareNames(a.name, b.name)).map((b) => bucketResource(b, base));
          return sendJson(res, 200, { kind: 'storage#buckets', ...(items.length ? { items } : {}) });
        }
        if (method === 'POST') {
          count('buckets.insert');
          const json = (await readJson(body)) as { name?: string };
          return sendJson(res, 200, bucketResource(model.createBucket(String(json.name ?? '')), base));
        }
      } else if (o === undefined) {
        if (method === 'GET') {
          count('buckets.get');
          return sendJson(res, 200, bucketResource(model.bucket(bucket), base));
        }
        if (method === 'DELETE') {
          count('buckets.delete');
          model.deleteBucket(bucket);
          return sendEmpty(res, 204);
        }
      } else if (o === 'o' && (object === undefined || object === '')) {
        if (method === 'GET') {
          count('objects.list');
          return sendJson(res, 200, listObjects(bucket, q, base));
        }
      } else if (o === 'o' && object !== undefined && rest.length === 0) {
        if (method === 'GET') {
          if (q.get('alt') === 'media') {
            count('objects.download');
            return download(req, res, bucket, object, q, false);
          }
          count('objects.get');
          const current = model.get(bucket, object, q.get('generation'));
          checkPreconditions(q, current, 'read');
          return sendJson(res, 200, objectResource(current, base));
        }
        if (method === 'PATCH' || method === 'PUT') {
          count(method === 'PATCH' ? 'objects.patch' : 'objects.update');
          const json = (await readJson(body)) as ObjectAttributes;
          const current = model.get(bucket, object, q.get('generation'));
          checkPreconditions(q, current, 'write');
          if (method === 'PUT') {
            Object.assign(current, newAttributes({ contentType: json.contentType ?? 'application/octet-stream', metadata: json.metadata ?? null, ...pickAttributes(json) }));
          } else {
            patchAttributes(current, json);
          }
          current.metageneration += 1;
          current.updated = new Date();
          return sendJson(res, 200, objectResource(current, base));
        }
        if (method === 'DELETE') {
          count('objects.delete');
          const current = model.get(bucket, object, q.get('generation'));
          checkPreconditions(q, current, 'write');
          model.remove(current);
          return sendEmpty(res, 204);
        }
      } else if (o === 'o' && object !== undefined && method === 'POST') {
        if ((rest[0] === 'copyTo' || rest[0] === 'rewriteTo') && rest[1] === 'b' && rest[3] === 'o' && rest[2] && rest[4]) {
          count(rest[0] === 'copyTo' ? 'objects.copy' : 'objects.rewrite');
          const json = (await readJson(body)) as ObjectAttributes;
          return copyOrRewrite(res, base, rest[0], bucket, object, rest[2], rest[4], q, json);
        }
        if (rest[0] === 'compose' && rest.length === 1) {
          count('objects.compose');
          const json = (await readJson(body)) as ComposeRequest;
          return sendJson(res, 200, objectResource(compose(bucket, object, q, json), base));
        }
      }
      throw new ApiError(404, 'notFound', `Not Found: ${method} ${url.pathname}`);
    }

    if (segs[0] === 'download' && segs[1] === 'storage' && segs[2] === 'v1' && segs[3] === 'b' && segs[5] === 'o' && segs[6] !== undefined && method === 'GET') {
      count('objects.download');
      return download(req, res, segs[4]!, segs[6], q, false);
    }

    if (segs[0] === 'upload' && segs[1] === 'storage' && segs[2] === 'v1' && segs[3] === 'b' && segs[5] === 'o' && segs.length === 6) {
      const bucket = segs[4]!;
      const uploadId = q.get('upload_id');
      if (uploadId !== null) {
        const session = sessions.get(uploadId);
        if (!session) throw new ApiError(404, 'notFound', 'No such upload session (it was cancelled, failed or never existed).');
        if (method === 'PUT' || method === 'POST') {
          count('upload.chunk');
          return uploadChunk(req, res, base, session, body);
        }
        if (method === 'DELETE') {
          count('upload.cancel');
          await dropSession(session);
          res.writeHead(499, { 'Content-Type': JSON_TYPE });
          res.end(JSON.stringify(errorBody(499, 'clientClosedRequest', 'Upload cancelled.')));
          return;
        }
      } else if (method === 'POST') {
        const type = q.get('uploadType') ?? 'media';
        model.bucket(bucket);
        if (type === 'media') {
          count('upload.media');
          const name = q.get('name');
          if (!name) throw new ApiError(400, 'required', 'Required parameter: name');
          const attributes: ObjectAttributes = { contentType: headerString(req, 'content-type') ?? 'application/octet-stream' };
          return sendJson(res, 200, objectResource(await receiveWhole(bucket, name, q, attributes, body, parseGoogHash(req.headers['x-goog-hash'])), base));
        }
        if (type === 'multipart') {
          count('upload.multipart');
          return sendJson(res, 200, objectResource(await receiveMultipart(req, bucket, q, body), base));
        }
        if (type === 'resumable') {
          count('upload.start');
          const json = (await readJson(body)) as ObjectAttributes & { name?: string };
          const name = q.get('name') ?? json.name;
          if (!name) throw new ApiError(400, 'required', 'Required parameter: name');
          checkPreconditions(q, model.find(bucket, name), 'write');
          const attributes: ObjectAttributes = { ...json };
          const headerType = headerString(req, 'x-upload-content-type');
          if (headerType && attributes.contentType === undefined) attributes.contentType = headerType;
          const declared = headerString(req, 'x-upload-content-length');
          const id = randomBytes(12).toString('hex');
          const preconditions = new URLSearchParams();
          for (const [k, v] of q) if (k.startsWith('if')) preconditions.set(k, v);
          sessions.set(id, {
            id, bucket, name, attributes, declaredSize: declared === undefined ? undefined : Number(declared), preconditions,
            tempPath: model.tempPath(), file: undefined, hasher: new ContentHasher(), busy: false, result: undefined,
          });
          res.writeHead(200, { Location: `${base}/upload/storage/v1/b/${bucket}/o?uploadType=resumable&name=${encodeURIComponent(name)}&upload_id=${id}`, 'Content-Length': '0' });
          res.end();
          return;
        }
        throw new ApiError(400, 'invalid', `Invalid upload type: ${type}`);
      }
    }

    if (segs[0] === 'batch') throw new ApiError(501, 'notImplemented', 'The batch endpoint is not implemented by this test server.');

    // XML API, as used by V4 signed URLs: /bucket/object
    if (segs.length >= 2 && segs[0] && (method === 'GET' || method === 'HEAD' || method === 'PUT')) {
      const bucket = segs[0];
      const name = segs.slice(1).join('/');
      checkSignedUrl(q);
      if (method === 'PUT') {
        count('xml.put');
        const obj = await receiveWhole(bucket, name, new URLSearchParams(), { contentType: headerString(req, 'content-type') ?? 'application/octet-stream' }, body, {});
        res.writeHead(200, { ETag: `"${Buffer.from(obj.md5Hash ?? '', 'base64').toString('hex')}"`, 'x-goog-generation': String(obj.generation), 'Content-Length': '0' });
        res.end();
        return;
      }
      count('xml.get');
      return download(req, res, bucket, name, q, method === 'HEAD');
    }
    throw new ApiError(404, 'notFound', `Not Found: ${method} ${url.pathname}`);
  }

  function takeFault(method: string, path: string): Fault | undefined {
    const i = faults.findIndex((f) => (f.method === undefined || f.method === method) && (f.path === undefined || path.includes(f.path)));
    if (i < 0) return undefined;
    const f = faults[i]!;
    f.times -= 1;
    if (f.times <= 0) faults.splice(i, 1);
    return f;
  }

  /** The request body, cutting the connection after `resetAfter` bytes when a fault asks for it. */
  function bodyReader(req: IncomingMessage, resetAfter: number | undefined): AsyncIterable<Buffer> {
    if (resetAfter === undefined) return req;
    return (async function* () {
      let seen = 0;
      for await (const chunk of req as AsyncIterable<Buffer>) {
        if (seen + chunk.byteLength >= resetAfter) {
          const head = chunk.subarray(0, resetAfter - seen);
          if (head.byteLength > 0) yield head;
          req.socket.destroy();
          throw new Error('injected connection reset');
        }
        seen += chunk.byteLength;
        yield chunk;
      }
    })();
  }

  async function control(req: IncomingMessage, res: ServerResponse, segs: string[], q: URLSearchParams): Promise<void> {
    const what = segs[0];
    if (what === 'faults' && req.method === 'POST') {
      const f = (await readJson(req)) as Fault;
      faults.push({ ...f, times: f.times ?? 1 });
      return sendJson(res, 200, { ok: true });
    }
    if (what === 'faults' && req.method === 'DELETE') {
      faults.length = 0;
      return sendJson(res, 200, { ok: true });
    }
    if (what === 'corrupt' && req.method === 'POST') {
      model.corrupt(q.get('bucket') ?? '', q.get('name') ?? '');
      return sendJson(res, 200, { ok: true });
    }
    if (what === 'stats' && req.method === 'GET') {
      return sendJson(res, 200, { counters, sessions: sessions.size, rewrites: rewrites.size });
    }
    if (what === 'buckets' && req.method === 'POST') {
      const name = q.get('name') ?? '';
      if (!model.buckets.has(name)) model.createBucket(name);
      return sendJson(res, 200, { ok: true });
    }
    throw new ApiError(404, 'notFound', 'unknown control route');
  }

  function listObjects(bucketName: string, q: URLSearchParams, base: string): Record<string, unknown> {
    const bucket = model.bucket(bucketName);
    const prefix = q.get('prefix') ?? '';
    const delimiter = q.get('delimiter') || undefined;
    const startOffset = q.get('startOffset') || undefined;
    const endOffset = q.get('endOffset') || undefined;
    const requested = Number(q.get('maxResults') ?? 1000);
    const maxResults = Number.isFinite(requested) && requested > 0 ? Math.min(1000, Math.floor(requested)) : 1000;
    const token = decodePageToken(q.get('pageToken'));
    const names = model.sortedNames(bucket);
    let from = prefix;
    if (startOffset !== undefined && compareNames(startOffset, from) > 0) from = startOffset;
    if (token && compareNames(token.after, from) > 0) from = token.after;
    const items: Record<string, unknown>[] = [];
    const prefixes: string[] = [];
    let emitted = 0;
    let last: { after: string; prefix: boolean } | undefined;
    let nextPageToken: string | undefined;
    for (let i = lowerBound(names, from); i < names.length; i++) {
      const name = names[i]!;
      if (!name.startsWith(prefix)) break;
      if (endOffset !== undefined && compareNames(name, endOffset) >= 0) break;
      if (token && (compareNames(name, token.after) <= 0 || (token.prefix && name.startsWith(token.after)))) continue;
      let rolled: string | undefined;
      if (delimiter) {
        const at = name.indexOf(delimiter, prefix.length);
        if (at >= 0) rolled = name.slice(0, at + delimiter.length);
      }
      if (rolled !== undefined && last?.prefix && last.after === rolled) continue;
      if (emitted === maxResults) {
        nextPageToken = encodePageToken(last!);
        break;
      }
      emitted++;
      if (rolled !== undefined) {
        prefixes.push(rolled);
        last = { after: rolled, prefix: true };
      } else {
        items.push(objectResource(bucket.objects.get(name)!, base));
        last = { after: name, prefix: false };
      }
    }
    return {
      kind: 'storage#objects',
      ...(nextPageToken ? { nextPageToken } : {}),
      ...(prefixes.length ? { prefixes } : {}),
      ...(items.length ? { items } : {}),
    };
  }

  async function download(req: IncomingMessage, res: ServerResponse, bucket: string, name: string, q: URLSearchParams, headOnly: boolean): Promise<void> {
    const obj = model.get(bucket, name, q.get('generation'));
    checkPreconditions(q, obj, 'read');
    // Opened now, in this turn, so an overwrite that unlinks the file cannot pull it away mid-read.
    const fd = openSync(obj.path, 'r');
    const headers: Record<string, string> = {
      'Content-Type': obj.contentType,
      ETag: etagOf(obj),
      'Last-Modified': obj.updated.toUTCString(),
      'Accept-Ranges': 'bytes',
      'x-goog-generation': String(obj.generation),
      'x-goog-metageneration': String(obj.metageneration),
      'x-goog-stored-content-length': String(obj.size),
      'x-goog-stored-content-encoding': obj.contentEncoding ?? 'identity',
      'x-goog-storage-class': 'STANDARD',
      'x-goog-hash': obj.md5Hash === undefined ? `crc32c=${crc32cBase64(obj.crc32c)}` : `crc32c=${crc32cBase64(obj.crc32c)},md5=${obj.md5Hash}`,
    };
    for (const [k, v] of Object.entries(obj.metadata ?? {})) headers[`x-goog-meta-${k}`] = v;
    let start = 0;
    let end = obj.size - 1;
    let status = 200;
    const range = headerString(req, 'range');
    const m = range ? /^bytes=(\d*)-(\d*)$/.exec(range.trim()) : null;
    if (m && obj.size > 0 && (m[1] !== '' || m[2] !== '')) {
      if (m[1] === '') {
        const suffix = Number(m[2]);
        if (suffix === 0) return rangeNotSatisfiable(res, fd, obj.size);
        start = Math.max(0, obj.size - suffix);
      } else {
        start = Number(m[1]);
        if (m[2] !== '') end = Math.min(end, Number(m[2]));
        if (start >= obj.size || end < start) return rangeNotSatisfiable(res, fd, obj.size);
      }
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${obj.size}`;
    }
    headers['Content-Length'] = String(Math.max(0, end - start + 1));
    res.writeHead(status, headers);
    if (headOnly || obj.size === 0) {
      closeFd(fd);
      res.end();
      return;
    }
    const stream = createReadStream('', { fd, start, end, autoClose: true });
    stream.on('error', () => res.destroy());
    res.on('close', () => stream.destroy());
    stream.pipe(res);
  }

  function rangeNotSatisfiable(res: ServerResponse, fd: number, size: number): void {
    closeFd(fd);
    res.setHeader('Content-Range', `bytes */${size}`);
    throw new ApiError(416, 'requestedRangeNotSatisfiable', 'The requested range cannot be satisfied.');
  }

  /** Streams a body into a temp file with hashes, then commits it as bucket/name. */
  async function receiveWhole(bucket: string, name: string, q: URLSearchParams, attributes: ObjectAttributes, body: AsyncIterable<Buffer>, supplied: { crc32c?: string; md5Hash?: string }): Promise<StoredObject> {
    checkPreconditions(q, model.find(bucket, name), 'write');
    const tempPath = model.tempPath();
    const hasher = new ContentHasher();
    const file = await open(tempPath, 'w');
    try {
      for await (const chunk of body) {
        hasher.update(chunk);
        await file.write(chunk);
      }
    } catch (e) {
      await file.close();
      removeQuietly(tempPath);
      throw e;
    }
    await file.close();
    return finishUpload(bucket, name, q, attributes, tempPath, hasher, supplied);
  }

  function finishUpload(bucket: string, name: string, q: URLSearchParams, attributes: ObjectAttributes, tempPath: string, hasher: ContentHasher, supplied: { crc32c?: string; md5Hash?: string }): StoredObject {
    try {
      const actual = { crc32c: hasher.crc.value(), md5Hash: hasher.md5Base64() };
      checkSuppliedHashes({ crc32c: attributes.crc32c, md5Hash: attributes.md5Hash }, actual);
      checkSuppliedHashes(supplied, actual);
      checkPreconditions(q, model.find(bucket, name), 'write');
      return model.commit(bucket, name, tempPath, { ...newAttributes(attributes), size: hasher.bytes, crc32c: actual.crc32c, md5Hash: actual.md5Hash });
    } catch (e) {
      removeQuietly(tempPath);
      throw e;
    }
  }

  async function receiveMultipart(req: IncomingMessage, bucket: string, q: URLSearchParams, body: AsyncIterable<Buffer>): Promise<StoredObject> {
    const type = headerString(req, 'content-type') ?? '';
    const boundary = /boundary=("?)([^";]+)\1/i.exec(type)?.[2];
    if (!/^multipart\/related/i.test(type) || !boundary) throw new ApiError(400, 'invalid', 'Multipart upload needs Content-Type: multipart/related; boundary=…');
    const tempPath = model.tempPath();
    const hasher = new ContentHasher();
    const file = await open(tempPath, 'w');
    let parsed;
    try {
      parsed = await readMultipartRelated(body, boundary, MAX_JSON_BYTES, async (chunk) => {
        hasher.update(chunk);
        await file.write(chunk);
      });
    } catch (e) {
      await file.close();
      removeQuietly(tempPath);
      if (e instanceof MultipartError) throw new ApiError(400, 'invalid', e.message);
      throw e;
    }
    await file.close();
    let json: ObjectAttributes & { name?: string };
    try {
      json = parsed.metadataText.trim() === '' ? {} : (JSON.parse(parsed.metadataText) as ObjectAttributes & { name?: string });
    } catch {
      removeQuietly(tempPath);
      throw new ApiError(400, 'parseError', 'The metadata part is not valid JSON.');
    }
    const name = json.name ?? q.get('name');
    if (!name) {
      removeQuietly(tempPath);
      throw new ApiError(400, 'required', 'Required parameter: name');
    }
    const attributes: ObjectAttributes = { ...json, contentType: json.contentType ?? parsed.dataContentType ?? 'application/octet-stream' };
    return finishUpload(bucket, name, q, attributes, tempPath, hasher, parseGoogHash(req.headers['x-goog-hash']));
  }

  async function uploadChunk(req: IncomingMessage, res: ServerResponse, base: string, session: UploadSession, body: AsyncIterable<Buffer>): Promise<void> {
    if (session.result) {
      await drain(body);
      return sendJson(res, 200, objectResource(session.result, base));
    }
    if (session.busy) throw new ApiError(503, 'backendError', 'Another request for this upload session is in progress.');
    const range = headerString(req, 'content-range') ?? 'bytes */*';
    const status = /^bytes \*\/(\d+|\*)$/.exec(range);
    const data = /^bytes (\d+)-(\d+|\*)\/(\d+|\*)$/.exec(range);
    if (!status && !data) throw new ApiError(400, 'invalid', `Invalid Content-Range: ${range}`);
    const totalText = (status ? status[1] : data![3])!;
    const total = totalText === '*' ? undefined : Number(totalText);
    session.busy = true;
    try {
      if (status) {
        await drain(body);
        if (total !== undefined && total === session.hasher.bytes) return await finishSession(res, base, session, req);
        if (total !== undefined && total < session.hasher.bytes) throw new ApiError(400, 'invalid', `The upload already has ${session.hasher.bytes} bytes, more than ${total}.`);
        return sendIncomplete(req, res, session);
      }
      const start = Number(data![1]);
      const end = data![2] === '*' ? undefined : Number(data![2]);
      if (start > session.hasher.bytes) {
        throw new ApiError(400, 'invalid', `Content-Range starts at ${start} but only ${session.hasher.bytes} bytes were persisted; query the session for its offset.`);
      }
      const isLast = total !== undefined && end !== undefined ? end + 1 === total : end === undefined;
      // GCS persists in 256 KiB units: a non-final chunk must end on such a boundary.
      if (end !== undefined && !isLast && (end + 1) % RESUMABLE_CHUNK_MULTIPLE !== 0) {
        throw new ApiError(400, 'invalid', `A non-final chunk must end on a multiple of ${RESUMABLE_CHUNK_MULTIPLE} bytes; it ends at ${end + 1}.`);
      }
      session.file ??= await open(session.tempPath, 'a');
      let skip = session.hasher.bytes - start;
      let received = 0;
      for await (const chunk of body) {
        received += chunk.byteLength;
        let c = chunk;
        if (skip > 0) {
          const drop = Math.min(skip, c.byteLength);
          skip -= drop;
          c = c.subarray(drop);
        }
        if (c.byteLength === 0) continue;
        await session.file.write(c);
        session.hasher.update(c);
      }
      if (end !== undefined && received !== end - start + 1) {
        throw new ApiError(400, 'invalid', `Content-Range says ${end - start + 1} bytes but the request carried ${received}.`);
      }
      if (total !== undefined && session.hasher.bytes > total) throw new ApiError(400, 'invalid', `The upload has ${session.hasher.bytes} bytes, more than the declared ${total}.`);
      if ((total !== undefined && session.hasher.bytes === total) || (total === undefined && end === undefined)) {
        return await finishSession(res, base, session, req);
      }
      return sendIncomplete(req, res, session);
    } finally {
      session.busy = false;
    }
  }

  /**
   * "Resume Incomplete": 308 with the persisted Range. A client that sends `X-GUploader-No-308: yes`
   * (Google's Go client, so rclone; HTTP stacks that follow any 308 as a redirect) gets what GCS
   * sends it instead: 200 with `X-Http-Status-Code-Override: 308` and the same Range.
   */
  function sendIncomplete(req: IncomingMessage, res: ServerResponse, session: UploadSession): void {
    const headers: Record<string, string> = { 'Content-Length': '0' };
    if (session.hasher.bytes > 0) headers.Range = `bytes=0-${session.hasher.bytes - 1}`;
    if (headerString(req, 'x-guploader-no-308')?.toLowerCase() === 'yes') {
      res.writeHead(200, { ...headers, 'X-Http-Status-Code-Override': '308' });
    } else res.writeHead(308, headers);
    res.end();
  }

  async function finishSession(res: ServerResponse, base: string, session: UploadSession, req: IncomingMessage): Promise<void> {
    if (session.file) {
      await session.file.close();
      session.file = undefined;
    } else {
      await (await open(session.tempPath, 'a')).close();
    }
    try {
      if (session.declaredSize !== undefined && session.declaredSize !== session.hasher.bytes) {
        throw new ApiError(400, 'invalid', `X-Upload-Content-Length was ${session.declaredSize} but ${session.hasher.bytes} bytes were uploaded.`);
      }
      session.result = finishUpload(session.bucket, session.name, session.preconditions, session.attributes, session.tempPath, session.hasher, parseGoogHash(req.headers['x-goog-hash']));
    } catch (e) {
      // A failed finalization ends the session, as on GCS: the client must start over.
      sessions.delete(session.id);
      removeQuietly(session.tempPath);
      throw e;
    }
    sendJson(res, 200, objectResource(session.result, base));
  }

  async function dropSession(session: UploadSession): Promise<void> {
    sessions.delete(session.id);
    await session.file?.close();
    session.file = undefined;
    if (!session.result) removeQuietly(session.tempPath);
  }

  function copyOrRewrite(res: ServerResponse, base: string, kind: 'copyTo' | 'rewriteTo', srcBucket: string, srcName: string, dstBucket: string, dstName: string, q: URLSearchParams, body: ObjectAttributes): void {
    model.bucket(dstBucket);
    const token = q.get('rewriteToken');
    let state: RewriteState;
    if (kind === 'rewriteTo' && token) {
      const s = rewrites.get(token);
      if (!s || s.srcBucket !== srcBucket || s.srcName !== srcName || s.dstBucket !== dstBucket || s.dstName !== dstName) {
        throw new ApiError(400, 'invalid', 'Invalid rewrite token.');
      }
      state = s;
      rewrites.delete(token);
    } else {
      const src = model.get(srcBucket, srcName, q.get('sourceGeneration'));
      checkPreconditions(q, src, 'write', 'ifSource');
      checkPreconditions(q, model.find(dstBucket, dstName), 'write');
      const hasBody = body && Object.keys(body).length > 0;
      state = {
        srcBucket, srcName, dstBucket, dstName, tempPath: model.copyBytes(src), size: src.size, copied: 0, query: q,
        fields: {
          ...newAttributes(hasBody ? body : {}, src), size: src.size, crc32c: src.crc32c, md5Hash: src.md5Hash,
          ...(src.componentCount !== undefined ? { componentCount: src.componentCount } : {}),
        },
      };
    }
    const requested = Number(q.get('maxBytesRewrittenPerCall') ?? 0);
    const perCall = requested > 0 ? Math.min(requested, rewriteBytesPerCall) : rewriteBytesPerCall;
    state.copied = Math.min(state.size, state.copied + perCall);
    if (kind === 'rewriteTo' && state.copied < state.size) {
      const next = randomBytes(16).toString('hex');
      rewrites.set(next, state);
      return sendJson(res, 200, { kind: 'storage#rewriteResponse', totalBytesRewritten: String(state.copied), objectSize: String(state.size), done: false, rewriteToken: next });
    }
    let obj: StoredObject;
    try {
      checkPreconditions(state.query, model.find(dstBucket, dstName), 'write');
      obj = model.commit(dstBucket, dstName, state.tempPath, state.fields);
    } catch (e) {
      removeQuietly(state.tempPath);
      throw e;
    }
    if (kind === 'copyTo') return sendJson(res, 200, objectResource(obj, base));
    return sendJson(res, 200, { kind: 'storage#rewriteResponse', totalBytesRewritten: String(obj.size), objectSize: String(obj.size), done: true, resource: objectResource(obj, base) });
  }

  function compose(bucket: string, name: string, q: URLSearchParams, body: ComposeRequest): StoredObject {
    const sources = body.sourceObjects ?? [];
    if (sources.length === 0 || sources.length > 32) throw new ApiError(400, 'invalid', 'Compose needs between 1 and 32 source objects.');
    const objs = sources.map((s) => {
      const o = model.get(bucket, s.name, s.generation === undefined ? null : String(s.generation));
      const want = s.objectPreconditions?.ifGenerationMatch;
      if (want !== undefined && o.generation !== BigInt(want)) throw new ApiError(412, 'conditionNotMet', 'At least one of the pre-conditions you specified did not hold.');
      return o;
    });
    checkPreconditions(q, model.find(bucket, name), 'write');
    const tempPath = model.tempPath();
    const hasher = new ContentHasher();
    const out = openSync(tempPath, 'w');
    try {
      for (const o of objs) {
        const fd = openSync(o.path, 'r');
        try {
          const buf = Buffer.allocUnsafe(1024 * 1024);
          for (let pos = 0; pos < o.size;) {
            const n = readSyncFull(fd, buf, pos);
            if (n === 0) break;
            hasher.update(buf.subarray(0, n));
            writeSyncFull(out, buf.subarray(0, n));
            pos += n;
          }
        } finally {
          closeFd(fd);
        }
      }
    } finally {
      closeFd(out);
    }
    const components = objs.reduce((n, o) => n + (o.componentCount ?? 1), 0);
    if (components > 1024) {
      removeQuietly(tempPath);
      throw new ApiError(400, 'invalid', 'A composite object may have at most 1024 components.');
    }
    return model.commit(bucket, name, tempPath, {
      ...newAttributes(body.destination ?? {}), size: hasher.bytes, crc32c: hasher.crc.value(), md5Hash: undefined, componentCount: components,
    });
  }

  const address = await new Promise<AddressInfo>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve(server.address() as AddressInfo));
  });
  const host = opts.host ?? '127.0.0.1';
  const url = `http://${host}:${address.port}`;

  return {
    url,
    port: address.port,
    model,
    injectFault(fault: Fault): void {
      faults.push({ ...fault, times: fault.times ?? 1 });
    },
    async close(): Promise<void> {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      for (const s of sessions.values()) await s.file?.close().catch(() => undefined);
      sessions.clear();
      if (ownDir) removeDir(dir);
    },
  };
}

interface ComposeRequest {
  sourceObjects?: { name: string; generation?: string | number; objectPreconditions?: { ifGenerationMatch?: string | number } }[];
  destination?: ObjectAttributes;
}

function pickAttributes(json: ObjectAttributes): ObjectAttributes {
  const out: ObjectAttributes = {};
  for (const f of ['contentEncoding', 'contentDisposition', 'contentLanguage', 'cacheControl'] as const) if (json[f] !== undefined) out[f] = json[f];
  return out;
}

/** V4 signed URLs: checks that the URL has not expired (signatures are not verified). */
function checkSignedUrl(q: URLSearchParams): void {
  const date = q.get('X-Goog-Date');
  const expires = q.get('X-Goog-Expires');
  if (!q.get('X-Goog-Signature') || !date || !expires) throw new ApiError(403, 'accessDenied', 'Anonymous caller does not have access (this server takes only signed XML API requests).');
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(date);
  if (!m) throw new ApiError(400, 'invalid', 'Malformed X-Goog-Date.');
  const signedAt = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  if (Date.now() > signedAt + Number(expires) * 1000) throw new ApiError(400, 'expiredToken', 'Request has expired.');
}

function lowerBound(names: string[], target: string): number {
  let lo = 0;
  let hi = names.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareNames(names[mid]!, target) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function encodePageToken(t: { after: string; prefix: boolean }): string {
  return Buffer.from(JSON.stringify([t.after, t.prefix])).toString('base64url');
}

function decodePageToken(token: string | null): { after: string; prefix: boolean } | undefined {
  if (!token) return undefined;
  try {
    const [after, prefix] = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as [string, boolean];
    if (typeof after !== 'string') throw new Error('bad');
    return { after, prefix: prefix === true };
  } catch {
    throw new ApiError(400, 'invalid', 'Invalid page token.');
  }
}

function headerString(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

async function readJson(body: AsyncIterable<Buffer>): Promise<unknown> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const c of body) {
    size += c.byteLength;
    if (size > MAX_JSON_BYTES) throw new ApiError(400, 'invalid', 'JSON body too large.');
    parts.push(c);
  }
  const text = Buffer.concat(parts).toString('utf8').trim();
  if (text === '') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ApiError(400, 'parseError', 'Parse Error');
  }
}

async function drain(body: AsyncIterable<Buffer>): Promise<void> {
  for await (const _ of body) {
    // discard
  }
}

function errorBody(code: number, reason: string, message: string): Record<string, unknown> {
  return { error: { code, message, errors: [{ message, domain: 'global', reason }] } };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': JSON_TYPE, 'Content-Length': String(Buffer.byteLength(text)) });
  res.end(text);
}

function sendEmpty(res: ServerResponse, status: number): void {
  res.writeHead(status, { 'Content-Length': '0' });
  res.end();
}

function sendError(req: IncomingMessage, res: ServerResponse, e: unknown): void {
  const err = e instanceof ApiError ? e : new ApiError(500, 'backendError', e instanceof Error ? e.message : String(e));
  if (!req.readableEnded) req.resume();
  if (err.status === 304) {
    res.writeHead(304);
    res.end();
    return;
  }
  sendJson(res, err.status, errorBody(err.status, err.reason, err.message));
}

function closeFd(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}

function readSyncFull(fd: number, buf: Buffer, position: number): number {
  return readSync(fd, buf, 0, buf.byteLength, position);
}

function writeSyncFull(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.byteLength) off += writeSync(fd, buf, off, buf.byteLength - off);
}
