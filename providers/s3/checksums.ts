import { createHash } from 'node:crypto';
import { SHA256_KEY, base64ToHex } from '../../src/core/index.js';
import type { Checksums } from '../../src/core/index.js';

/**
 * What to send with one request body so the server rejects corrupted bytes: S3's flexible
 * SHA-256 where the endpoint supports it, else Content-MD5, which every S3-compatible checks
 * (unless `md5` is false: a multipart part over TLS, see `partMd5`).
 */
export function bodyChecksumHeaders(body: Uint8Array, flexible: boolean, md5 = true): { ChecksumSHA256?: string; ContentMD5?: string } {
  if (flexible) return { ChecksumSHA256: createHash('sha256').update(body).digest('base64') };
  return md5 ? { ContentMD5: createHash('md5').update(body).digest('base64') } : {};
}

interface NativeChecksumFields {
  ChecksumSHA256?: string;
  ChecksumCRC32C?: string;
  ChecksumType?: string;
  ETag?: string;
  ServerSideEncryption?: string;
  SSECustomerAlgorithm?: string;
}

/**
 * When an ETag may be read as the object's MD5: `never`; `plain` (custom endpoints: only objects
 * stored without any server-side encryption, since compatibles that encrypt make ETags of their
 * own); `aws` (AWS itself, where SSE-S3 keeps the MD5 ETag and SSE-KMS/SSE-C do not).
 */
export type EtagMd5Policy = 'never' | 'plain' | 'aws';

/** The MD5 an ETag stands for under the policy, or undefined. Never for a multipart (`…-N`) ETag. */
export function md5FromEtag(r: NativeChecksumFields, policy: EtagMd5Policy): string | undefined {
  if (policy === 'never' || r.ETag === undefined || r.SSECustomerAlgorithm !== undefined) return undefined;
  const etag = unquoteEtag(r.ETag);
  if (!/^[0-9a-f]{32}$/i.test(etag)) return undefined;
  const sse = r.ServerSideEncryption;
  if (sse !== undefined && !(policy === 'aws' && sse === 'AES256')) return undefined;
  return etag.toLowerCase();
}

/**
 * Digests known from a head/get answer: `sha256` from cloudmux's metadata, and S3's own
 * full-object checksums. Composite (per-part) checksums (`…-N`, ChecksumType COMPOSITE) are
 * checksums of checksums and say nothing comparable about the bytes, so they are dropped. The
 * ETag is the MD5 only where {@link md5FromEtag} says so under `etagPolicy` (never for multipart,
 * SSE-KMS or SSE-C objects).
 */
export function checksumsFromResponse(metadata: Record<string, string>, r: NativeChecksumFields, etagPolicy: EtagMd5Policy = 'never'): Checksums {
  const out: Checksums = {};
  const md5 = md5FromEtag(r, etagPolicy);
  if (md5 !== undefined) out.md5 = md5;
  const sha = metadata[SHA256_KEY];
  if (sha && /^[0-9a-f]{64}$/.test(sha)) out.sha256 = sha;
  const fullObject = r.ChecksumType === undefined || r.ChecksumType === 'FULL_OBJECT';
  if (fullObject) {
    if (!out.sha256 && r.ChecksumSHA256 && !r.ChecksumSHA256.includes('-')) out.sha256 = base64ToHex(r.ChecksumSHA256);
    if (r.ChecksumCRC32C && !r.ChecksumCRC32C.includes('-')) out.crc32c = base64ToHex(r.ChecksumCRC32C);
  }
  return out;
}

/** ETags arrive quoted; cloudmux's etags are opaque and unquoted. */
export function unquoteEtag(etag: string | undefined): string {
  return (etag ?? '').replace(/^W\//, '').replace(/^"|"$/g, '');
}

/** ETags go back to S3 quoted, as it sent them. */
export function quoteEtag(etag: string): string {
  return etag === '*' || etag.startsWith('"') ? etag : `"${etag}"`;
}
