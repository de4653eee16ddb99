/** AzureStore's streamed put: staged blocks through the part engine, committed with the blob's digests. */
import { randomBytes } from 'node:crypto';
import { Backoff, PartSource, uploadParts, InvalidArgumentError, MultiHasher, SHA256_KEY, bodyChunks, handedOverMd5, throwIfAborted } from '../../src/core/index.js';
import type { Body, ObjectMeta, PutOptions } from '../../src/core/index.js';
import { blockId, md5Bytes } from './checksums.js';
import { DEFAULT_CONTENT_TYPE, PROVIDER, BLOCKS_PER_SIZE_STEP, MAX_BLOCKS, MAX_BLOCK_SIZE } from './config.js';
import { checkExpect, precheckConditions, putSingle, writeConditions, writtenMeta } from './put.js';
import type { AzureStore } from './store.js';

/**
 * Retries of a staged block. A block is idempotent and already in memory, so a dropped keep-alive
 * socket costs one block, not a whole streamed upload that the retry layer could not replay.
 */
export const STAGE_BACKOFF = new Backoff({ baseMs: 200, capMs: 5_000, attempts: 3 });

export async function putStream(s: AzureStore, key: string, body: Body, opts: PutOptions): Promise<ObjectMeta> {
  const size = opts.size;
  // Azure commits at most 50 000 blocks: size them to fit when the caller gives the size, else grow them as the stream goes on.
  const base = s.config.blockSize;
  const fixed = size !== undefined ? Math.max(base, Math.ceil(size / MAX_BLOCKS)) : undefined;
  const sizeAt = (i: number): number => fixed ?? Math.min(MAX_BLOCK_SIZE, base * 2 ** Math.floor(i / BLOCKS_PER_SIZE_STEP));
  // Each block carries its own transactional MD5 (Azure checks it on arrival). The blob's
  // Content-MD5 is a second, whole-blob MD5 pass, skipped when `expect` hands over both the MD5
  // and the SHA-256: the SHA-256 computed here proves these are the bytes that MD5 describes.
  const givenMd5 = opts.expect?.sha256 !== undefined ? handedOverMd5(opts.expect) : undefined;
  const hasher = new MultiHasher(givenMd5 ? [] : ['md5']);
  const source = new PartSource(bodyChunks(body), { partSize: sizeAt, hasher, signal: opts.signal, provider: PROVIDER, key });
  try {
    const first = await source.next();
    const single = first === undefined || (await source.atEnd());
    if (single && (first?.byteLength ?? 0) <= s.config.singleShotThreshold) {
      const known = hasher.digest();
      if (givenMd5) known.md5 = givenMd5;
      return await putSingle(s, key, first ?? Buffer.alloc(0), opts, known);
    }
    if (first) source.pushBack(first);
    return await putBlocks(s, key, source, hasher, givenMd5, opts);
  } finally {
    await source.close();
  }
}

/** Stages the source's blocks through the part engine (retried in place), then commits the block list. */
export async function putBlocks(s: AzureStore, key: string, source: PartSource, hasher: MultiHasher, givenMd5: string | undefined, opts: PutOptions): Promise<ObjectMeta> {
  await precheckConditions(s, key, opts);
  const signal = opts.signal;
  const name = s.blobName(key);
  const uploadId = randomBytes(8).toString('hex');
  const { lastNumber } = await uploadParts<Buffer | undefined, void>(source, (part) => putBlock(s, key, blockId(uploadId, part.number - 1), part.bytes, part.prepared, part.signal), {
    concurrency: s.config.uploadConcurrency,
    backoff: STAGE_BACKOFF,
    signal,
    maxParts: MAX_BLOCKS,
    tooManyParts: () => new InvalidArgumentError(`body exceeds Azure's ${MAX_BLOCKS} blocks per blob (opts.size was ${opts.size ?? 'not given'}); give the real size or a larger blockSize`, { provider: PROVIDER, key }),
    prepare: ({ bytes }) => (s.config.blockMd5 ? md5Bytes(bytes) : undefined),
  });
  throwIfAborted(signal, { provider: PROVIDER, key });
  const checksums = hasher.digest();
  if (givenMd5) checksums.md5 = givenMd5;
  checkExpect(s, checksums, key, opts);
  const contentType = opts.contentType ?? DEFAULT_CONTENT_TYPE;
  const metadata = { ...opts.metadata, [SHA256_KEY]: checksums.sha256! };
  const ids = Array.from({ length: lastNumber }, (_, i) => blockId(uploadId, i));
  // Azure leaves a block blob's Content-MD5 empty unless the committer sets it; set it so readers can verify.
  const res = await s.container.getBlockBlobClient(name).commitBlockList(ids, {
    blobHTTPHeaders: { blobContentType: contentType, blobContentMD5: Buffer.from(checksums.md5!, 'hex') },
    metadata,
    conditions: writeConditions(s, opts),
    abortSignal: signal,
  });
  return writtenMeta(s, key, source.bytes, contentType, metadata, checksums, res);
}

/**
 * One Put Block, with its transactional MD5 when given (Azure refuses a block whose bytes do not
 * hash to it); see `blockMd5` for when it is given.
 */
export async function putBlock(s: AzureStore, key: string, id: string, block: Buffer, md5: Buffer | undefined, signal: AbortSignal | undefined): Promise<void> {
  const name = s.blobName(key);
  try {
    if (s.data) await s.data.putBlock(name, id, block, md5?.toString('base64'), signal);
    else await s.container.getBlockBlobClient(name).stageBlock(id, block, block.byteLength, { ...(md5 ? { transactionalContentMD5: md5 } : {}), abortSignal: signal });
  } catch (e) {
    throw s.mapError(e, key, signal);
  }
}
