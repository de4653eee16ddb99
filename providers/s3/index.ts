import { NotSupportedError } from '../../src/core/errors.js';
import type { BlobStore } from '../../src/core/types.js';

/** Placeholder until the s3 provider lands. */
export function fromUrl(url: URL, _options?: Record<string, unknown>): BlobStore {
  throw new NotSupportedError(`the s3 provider is not built yet (${url.protocol})`);
}
