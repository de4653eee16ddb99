import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  AlreadyExistsError, MultiHasher, NotFoundError, NotModifiedError, NotSupportedError, PreconditionFailedError,
  SHA256_KEY, IntegrityError, bodyChunks, checkCopy, checkDelete, checkGet, checkPut, checksumMismatches, compareKeys,
  resolveRange, rollup, throwIfAborted, validateKey, validateMetadata, validatePrefix, verifyingTransform,
} from '../../src/core/index.js';
import type {
  BlobStore, Body, Capabilities, CopyOptions, DeleteManyResult, DeleteOptions, GetOptions, GetResult, ListItem, ListOptions,
  ObjectMeta, ObjectSummary, PresignOptions, PutOptions, SignalOptions, UpdateMetadataOptions,
} from '../../src/core/index.js';
import { redactInspection } from '../../src/core/redact.js';

interface Entry {
  data: Buffer;
  meta: ObjectMeta;
}

export interface MemoryStoreOptions {
  /** Name shown in toString(), e.g. the host of `memory://name`. */
  name?: string;
}

const PROVIDER = 'memory';

/**
 * The reference implementation: exact semantics, everything in process memory. Puts buffer the
 * body (declared: `streaming: false`); gets return a snapshot, so an overwrite during a read
 * never mixes versions.
 */
export class MemoryStore implements BlobStore {
  readonly provider = PROVIDER;
  readonly capabilities: Capabilities = {
    conditionalPut: true,
    versioning: false,
    nativeChecksums: [],
    presign: false,
    streaming: false,
    conditionalDelete: true,
  };
  private readonly objects = new Map<string, Entry>();
  private generation = 0;

  constructor(private readonly options: MemoryStoreOptions = {}) {}

  async put(key: string, body: Body, opts: PutOptions = {}): Promise<ObjectMeta> {
    checkPut(PROVIDER, this.capabilities, key, opts);
    const hasher = new MultiHasher(['crc32c']);
    const parts: Buffer[] = [];
    for await (const chunk of bodyChunks(body)) {
      throwIfAborted(opts.signal, { provider: PROVIDER, key });
      hasher.update(chunk);
      parts.push(Buffer.from(chunk));
    }
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    const checksums = hasher.digest();
    if (opts.expect && checksumMismatches(opts.expect, checksums).length > 0) {
      throw new IntegrityError('body does not match the expected checksums; nothing was written', { provider: PROVIDER, key });
    }
    this.checkWriteConditions(key, opts.ifNoneMatch, opts.ifMatch);
    const data = Buffer.concat(parts);
    const meta = this.makeMeta(key, data.byteLength, opts.contentType, { ...opts.metadata, [SHA256_KEY]: checksums.sha256! }, checksums);
    this.objects.set(key, { data, meta });
    return cloneMeta(meta);
  }

  async get(key: string, opts: GetOptions = {}): Promise<GetResult> {
    checkGet(PROVIDER, key, opts);
    const entry = this.entry(key);
    if (opts.ifMatch !== undefined && opts.ifMatch !== entry.meta.etag) {
      throw new PreconditionFailedError(`etag is ${entry.meta.etag}, not ${opts.ifMatch}`, { provider: PROVIDER, key });
    }
    if (opts.ifNoneMatch !== undefined && (opts.ifNoneMatch === entry.meta.etag || opts.ifNoneMatch === '*')) {
      throw new NotModifiedError('etag matches ifNoneMatch', { provider: PROVIDER, key });
    }
    const meta = cloneMeta(entry.meta);
    if (opts.range) {
      const r = resolveRange(opts.range, entry.data.byteLength, PROVIDER, key);
      return { meta, body: chunked(entry.data.subarray(r.offset, r.offset + r.length)), range: r };
    }
    let body = chunked(entry.data);
    if (opts.verify) body = body.pipe(verifyingTransform(meta.checksums, { expectedSize: meta.size, provider: PROVIDER, key }));
    return { meta, body };
  }

  async head(key: string, opts: SignalOptions = {}): Promise<ObjectMeta> {
    validateKey(key, PROVIDER);
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    return cloneMeta(this.entry(key).meta);
  }

  async delete(key: string, opts: DeleteOptions = {}): Promise<void> {
    checkDelete(PROVIDER, this.capabilities, key, opts);
    const current = this.objects.get(key);
    if (current && opts.ifMatch !== undefined && opts.ifMatch !== current.meta.etag) {
      throw new PreconditionFailedError(`etag is ${current.meta.etag}, not ${opts.ifMatch}; not deleted`, { provider: PROVIDER, key });
    }
    this.objects.delete(key);
  }

  async deleteMany(keys: Iterable<string>, opts: SignalOptions = {}): Promise<DeleteManyResult> {
    const result: DeleteManyResult = { deleted: [], errors: [] };
    for (const key of keys) {
      try {
        await this.delete(key, opts);
        result.deleted.push(key);
      } catch (error) {
        result.errors.push({ key, error: error as Error });
      }
    }
    return result;
  }

