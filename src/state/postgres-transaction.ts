import type { Pool, PoolClient } from 'pg';
import { isRetryableTransaction, mapPgError } from './postgres-errors.js';

export interface TransactionOptions {
  /** What opens the transaction (default `BEGIN`); may carry a lock in the same round trip. */
  begin?: string;
  /** Runs in all when a deadlock or serialization failure rolls the transaction back (default 1: never again). */
  attempts?: number;
  /** The key errors name. */
  key?: string;
}

/**
 * Runs `fn` in one transaction on one connection from `pool`: committed when `fn` returns, rolled
 * back when it throws. A connection whose ROLLBACK fails is destroyed rather than handed to the
 * next caller. Errors are mapped by mapPgError, naming `op` (cloudmux errors pass as they are).
 */
export async function inTransaction<T>(pool: Pool, op: string, fn: (c: PoolClient) => Promise<T>, opts: TransactionOptions = {}): Promise<T> {
  const attempts = opts.attempts ?? 1;
  for (let attempt = 1; ; attempt++) {
    let client: PoolClient;
    try {
      client = await pool.connect();
    } catch (e) {
      throw mapPgError(e, op, opts.key);
    }
    let broken: Error | undefined;
    try {
      await client.query(opts.begin ?? 'BEGIN');
      const out = await fn(client);
      await client.query('COMMIT');
      return out;
    } catch (e) {
      try {
        await client.query('ROLLBACK');
      } catch (rollbackError) {
        broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
      }
      if (attempt < attempts && isRetryableTransaction(e)) continue;
      throw mapPgError(e, op, opts.key);
    } finally {
      client.release(broken);
    }
  }
}
