import { InvalidArgumentError } from './errors.js';
import { isSystemMetadata } from './system-metadata.js';

/** Keys cloudmux writes itself start with this; users should not. */
export const RESERVED_PREFIX = 'cloudmux_';
/** The SHA-256 (lowercase hex) of the object's bytes, stored on every put. */
export const SHA256_KEY = 'cloudmux_sha256';
/** Total bytes of metadata names + values, as stored (S3's limit is 2 KB). */
export const MAX_METADATA_BYTES = 2048;
/** Room kept for cloudmux's own keys (cloudmux_sha256 and the encryption header fit in it). */
export const RESERVED_METADATA_BYTES = 640;

const NAME = /^[a-z][a-z0-9_]*$/;
const PRINTABLE = /^[\x20-\x7e]*$/;
const ENCODED = /^=\?utf-8\?b\?([A-Za-z0-9+/=]*)\?=$/;

/**
 * Portable metadata: names `[a-z][a-z0-9_]*` (Azure wants C# identifiers, S3 and GCS lower-case
 * them; hyphens are out), values printable ASCII, names+values ≤ 2048 bytes in total, of which
 * user metadata may take 2048 − 640 so cloudmux's own keys always fit.
 * Names starting `cloudmux_` are cloudmux's own and refused (InvalidArgument) from callers: they
 * record the digest and the encryption header, and a caller's value would stand in for them.
 * cloudmux's layers pass theirs to the store below through an internal channel that callers
 * cannot reach; `cloudmux_sha256` is written only by the store that hashed the bytes.
 * Non-ASCII values: encode them with {@link encodeMetadataValue} (RFC 2047 `=?utf-8?b?…?=`, the
 * form S3 itself uses) and decode with {@link decodeMetadataValue}. To write back metadata read
 * from `head`, drop the reserved names with {@link userMetadata}.
 */
export function validateMetadata(metadata: Record<string, string> | undefined, provider?: string, key?: string): void {
  if (!metadata) return;
  const system = isSystemMetadata(metadata);
  let total = 0;
  let user = 0;
  for (const [name, value] of Object.entries(metadata)) {
    if (!NAME.test(name)) throw new InvalidArgumentError(`metadata name ${JSON.stringify(name)} must match [a-z][a-z0-9_]*`, { provider, key });
    if (name.startsWith(RESERVED_PREFIX) && (!system || name === SHA256_KEY)) {
      throw new InvalidArgumentError(`metadata name ${name} is reserved for cloudmux (names starting ${RESERVED_PREFIX}); drop reserved names with userMetadata()`, { provider, key });
    }
    if (typeof value !== 'string') throw new InvalidArgumentError(`metadata value of ${name} must be a string`, { provider, key });
    if (!PRINTABLE.test(value)) throw new InvalidArgumentError(`metadata value of ${name} must be printable ASCII; encode it with encodeMetadataValue()`, { provider, key });
    const size = name.length + value.length;
    total += size;
    if (!name.startsWith(RESERVED_PREFIX)) user += size;
  }
  if (user > MAX_METADATA_BYTES - RESERVED_METADATA_BYTES || total > MAX_METADATA_BYTES) {
    throw new InvalidArgumentError(`metadata is ${total} bytes; user metadata may take ${MAX_METADATA_BYTES - RESERVED_METADATA_BYTES}, all metadata ${MAX_METADATA_BYTES}`, { provider, key });
  }
}

/** Encodes any string as a portable metadata value (identity for printable ASCII). */
export function encodeMetadataValue(value: string): string {
  if (PRINTABLE.test(value) && !ENCODED.test(value)) return value;
  return `=?utf-8?b?${Buffer.from(value, 'utf8').toString('base64')}?=`;
}

/** Reverses {@link encodeMetadataValue}. */
export function decodeMetadataValue(value: string): string {
  const m = ENCODED.exec(value);
  return m ? Buffer.from(m[1] ?? '', 'base64').toString('utf8') : value;
}

/** User metadata only: drops cloudmux's reserved keys (what a caller may write back). */
export function userMetadata(metadata: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata)) if (!k.startsWith(RESERVED_PREFIX)) out[k] = v;
  return out;
}

/**
 * cloudmux's own names of stored metadata that travel with the bytes (the encryption header), i.e.
 * the reserved names but `cloudmux_sha256`, which the store receiving the bytes writes itself.
 */
export function carriedReservedMetadata(metadata: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata)) if (k.startsWith(RESERVED_PREFIX) && k !== SHA256_KEY) out[k] = v;
  return out;
}
