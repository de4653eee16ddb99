import { createHash, randomBytes, type Hash } from 'node:crypto';
import { closeSync, copyFileSync, openSync, readSync, renameSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Crc32c } from '../../../src/core/checksums.js';

/**
 * The state of the GCS test server: buckets, objects (bytes on disk, one file per generation),
 * and the JSON shapes the API returns. Every mutation of the tables happens synchronously, in one
 * turn of the event loop, so concurrent requests see one object or the other, never a mix.
 */

export interface StoredObject {
  bucket: string;
  name: string;
  generation: bigint;
  metageneration: number;
  size: number;
  /** Base64 MD5; absent on composite objects, as on GCS. */
  md5Hash: string | undefined;
  /** The CRC32C as an unsigned 32-bit value. */
  crc32c: number;
  contentType: string;
  contentEncoding?: string;
  contentDisposition?: string;
  contentLanguage?: string;
  cacheControl?: string;
  metadata: Record<string, string> | undefined;
  componentCount?: number;
  timeCreated: Date;
  updated: Date;
  /** Where the bytes live. */
  path: string;
}

export interface Bucket {
  name: string;
  timeCreated: Date;
  objects: Map<string, StoredObject>;
  /** Names in byte order, rebuilt lazily after a change. */
  sorted: string[] | undefined;
}

/** An HTTP-level failure with the JSON API's error shape. */
export class ApiError extends Error {
  constructor(readonly status: number, readonly reason: string, message: string) {
    super(message);
  }
}

/** The writable attributes of an object resource, as a client sends them. */
export interface ObjectAttributes {
  contentType?: string;
  contentEncoding?: string;
  contentDisposition?: string;
  contentLanguage?: string;
  cacheControl?: string;
  metadata?: Record<string, string | null> | null;
  crc32c?: string;
  md5Hash?: string;
}

export const ATTRIBUTE_FIELDS = ['contentType', 'contentEncoding', 'contentDisposition', 'contentLanguage', 'cacheControl'] as const;

/** Hashes of bytes being received, plus their count. */
export class ContentHasher {
  readonly md5: Hash = createHash('md5');
  readonly crc = new Crc32c();
  bytes = 0;
  update(chunk: Buffer): void {
    this.md5.update(chunk);
    this.crc.update(chunk);
    this.bytes += chunk.byteLength;
  }
  /** MD5 (base64) of what has been seen so far, without ending the hash. */
  md5Base64(): string {
    return this.md5.copy().digest('base64');
  }
}

export function crc32cBase64(value: number): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value >>> 0);
  return b.toString('base64');
}

export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

export class GcsModel {
  readonly buckets = new Map<string, Bucket>();
  private lastGeneration = 0n;

  constructor(readonly dir: string) {}

  /** Generations are microsecond timestamps on GCS; these are too, made strictly increasing. */
  nextGeneration(): bigint {
    const now = BigInt(Date.now()) * 1000n;
    this.lastGeneration = now > this.lastGeneration ? now : this.lastGeneration + 1n;
    return this.lastGeneration;
  }

  tempPath(): string {
    return join(this.dir, `tmp-${randomBytes(8).toString('hex')}`);
  }

  bucket(name: string): Bucket {
    const b = this.buckets.get(name);
    if (!b) throw new ApiError(404, 'notFound', 'The specified bucket does not exist.');
    return b;
  }

  createBucket(name: string): Bucket {
    if (!/^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$/.test(name)) throw new ApiError(400, 'invalid', `Invalid bucket name: '${name}'`);
    if (this.buckets.has(name)) {
      throw new ApiError(409, 'conflict', 'Your previous request to create the named bucket succeeded and you already own it.');
    }
    const b: Bucket = { name, timeCreated: new Date(), objects: new Map(), sorted: undefined };
    this.buckets.set(name, b);
    return b;
  }

  deleteBucket(name: string): void {
    const b = this.bucket(name);
    if (b.objects.size > 0) throw new ApiError(409, 'conflict', 'The bucket you tried to delete is not empty.');
    this.buckets.delete(name);
  }

  find(bucket: string, name: string): StoredObject | undefined {
    return this.bucket(bucket).objects.get(name);
  }

  get(bucket: string, name: string, generation?: string | null): StoredObject {
    const o = this.find(bucket, name);
    if (!o || (generation && o.generation !== BigInt(generation))) throw noSuchObject(bucket, name);
    return o;
  }

  sortedNames(bucket: Bucket): string[] {
    bucket.sorted ??= [...bucket.objects.keys()].sort(compareNames);
    return bucket.sorted;
  }

