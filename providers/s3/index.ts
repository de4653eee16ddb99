import { S3Store } from './store.js';
import { optionsFromUrl, type S3StoreOptions } from './config.js';

export { S3Store };
export { S3_LIMITS, isAwsEndpoint, optionsFromUrl, type S3StoreOptions } from './config.js';
export { mapS3Error } from './errors.js';

/**
 * `s3://bucket/optional/prefix?region=..&endpoint=..&forcePathStyle=true&conditionalPut=..`.
 * `options` (typed S3StoreOptions fields) win over URL parameters. Credentials come from
 * `options.credentials` or the SDK's provider chain, never from the URL.
 */
export function fromUrl(url: URL, options?: Record<string, unknown>): S3Store {
  return new S3Store(optionsFromUrl(url, options as Partial<S3StoreOptions> | undefined));
}
