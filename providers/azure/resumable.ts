/** AzureStore's resumable uploads (src/core/resumable.ts): staged blocks with ids derived from the handle. */
import { randomBytes } from 'node:crypto';
import { InvalidArgumentError, SHA256_KEY, checkPart, checkPartsTile, decodeHandle, encodeHandle, throwIfAborted, validateKey, validateMetadata } from '../../src/core/index.js';
import type { Checksums, CompleteUploadOptions, ObjectMeta, SignalOptions, StartUploadOptions, UploadHandle, UploadPartOptions, UploadedPart } from '../../src/core/index.js';
import { blockId, md5Bytes } from './checksums.js';
import { DEFAULT_CONTENT_TYPE, PROVIDER, MAX_BLOCKS, MAX_BLOCK_SIZE } from './config.js';
import { writtenMeta } from './put.js';
import type { AzureStore } from './store.js';
import { putBlock } from './block-put.js';

/** What an Azure upload handle holds: the block-id prefix and what the commit stamps on the blob. */
export interface AzureUploadHandle {
  key: string;
  /** Block ids of this upload are `blockId(uploadId, partNumber)`: deterministic, so a resume finds them. */
  uploadId: string;
  size: number;
  partSize: number;
  contentType: string;
  metadata: Record<string, string>;
  account: string;
  container: string;
  prefix: string;
}

/** Sends nothing: an Azure upload is just the block ids it will stage, which the handle fixes. */
export async function startUpload(s: AzureStore, key: string, opts: StartUploadOptions): Promise<UploadHandle> {
  validateKey(key, PROVIDER);
  validateMetadata(opts.metadata, PROVIDER, key);
  throwIfAborted(opts.signal, { provider: PROVIDER, key });
  if (!Number.isSafeInteger(opts.size) || opts.size < 0) throw new InvalidArgumentError(`size must be a byte count, got ${opts.size}`, { provider: PROVIDER, key });
  if (!Number.isSafeInteger(opts.partSize) || opts.partSize < 1 || opts.partSize > MAX_BLOCK_SIZE) {
    throw new InvalidArgumentError(`partSize must be 1..${MAX_BLOCK_SIZE} bytes, got ${opts.partSize}`, { provider: PROVIDER, key });
  }
  if (Math.ceil(opts.size / opts.partSize) > MAX_BLOCKS) {
    throw new InvalidArgumentError(`${opts.size} bytes need more than ${MAX_BLOCKS} blocks of ${opts.partSize}`, { provider: PROVIDER, key });
  }
  const handle: AzureUploadHandle = {
    key, uploadId: randomBytes(8).toString('hex'), size: opts.size, partSize: opts.partSize,
    contentType: opts.contentType ?? DEFAULT_CONTENT_TYPE, metadata: { ...opts.metadata },
    account: s.config.account, container: s.config.container, prefix: s.config.prefix,
  };
  return encodeHandle(PROVIDER, { ...handle });
}

/** Put Block (with its transactional MD5 where `blockMd5` says); one attempt (the caller's part engine retries in place). */
export async function uploadPart(s: AzureStore, handle: UploadHandle, partNumber: number, bytes: Uint8Array, opts: UploadPartOptions = {}): Promise<UploadedPart> {
  const h = uploadHandle(s, handle);
  checkPart(h, partNumber, bytes.byteLength, PROVIDER, h.key);
  throwIfAborted(opts.signal, { provider: PROVIDER, key: h.key });
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const md5 = !s.config.blockMd5 ? undefined : opts.checksums?.md5 !== undefined ? Buffer.from(opts.checksums.md5, 'hex') : md5Bytes(buf);
  await putBlock(s, h.key, blockId(h.uploadId, partNumber), buf, md5, opts.signal);
  return { partNumber, size: bytes.byteLength };
}

/**
 * The uncommitted blocks of this upload (Get Block List). Azure cannot tell a finished or
 * abandoned upload from a fresh one: either lists no blocks (a commit discards uncommitted ones).
 */
export async function listParts(s: AzureStore, handle: UploadHandle, opts: SignalOptions = {}): Promise<UploadedPart[]> {
  const h = uploadHandle(s, handle);
  throwIfAborted(opts.signal, { provider: PROVIDER, key: h.key });
  const client = s.container.getBlockBlobClient(s.blobName(h.key));
  let listed: { name?: string; size?: number }[];
  try {
    const res = await client.getBlockList('uncommitted', { abortSignal: opts.signal });
    listed = res.uncommittedBlocks ?? [];
  } catch (e) {
    const err = s.mapError(e, h.key, opts.signal);
    if (err.code === 'NotFound') return [];
    throw err;
  }
  const ours = new Map<string, number>();
  const count = Math.max(1, Math.ceil(h.size / h.partSize));
  for (let n = 1; n <= count; n++) ours.set(blockId(h.uploadId, n), n);
  const parts: UploadedPart[] = [];
  for (const b of listed) {
    const n = b.name === undefined ? undefined : ours.get(b.name);
    if (n !== undefined) parts.push({ partNumber: n, size: b.size ?? 0 });
  }
  return parts.sort((a, b) => a.partNumber - b.partNumber);
}

/** Put Block List with the blob's Content-MD5 (when given) and `cloudmux_sha256`. */
export async function completeUpload(s: AzureStore, handle: UploadHandle, parts: readonly UploadedPart[], opts: CompleteUploadOptions): Promise<ObjectMeta> {
  const h = uploadHandle(s, handle);
  const key = h.key;
  checkPartsTile(h, parts, PROVIDER, key);
  throwIfAborted(opts.signal, { provider: PROVIDER, key });
  const client = s.container.getBlockBlobClient(s.blobName(key));
  const checksums: Checksums = { sha256: opts.checksums.sha256.toLowerCase(), ...(opts.checksums.md5 ? { md5: opts.checksums.md5.toLowerCase() } : {}) };
  const metadata = { ...h.metadata, [SHA256_KEY]: checksums.sha256! };
  try {
    const res = await client.commitBlockList(parts.map((p) => blockId(h.uploadId, p.partNumber)), {
      blobHTTPHeaders: { blobContentType: h.contentType, ...(checksums.md5 ? { blobContentMD5: Buffer.from(checksums.md5, 'hex') } : {}) },
      metadata,
      abortSignal: opts.signal,
    });
    return writtenMeta(s, key, h.size, h.contentType, metadata, checksums, res);
  } catch (e) {
    throw s.mapError(e, key, opts.signal);
  }
}

/** Nothing to send: Azure has no call that drops uncommitted blocks; they expire after 7 days. */
export async function abortUpload(s: AzureStore, handle: UploadHandle, opts: SignalOptions = {}): Promise<void> {
  const h = uploadHandle(s, handle);
  throwIfAborted(opts.signal, { provider: PROVIDER, key: h.key });
}

export function uploadHandle(s: AzureStore, handle: UploadHandle): AzureUploadHandle {
  const h = decodeHandle<AzureUploadHandle>(handle, PROVIDER);
  if (h.account !== s.config.account || h.container !== s.config.container || h.prefix !== s.config.prefix || !/^[0-9a-f]{16}$/.test(String(h.uploadId))) {
    throw new InvalidArgumentError(`the upload handle belongs to az://${String(h.account)}/${String(h.container)}, not ${s.toString()}`, { provider: PROVIDER, key: h.key });
  }
  validateKey(h.key, PROVIDER);
  return h;
}