  /**
   * Makes the bytes at `tempPath` the new live generation of bucket/name. Call only after the
   * preconditions were checked in the same turn of the event loop.
   */
  commit(bucket: string, name: string, tempPath: string, fields: Omit<StoredObject, 'bucket' | 'name' | 'generation' | 'metageneration' | 'timeCreated' | 'updated' | 'path'>): StoredObject {
    const b = this.bucket(bucket);
    const generation = this.nextGeneration();
    const path = join(this.dir, `obj-${generation}`);
    renameSync(tempPath, path);
    const now = new Date();
    const obj: StoredObject = { ...fields, bucket, name, generation, metageneration: 1, timeCreated: now, updated: now, path };
    const previous = b.objects.get(name);
    b.objects.set(name, obj);
    if (!previous) b.sorted = undefined;
    if (previous) removeQuietly(previous.path);
    return obj;
  }

  remove(obj: StoredObject): void {
    const b = this.bucket(obj.bucket);
    if (b.objects.get(obj.name) === obj) {
      b.objects.delete(obj.name);
      b.sorted = undefined;
      removeQuietly(obj.path);
    }
  }

  /** Copies an object's bytes to a new temp file (for copies, rewrites, compose). */
  copyBytes(obj: StoredObject): string {
    const tmp = this.tempPath();
    copyFileSync(obj.path, tmp);
    return tmp;
  }

  /** Flips one stored byte behind the API's back, for integrity tests. */
  corrupt(bucket: string, name: string): void {
    const o = this.get(bucket, name);
    if (o.size === 0) throw new ApiError(400, 'invalid', 'cannot corrupt an empty object');
    const fd = openSync(o.path, 'r+');
    try {
      const at = Math.floor(o.size / 2);
      const one = Buffer.alloc(1);
      readSync(fd, one, 0, 1, at);
      one[0] = one[0]! ^ 0xff;
      writeSync(fd, one, 0, 1, at);
    } finally {
      closeSync(fd);
    }
  }

  clear(): void {
    for (const b of this.buckets.values()) for (const o of b.objects.values()) removeQuietly(o.path);
    this.buckets.clear();
  }
}

export function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

export function removeDir(path: string): void {
  rmSync(path, { recursive: true, force: true });
}

export function noSuchObject(bucket: string, name: string): ApiError {
  return new ApiError(404, 'notFound', `No such object: ${bucket}/${name}`);
}

export function etagOf(o: StoredObject): string {
  return Buffer.from(`${o.generation}/${o.metageneration}`).toString('base64');
}

/** The JSON API object resource. int64 fields are strings, as on GCS. */
export function objectResource(o: StoredObject, baseUrl: string): Record<string, unknown> {
  const enc = encodeURIComponent(o.name);
  const r: Record<string, unknown> = {
    kind: 'storage#object',
    id: `${o.bucket}/${o.name}/${o.generation}`,
    selfLink: `${baseUrl}/storage/v1/b/${o.bucket}/o/${enc}`,
    mediaLink: `${baseUrl}/download/storage/v1/b/${o.bucket}/o/${enc}?generation=${o.generation}&alt=media`,
    name: o.name,
    bucket: o.bucket,
    generation: String(o.generation),
    metageneration: String(o.metageneration),
    contentType: o.contentType,
    storageClass: 'STANDARD',
    size: String(o.size),
    crc32c: crc32cBase64(o.crc32c),
    etag: etagOf(o),
    timeCreated: o.timeCreated.toISOString(),
    updated: o.updated.toISOString(),
    timeStorageClassUpdated: o.timeCreated.toISOString(),
  };
  if (o.md5Hash !== undefined) r.md5Hash = o.md5Hash;
  if (o.componentCount !== undefined) r.componentCount = o.componentCount;
  for (const f of ATTRIBUTE_FIELDS) if (f !== 'contentType' && o[f] !== undefined) r[f] = o[f];
  if (o.metadata && Object.keys(o.metadata).length > 0) r.metadata = { ...o.metadata };
  return r;
}

export function bucketResource(b: Bucket, baseUrl: string): Record<string, unknown> {
  return {
    kind: 'storage#bucket',
    id: b.name,
    selfLink: `${baseUrl}/storage/v1/b/${b.name}`,
    name: b.name,
    projectNumber: '0',
    metageneration: '1',
    location: 'US',
    storageClass: 'STANDARD',
    etag: 'CAE=',
    timeCreated: b.timeCreated.toISOString(),
    updated: b.timeCreated.toISOString(),
  };
}

/** Applies a PATCH-style change: present fields replace, `metadata` keys merge and null deletes. */
export function patchAttributes(o: StoredObject, body: ObjectAttributes): void {
  for (const f of ATTRIBUTE_FIELDS) {
    if (body[f] === undefined) continue;
    if (body[f] === null) {
      if (f === 'contentType') o.contentType = 'application/octet-stream';
      else delete o[f];
    } else {
      o[f] = String(body[f]);
    }
  }
  if (body.metadata === null) o.metadata = undefined;
  else if (body.metadata !== undefined) {
    const next: Record<string, string> = { ...o.metadata };
    for (const [k, v] of Object.entries(body.metadata)) {
      if (v === null) delete next[k];
      else next[k] = String(v);
    }
    o.metadata = next;
  }
}

