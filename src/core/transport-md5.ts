import { InvalidConfigError } from './errors.js';

/**
 * Whether request bodies carry an MD5 the server checks on arrival (Azure's per-block
 * Content-MD5, S3 Content-MD5 on multipart parts): `auto` only over plain `http:`, where nothing
 * else protects the bytes in transit (over TLS the record MACs already authenticate every byte),
 * `always` (a TLS-terminating proxy on the way), `never`.
 */
export type TransportMd5 = 'auto' | 'always' | 'never';

/**
 * Resolves a {@link TransportMd5} setting against the endpoint the bytes go to. An unknown
 * endpoint (`undefined`: a caller's own client hides it) keeps the check. Anything else is
 * InvalidConfig naming `field`.
 */
export function md5InTransit(mode: TransportMd5 | undefined, endpoint: string | undefined, field: string, provider: string): boolean {
  if (mode === undefined || mode === 'auto') return endpoint === undefined || /^http:/i.test(endpoint);
  if (mode === 'always') return true;
  if (mode === 'never') return false;
  throw new InvalidConfigError(`${provider}: ${field} must be auto, always or never, got ${JSON.stringify(mode)}`, { provider });
}
