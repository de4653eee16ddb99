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
export * from './layers/index.js';
export * from './layers/encryption/index.js';
export * from './layers/chunked/index.js';
export * from './router/index.js';
export * from './state/index.js';
export * from './config/index.js';
export * from './replication/index.js';
export { ReplicationWorker, type ReplicationWorkerOptions } from './replication/worker.js';
// The daemon (pino, prom-client, node:http) is `cloudmux/daemon`: importing this module never loads it.
export type { DaemonOptions } from './daemon/daemon.js';
export * from './sync/index.js';
