import { createHash } from 'node:crypto';
import { SHA256_KEY } from '../../src/core/metadata.js';
import type { Checksums } from '../../src/core/types.js';

/**
 * Digests known for a blob without reading it: SHA-256 from `cloudmux_sha256`, MD5 from the blob's
 * Content-MD5. Azure sets Content-MD5 itself only for single-shot uploads; cloudmux sets it on
 * block commits too, but a blob written by another tool in blocks may have none.
 */
export function azureChecksums(metadata: Record<string, string> | undefined, contentMD5: Uint8Array | undefined): Checksums {
  const out: Checksums = {};
  const sha = metadata?.[SHA256_KEY];
  if (sha && /^[0-9a-f]{64}$/i.test(sha)) out.sha256 = sha.toLowerCase();
  if (contentMD5 && contentMD5.byteLength === 16) out.md5 = Buffer.from(contentMD5).toString('hex');
  return out;
}

/** The 16 raw MD5 bytes of a buffer, as Azure's transactional Content-MD5 wants them. */
export function md5Bytes(buf: Uint8Array): Buffer {
  return createHash('md5').update(buf).digest();
}

/**
 * Block ids for one upload. Azure requires every id of a blob to have the same length (≤ 64 bytes
 * before base64); the random upload id keeps two concurrent uploads of one key from staging over
 * each other's blocks.
 */
export function blockId(uploadId: string, index: number): string {
  return Buffer.from(`${uploadId}-${index.toString().padStart(6, '0')}`, 'utf8').toString('base64');
}
