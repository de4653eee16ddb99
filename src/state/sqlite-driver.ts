import { createRequire } from 'node:module';

/**
 * The SQLite binding cloudmux uses for its embedded state (the router's catalog and outbox, the
 * migration journal), chosen per Node version:
 *
 * - Node 20 and 22: better-sqlite3 12 (13 needs Node 22 and crashes on 20).
 * - Node 23 and later: the built-in `node:sqlite`. better-sqlite3 12 aborts the process on Node 24
 *   when a garbage-collected Statement's destructor runs (`Assertion failed: (env) != nullptr` in
 *   RemoveEnvironmentCleanupHook; WiseLibs/better-sqlite3#1515, closed without a fix), and 13 does
 *   not load on Node 20, so no single better-sqlite3 version serves every Node we support.
 *
 * Both expose the same small synchronous surface below: positional parameters, `run/get/all`,
 * `transaction(fn)` with an `immediate()` variant, `pragma`, `exec`, `close`.
 * `CLOUDMUX_SQLITE=better-sqlite3|node` overrides the choice (for tests of both bindings).
 */
export interface SqlRunResult {
  changes: number;
  lastInsertRowid: number | bigint;
}

export interface SqlStatement<P extends unknown[] = unknown[], R = unknown> {
  run(...params: P): SqlRunResult;
  get(...params: P): R | undefined;
  all(...params: P): R[];
}

export interface SqlTransaction<T> {
  (): T;
  /** BEGIN IMMEDIATE: takes the write lock at the start, so concurrent writers queue instead of failing mid-way. */
  immediate(): T;
}

export interface SqlDatabase {
  readonly binding: 'better-sqlite3' | 'node:sqlite';
  /** False once closed. */
  readonly open: boolean;
  prepare<P extends unknown[] = unknown[], R = unknown>(sql: string): SqlStatement<P, R>;
  exec(sql: string): void;
  /** Runs `PRAGMA <text>`; returns the first column of the first row, if any. */
  pragma(text: string): unknown;
  transaction<T>(fn: () => T): SqlTransaction<T>;
  close(): void;
}

const require = createRequire(import.meta.url);

function chooseBinding(): 'better-sqlite3' | 'node:sqlite' {
  const forced = process.env.CLOUDMUX_SQLITE;
  if (forced === 'node' || forced === 'node:sqlite') return 'node:sqlite';
  if (forced === 'better-sqlite3') return 'better-sqlite3';
  const major = Number(process.versions.node.split('.')[0]);
  return major >= 23 ? 'node:sqlite' : 'better-sqlite3';
}

/** Opens (creating if needed) a SQLite database file, or `:memory:`. */
export function openSqlite(path: string): SqlDatabase {
  return chooseBinding() === 'node:sqlite' ? openNodeSqlite(path) : openBetterSqlite(path);
}

// ------------------------------------------------------------------------------------------------

interface BetterDb {
  prepare(sql: string): { run(...p: unknown[]): SqlRunResult; get(...p: unknown[]): unknown; all(...p: unknown[]): unknown[] };
  exec(sql: string): void;
  pragma(text: string, opts?: { simple?: boolean }): unknown;
  transaction<T>(fn: () => T): { (): T; immediate(): T };
  close(): void;
  readonly open: boolean;
}

function openBetterSqlite(path: string): SqlDatabase {
  const Database = require('better-sqlite3') as new (path: string) => BetterDb;
  const db = new Database(path);
  // better-sqlite3 has no statement cache either; preparing per call was 12% of the router's CPU
  // in a sync of 500 files (bench/sync.ts). Statements are only used through run/get/all here.
  const cache = new Map<string, SqlStatement>();
  return {
    binding: 'better-sqlite3',
    get open() {
      return db.open;
    },
    prepare: <P extends unknown[], R>(sql: string) => {
      let s = cache.get(sql);
      if (!s) {
        s = db.prepare(sql) as unknown as SqlStatement;
        cache.set(sql, s);
      }
      return s as unknown as SqlStatement<P, R>;
    },
    exec: (sql) => db.exec(sql),
    pragma: (text) => db.pragma(text, { simple: true }),
    transaction: (fn) => db.transaction(fn),
    close: () => {
      cache.clear();
      db.close();
    },
  };
}

// ------------------------------------------------------------------------------------------------

interface NodeStatement {
  run(...p: unknown[]): SqlRunResult;
  get(...p: unknown[]): unknown;
  all(...p: unknown[]): unknown[];
}
interface NodeDb {
  prepare(sql: string): NodeStatement;
  exec(sql: string): void;
  close(): void;
  readonly isTransaction: boolean;
  readonly isOpen?: boolean;
}

function openNodeSqlite(path: string): SqlDatabase {
  const { DatabaseSync } = require('node:sqlite') as { DatabaseSync: new (path: string) => NodeDb };
  const db = new DatabaseSync(path);
  // node:sqlite has no statement cache; the router prepares the same few statements per call.
  const cache = new Map<string, NodeStatement>();
  const prepare = (sql: string): NodeStatement => {
    let s = cache.get(sql);
    if (!s) {
      s = db.prepare(sql);
      cache.set(sql, s);
    }
    return s;
  };
  let open = true;
  let savepoints = 0;
  const runIn = <T>(fn: () => T, begin: string): T => {
    // Nested transactions become savepoints, as with better-sqlite3.
    if (db.isTransaction) {
      const name = `cmx_sp${++savepoints}`;
      db.exec(`SAVEPOINT ${name}`);
      try {
        const v = fn();
        db.exec(`RELEASE ${name}`);
        return v;
      } catch (e) {
        db.exec(`ROLLBACK TO ${name}`);
        db.exec(`RELEASE ${name}`);
        throw e;
      }
    }
    db.exec(begin);
    try {
      const v = fn();
      db.exec('COMMIT');
      return v;
    } catch (e) {
      if (db.isTransaction) db.exec('ROLLBACK');
      throw e;
    }
  };
  return {
    binding: 'node:sqlite',
    get open() {
      return open;
    },
    prepare: <P extends unknown[], R>(sql: string) => {
      const s = prepare(sql);
      return {
        run: (...p: P) => s.run(...p),
        get: (...p: P) => plain(s.get(...p)) as R | undefined,
        all: (...p: P) => s.all(...p).map(plain) as R[],
      };
    },
    exec: (sql) => db.exec(sql),
    pragma: (text) => {
      const row = db.prepare(`PRAGMA ${text}`).get() as Record<string, unknown> | undefined;
      return row ? Object.values(row)[0] : undefined;
    },
    transaction: <T>(fn: () => T) => {
      const tx = (() => runIn(fn, 'BEGIN')) as SqlTransaction<T>;
      tx.immediate = () => runIn(fn, 'BEGIN IMMEDIATE');
      return tx;
    },
    close: () => {
      cache.clear();
      open = false;
      db.close();
    },
  };
}

/** node:sqlite rows have a null prototype; give callers ordinary objects. */
function plain(row: unknown): unknown {
  return row === undefined || row === null ? undefined : { ...(row as object) };
}
