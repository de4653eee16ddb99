/**
 * cloudmux: one blob interface over S3, GCS and Azure Blob.
 *
 * Provider classes live in subpath exports (`cloudmux/s3`, `cloudmux/gcs`, `cloudmux/azure`,
 * `cloudmux/fs`, `cloudmux/memory`) so that importing this module never loads a cloud SDK;
 * `openStore(url)` loads the one a URL needs.
 */
export * from './core/index.js';
export { openStore, openStore as createStore, parseStoreUrl, splitObjectUrl, registerScheme, redactUrl, type StoreFactory } from './registry.js';
export { MemoryStore } from '../providers/memory/index.js';
