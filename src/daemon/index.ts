/**
 * The failover daemon (`cloudmux daemon`), usable as a library: `Daemon.start({ configFile })`.
 * `openRouter(config)` (src/router) gives applications a Router over the same config.
 */
export { Daemon, type DaemonOptions, type DaemonEvents, type Readiness, type ReplicationTotals } from './daemon.js';
export { DaemonMetrics, type MetricsSource } from './metrics.js';
export { DaemonHttpServer, type HttpHandlers } from './http.js';
export { createDaemonLogger, serializeError } from './logger.js';
export { openRouter, openProviderStacks, resilienceOptions, DEFAULT_ATTEMPT_TIMEOUT_MS, type OpenRouterOptions, type ProviderStack } from '../router/open-router.js';
/** The config loader, so `cloudmux/daemon` alone can read the file an app and the daemon share. */
export { loadConfig, parseConfig, type ParseConfigOptions } from '../config/load.js';
export type { CloudmuxConfig, DaemonConfig, ResilienceConfig, ScanConfig } from '../config/schema.js';
