import { NotSupportedError } from '../../src/core/errors.js';
import type { BlobStore } from '../../src/core/types.js';

/** Placeholder until the gcs provider lands. */
export function fromUrl(url: URL, _options?: Record<string, unknown>): BlobStore {
  throw new NotSupportedError(`the gcs provider is not built yet (${url.protocol})`);
}
