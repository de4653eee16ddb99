import type { StateConfig } from '../config/schema.js';
import type { StateStore } from './types.js';

export * from './types.js';
export type { AccessStat, CachedCopy, CachedCopyState } from './cached-copies.js';
export { emptyByClass } from './backlog.js';
export type { StoredBytes } from './stored-bytes.js';
export { SqliteStateStore, type SqliteStateOptions } from './sqlite.js';
export { PostgresStateStore, type PostgresStateOptions } from './postgres.js';

/**
 * Opens the state store a config names: PostgreSQL when `state.postgres` is set (shared by
 * several routers), else SQLite (default `.cloudmux/state.db`).
 */
export async function openStateStore(config: StateConfig | undefined): Promise<StateStore> {
  if (config && 'postgres' in config) {
    const { PostgresStateStore } = await import('./postgres.js');
    const pg = config.postgres;
    return PostgresStateStore.open({
      url: pg.url, schema: pg.schema,
      ...(pg.maxConnections !== undefined ? { maxConnections: pg.maxConnections } : {}),
      ...(pg.connectTimeoutMs !== undefined ? { connectTimeoutMs: pg.connectTimeoutMs } : {}),
    });
  }
  const { SqliteStateStore } = await import('./sqlite.js');
  return new SqliteStateStore({ path: config?.sqlite.path ?? '.cloudmux/state.db', durability: config?.sqlite.durability ?? 'full' });
}
