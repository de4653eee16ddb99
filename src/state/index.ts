import { NotSupportedError } from '../core/errors.js';
import type { StateConfig } from '../config/schema.js';
import type { StateStore } from './types.js';

export * from './types.js';
export { SqliteStateStore, type SqliteStateOptions } from './sqlite.js';

/** Opens the state store a config names (SQLite by default, at `.cloudmux/state.db`). */
export async function openStateStore(config: StateConfig | undefined): Promise<StateStore> {
  if (config && 'postgres' in config) {
    throw new NotSupportedError('the PostgreSQL state store is not built yet; use state.sqlite');
  }
  const { SqliteStateStore } = await import('./sqlite.js');
  return new SqliteStateStore({ path: config?.sqlite.path ?? '.cloudmux/state.db', durability: config?.sqlite.durability ?? 'full' });
}
