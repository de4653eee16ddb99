import { randomUUID } from 'node:crypto';
import { MemoryStore } from '../../providers/memory/index.js';
import {
  InvalidArgumentError, NotFoundError, TransientError, checkPart, checkPartsTile, decodeHandle, encodeHandle,
} from '../../src/core/index.js';
import type {
  Capabilities, CompleteUploadOptions, ObjectMeta, SignalOptions, StartUploadOptions, UploadHandle, UploadPartOptions, UploadedPart,
} from '../../src/core/index.js';
import { ForwardingStore } from '../../src/layers/forwarding-store.js';

interface Upload {
  key: string;
  size: number;
  partSize: number;
  contentType?: string;
  metadata: Record<string, string>;
  parts: Map<number, { bytes: Buffer; etag: string }>;
}

/**
 * A memory store with S3-like resumable uploads (upload ids, part etags, NotFound once an upload
 * is finished), that records every call and can be told to fail a part: for migration tests that
 * need to see exactly which parts were sent, without an emulator. Uploads live in a shared map so
 * two instances (two "processes") can see the same provider state.
 */
export class FakeResumableStore extends ForwardingStore {
  protected readonly layerName = 'FakeResumable';
  readonly calls: { op: string; partNumber?: number; key?: string }[] = [];
  /** Part numbers whose next upload fails (non-retryable unless `retryable`). */
  failParts = new Map<number, { retryable: boolean }>();
  partSize = 5;

  constructor(readonly memory = new MemoryStore(), readonly uploads = new Map<string, Upload>()) {
    super(memory);
  }

  override get capabilities(): Capabilities {
    return { ...this.memory.capabilities, resumableUpload: true };
  }

  override get multipartThreshold(): number {
    return this.partSize;
  }

  override uploadPartSize(): number {
    return this.partSize;
  }

  override async startUpload(key: string, opts: StartUploadOptions): Promise<UploadHandle> {
    this.calls.push({ op: 'startUpload', key });
    const id = randomUUID();
    this.uploads.set(id, { key, size: opts.size, partSize: opts.partSize, contentType: opts.contentType, metadata: { ...opts.metadata }, parts: new Map() });
    return encodeHandle('fake', { key, id, size: opts.size, partSize: opts.partSize });
  }

  private upload(handle: UploadHandle): Upload {
    const h = decodeHandle<{ key: string; size: number; partSize: number; id: string }>(handle, 'fake');
    const u = this.uploads.get(h.id);
    if (!u) throw new NotFoundError('no such upload', { provider: 'fake', key: h.key });
    return u;
  }

  override async uploadPart(handle: UploadHandle, partNumber: number, bytes: Uint8Array, _opts?: UploadPartOptions): Promise<UploadedPart> {
    const u = this.upload(handle);
    this.calls.push({ op: 'uploadPart', partNumber, key: u.key });
    checkPart(u, partNumber, bytes.byteLength, 'fake', u.key);
    const fail = this.failParts.get(partNumber);
    if (fail) {
      this.failParts.delete(partNumber);
      if (fail.retryable) throw new TransientError(`part ${partNumber} failed (injected)`, { provider: 'fake', key: u.key });
      throw new InvalidArgumentError(`part ${partNumber} refused (injected)`, { provider: 'fake', key: u.key });
    }
    const etag = `"${randomUUID()}"`;
    u.parts.set(partNumber, { bytes: Buffer.from(bytes), etag });
    return { partNumber, size: bytes.byteLength, etag };
  }

  override async listParts(handle: UploadHandle, _opts?: SignalOptions): Promise<UploadedPart[]> {
    this.calls.push({ op: 'listParts' });
    const u = this.upload(handle);
    return [...u.parts.entries()].sort((a, b) => a[0] - b[0]).map(([n, p]) => ({ partNumber: n, size: p.bytes.byteLength, etag: p.etag }));
  }

  override async completeUpload(handle: UploadHandle, parts: readonly UploadedPart[], opts: CompleteUploadOptions): Promise<ObjectMeta> {
    this.calls.push({ op: 'completeUpload' });
    const u = this.upload(handle);
    checkPartsTile(u, parts, 'fake', u.key);
    for (const p of parts) {
      if (u.parts.get(p.partNumber)?.etag !== p.etag) throw new InvalidArgumentError(`part ${p.partNumber} etag differs`, { provider: 'fake', key: u.key });
    }
    const bytes = Buffer.concat(parts.map((p) => u.parts.get(p.partNumber)!.bytes));
    this.uploads.delete(decodeHandle<{ id: string; key: string; size: number; partSize: number }>(handle, 'fake').id);
    // The memory store computes the real digest; a wrong claimed SHA-256 shows up as a mismatch there.
    return this.memory.put(u.key, bytes, { contentType: u.contentType, metadata: { ...u.metadata }, expect: { sha256: opts.checksums.sha256 } });
  }

  override async abortUpload(handle: UploadHandle): Promise<void> {
    this.calls.push({ op: 'abortUpload' });
    this.uploads.delete(decodeHandle<{ id: string; key: string; size: number; partSize: number }>(handle, 'fake').id);
  }

  /** Part numbers uploaded (in call order). */
  partsSent(): number[] {
    return this.calls.filter((c) => c.op === 'uploadPart').map((c) => c.partNumber!);
  }
}