  async *list(opts: ListOptions = {}): AsyncGenerator<ListItem> {
    const prefix = opts.prefix ?? '';
    validatePrefix(prefix, PROVIDER);
    throwIfAborted(opts.signal, { provider: PROVIDER });
    const keys = [...this.objects.keys()]
      .filter((k) => k.startsWith(prefix) && (opts.startAfter === undefined || compareKeys(k, opts.startAfter) > 0))
      .sort(compareKeys);
    const objects = this.objects;
    const signal = opts.signal;
    function* summaries(): Generator<ObjectSummary> {
      for (const k of keys) {
        throwIfAborted(signal, { provider: PROVIDER });
        const e = objects.get(k);
        if (e) yield { key: k, size: e.meta.size, etag: e.meta.etag, lastModified: e.meta.lastModified, version: e.meta.version, checksums: { ...e.meta.checksums } };
      }
    }
    yield* rollup(summaries(), prefix, opts.delimiter);
  }

  async copy(src: string, dst: string, opts: CopyOptions = {}): Promise<ObjectMeta> {
    checkCopy(PROVIDER, this.capabilities, src, dst, opts);
    const entry = this.entry(src);
    if (opts.sourceIfMatch !== undefined && opts.sourceIfMatch !== entry.meta.etag) {
      throw new PreconditionFailedError(`source etag is ${entry.meta.etag}, not ${opts.sourceIfMatch}`, { provider: PROVIDER, key: src });
    }
    this.checkWriteConditions(dst, opts.ifNoneMatch, undefined);
    const metadata = opts.metadata ? { ...opts.metadata, [SHA256_KEY]: entry.meta.checksums.sha256! } : { ...entry.meta.metadata };
    const contentType = opts.metadata ? opts.contentType : (opts.contentType ?? entry.meta.contentType);
    const meta = this.makeMeta(dst, entry.data.byteLength, contentType, metadata, { ...entry.meta.checksums });
    this.objects.set(dst, { data: entry.data, meta });
    return cloneMeta(meta);
  }

  async updateMetadata(key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
    validateKey(key, PROVIDER);
    validateMetadata(opts.metadata, PROVIDER, key);
    throwIfAborted(opts.signal, { provider: PROVIDER, key });
    const entry = this.entry(key);
    if (opts.ifMatch !== undefined && opts.ifMatch !== entry.meta.etag) {
      throw new PreconditionFailedError(`etag is ${entry.meta.etag}, not ${opts.ifMatch}`, { provider: PROVIDER, key });
    }
    const metadata = { [SHA256_KEY]: entry.meta.checksums.sha256!, ...opts.metadata };
    const meta = this.makeMeta(key, entry.data.byteLength, opts.contentType ?? entry.meta.contentType, metadata, entry.meta.checksums);
    this.objects.set(key, { data: entry.data, meta });
    return cloneMeta(meta);
  }

  async presign(key: string, _opts: PresignOptions): Promise<string> {
    throw new NotSupportedError('the memory store cannot presign URLs', { provider: PROVIDER, key });
  }

  async close(): Promise<void> {}

  toString(): string {
    return `memory://${this.options.name ?? ''}`;
  }

  private entry(key: string): Entry {
    const e = this.objects.get(key);
    if (!e) throw new NotFoundError(`no object at ${key}`, { provider: PROVIDER, key });
    return e;
  }

  private checkWriteConditions(key: string, ifNoneMatch: '*' | undefined, ifMatch: string | undefined): void {
    const current = this.objects.get(key);
    if (ifNoneMatch === '*' && current) throw new AlreadyExistsError(`${key} already exists`, { provider: PROVIDER, key });
    if (ifMatch !== undefined) {
      if (!current) throw new NotFoundError(`no object at ${key} to compare with ifMatch`, { provider: PROVIDER, key });
      if (current.meta.etag !== ifMatch) throw new PreconditionFailedError(`etag is ${current.meta.etag}, not ${ifMatch}`, { provider: PROVIDER, key });
    }
  }

  private makeMeta(key: string, size: number, contentType: string | undefined, metadata: Record<string, string>, checksums: ObjectMeta['checksums']): ObjectMeta {
    const version = String(++this.generation);
    return {
      key,
      size,
      etag: `${randomUUID().replaceAll('-', '')}`,
      version,
      lastModified: new Date(),
      contentType: contentType ?? 'application/octet-stream',
      metadata,
      checksums: { sha256: metadata[SHA256_KEY] ?? checksums.sha256, ...(checksums.crc32c ? { crc32c: checksums.crc32c } : {}) },
    };
  }
}
redactInspection(MemoryStore);

function cloneMeta(m: ObjectMeta): ObjectMeta {
  return { ...m, metadata: { ...m.metadata }, checksums: { ...m.checksums } };
}

/** Streams a buffer in 64 KiB slices so consumers see realistic chunking. */
function chunked(buf: Buffer): Readable {
  const size = 64 * 1024;
  function* slices(): Generator<Buffer> {
    for (let i = 0; i < buf.byteLength; i += size) yield buf.subarray(i, i + size);
  }
  return Readable.from(slices(), { objectMode: false });
}
