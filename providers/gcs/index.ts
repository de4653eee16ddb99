import { GcsStore } from './store.js';
import { optionsFromUrl, type GcsStoreOptions } from './config.js';

export { GcsStore };
export { GCS_LIMITS, optionsFromUrl, type GcsStoreOptions, type GcsSigningCredentials } from './config.js';
export { mapGcsError } from './errors.js';

/**
 * `gs://bucket/optional/prefix?apiEndpoint=..&projectId=..`. `options` (typed GcsStoreOptions
 * fields) win over URL parameters. Credentials come from `options.credentials` / `keyFilename` or
 * the SDK's chain (ADC, GOOGLE_APPLICATION_CREDENTIALS), never from the URL.
 */
export function fromUrl(url: URL, options?: Record<string, unknown>): GcsStore {
  return new GcsStore(optionsFromUrl(url, options as Partial<GcsStoreOptions> | undefined));
}
