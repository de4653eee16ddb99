import { base64ToHex, hexToBase64 } from '../../src/core/checksums.js';
import { SHA256_KEY } from '../../src/core/metadata.js';
import type { Checksums } from '../../src/core/types.js';

/**
 * GCS reports crc32c (big-endian, base64) on every object and md5Hash (base64) on all but
 * composite ones; cloudmux keeps hex. CRC32C is the digest to rely on: it always exists.
 */

/** The object resource fields this provider reads. */
export interface GcsObjectResource {
  name?: string;
  generation?: string | number;
  metageneration?: string | number;
  size?: string | number;
  contentType?: string;
  updated?: string;
  timeCreated?: string;
  crc32c?: string;
  md5Hash?: string;
  metadata?: Record<string, string | number | boolean | null>;
  componentCount?: number;
}

/** Digests known from a resource: native ones plus `cloudmux_sha256` from its metadata. */
export function checksumsOf(r: GcsObjectResource): Checksums {
  const out: Checksums = {};
  const sha = r.metadata?.[SHA256_KEY];
  if (typeof sha === 'string' && sha !== '') out.sha256 = sha;
  if (r.crc32c) out.crc32c = base64ToHex(r.crc32c);
  if (r.md5Hash) out.md5 = base64ToHex(r.md5Hash);
  return out;
}

/** Resource fields that make GCS verify an upload against digests computed before sending. */
export function resourceDigests(c: Checksums): { crc32c?: string; md5Hash?: string } {
  return { ...(c.crc32c ? { crc32c: hexToBase64(c.crc32c) } : {}), ...(c.md5 ? { md5Hash: hexToBase64(c.md5) } : {}) };
}

/** `X-Goog-Hash` for the final request of a resumable upload: GCS checks the whole object against it. */
export function googHashHeader(c: Checksums): string {
  const parts: string[] = [];
  if (c.crc32c) parts.push(`crc32c=${hexToBase64(c.crc32c)}`);
  if (c.md5) parts.push(`md5=${hexToBase64(c.md5)}`);
  return parts.join(',');
}
