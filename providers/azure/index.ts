import { resolveAzureConfig, type AzureStoreOptions } from './config.js';
import { AzureStore } from './store.js';

export { AzureStore };
export { resolveAzureConfig, parseConnectionString, type AzureStoreOptions, type AzureTokenCredential, type ResolvedAzureConfig } from './config.js';
export { mapAzureError } from './errors.js';

/**
 * `az://account/container/prefix?endpoint=http://127.0.0.1:10000/devstoreaccount1`. Credentials
 * come from `options` (connectionString, accountKey, sasToken, credential), else the environment
 * (AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN), else
 * DefaultAzureCredential, loaded only when first needed.
 */
export function fromUrl(url: URL, options?: Record<string, unknown>): AzureStore {
  return new AzureStore(resolveAzureConfig(url, (options ?? {}) as AzureStoreOptions));
}

/** An Azure store from typed options alone (no URL). */
export function createAzureStore(options: AzureStoreOptions): AzureStore {
  return new AzureStore(resolveAzureConfig(undefined, options));
}