/** Attributes for a new object: from the request, falling back to `base` (a copy's source). */
export function newAttributes(body: ObjectAttributes, base?: StoredObject): Pick<StoredObject, 'contentType' | 'contentEncoding' | 'contentDisposition' | 'contentLanguage' | 'cacheControl' | 'metadata'> {
  const out: Pick<StoredObject, 'contentType' | 'contentEncoding' | 'contentDisposition' | 'contentLanguage' | 'cacheControl' | 'metadata'> = {
    contentType: body.contentType ?? base?.contentType ?? 'application/octet-stream',
    metadata: body.metadata !== undefined ? cleanMetadata(body.metadata) : base?.metadata ? { ...base.metadata } : undefined,
  };
  for (const f of ATTRIBUTE_FIELDS) {
    if (f === 'contentType') continue;
    const v = body[f] ?? base?.[f];
    if (v !== undefined && v !== null) out[f] = String(v);
  }
  return out;
}

function cleanMetadata(m: Record<string, string | null> | null): Record<string, string> | undefined {
  if (!m) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m)) if (v !== null) out[k] = String(v);
  return out;
}

/** Which kind of request a precondition guards: reads answer 304 to a NotMatch, writes 412. */
export type PreconditionKind = 'read' | 'write';

/**
 * Checks ifGenerationMatch (0 = must not exist), ifGenerationNotMatch, ifMetagenerationMatch and
 * ifMetagenerationNotMatch (with `prefix` 'ifSource' for a copy's source) against `current`.
 */
export function checkPreconditions(q: URLSearchParams, current: StoredObject | undefined, kind: PreconditionKind, prefix: 'if' | 'ifSource' = 'if'): void {
  const read = (n: string): bigint | undefined => {
    const v = q.get(`${prefix}${n}`);
    if (v === null || v === '') return undefined;
    if (!/^-?\d+$/.test(v)) throw new ApiError(400, 'invalid', `Invalid value for ${prefix}${n}: ${v}`);
    return BigInt(v);
  };
  const failed = (what: string): never => {
    throw new ApiError(412, 'conditionNotMet', `At least one of the pre-conditions you specified did not hold. (${prefix}${what})`);
  };
  const notModified = (): never => {
    throw new ApiError(304, 'notModified', 'Not Modified');
  };
  const genMatch = read('GenerationMatch');
  if (genMatch !== undefined) {
    if (genMatch === 0n ? current !== undefined : current?.generation !== genMatch) failed('GenerationMatch');
  }
  const metaMatch = read('MetagenerationMatch');
  if (metaMatch !== undefined && (current === undefined || BigInt(current.metageneration) !== metaMatch)) failed('MetagenerationMatch');
  const genNot = read('GenerationNotMatch');
  if (genNot !== undefined && current !== undefined && current.generation === genNot) {
    if (kind === 'read') notModified();
    failed('GenerationNotMatch');
  }
  const metaNot = read('MetagenerationNotMatch');
  if (metaNot !== undefined && current !== undefined && BigInt(current.metageneration) === metaNot) {
    if (kind === 'read') notModified();
    failed('MetagenerationNotMatch');
  }
}

/** Compares client-supplied hashes (object resource fields or X-Goog-Hash) with computed ones. */
export function checkSuppliedHashes(supplied: { crc32c?: string; md5Hash?: string }, actual: { crc32c: number; md5Hash: string }): void {
  const crc = crc32cBase64(actual.crc32c);
  if (supplied.crc32c !== undefined && supplied.crc32c !== crc) {
    throw new ApiError(400, 'invalid', `Provided CRC32C "${supplied.crc32c}" doesn't match calculated CRC32C "${crc}".`);
  }
  if (supplied.md5Hash !== undefined && supplied.md5Hash !== actual.md5Hash) {
    throw new ApiError(400, 'invalid', `Provided MD5 hash "${supplied.md5Hash}" doesn't match calculated MD5 hash "${actual.md5Hash}".`);
  }
}

/** Parses `X-Goog-Hash: crc32c=…,md5=…`. */
export function parseGoogHash(header: string | string[] | undefined): { crc32c?: string; md5Hash?: string } {
  const out: { crc32c?: string; md5Hash?: string } = {};
  const values = Array.isArray(header) ? header : header ? [header] : [];
  for (const v of values) {
    for (const part of v.split(',')) {
      const eq = part.indexOf('=');
      if (eq < 0) continue;
      const alg = part.slice(0, eq).trim().toLowerCase();
      const val = part.slice(eq + 1).trim();
      if (alg === 'crc32c') out.crc32c = val;
      if (alg === 'md5') out.md5Hash = val;
    }
  }
  return out;
}
