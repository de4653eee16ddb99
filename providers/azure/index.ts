import { NotSupportedError } from '../../src/core/errors.js';
import type { BlobStore } from '../../src/core/types.js';

/** Placeholder until the azure provider lands. */
export function fromUrl(url: URL, _options?: Record<string, unknown>): BlobStore {
  throw new NotSupportedError(`the azure provider is not built yet (${url.protocol})`);
}
