import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { openSqlite } from '../../src/state/sqlite-driver.js';

const require = createRequire(import.meta.url);
const hasNodeSqlite = ((): boolean => {
  try {
    require('node:sqlite');
    return true;
  } catch {
    return false;
  }
})();
const major = Number(process.versions.node.split('.')[0]);

/** The same behaviour from whichever binding this Node gets, and from node:sqlite where it exists. */
const bindings: [string, string | undefined][] = [['default', undefined]];
if (hasNodeSqlite) bindings.push(['node:sqlite', 'node']);
if (major < 23) bindings.push(['better-sqlite3', 'better-sqlite3']);

describe.each(bindings)('sqlite binding: %s', (_name, forced) => {
  const open = (): ReturnType<typeof openSqlite> => {
    const prev = process.env.CLOUDMUX_SQLITE;
    if (forced) process.env.CLOUDMUX_SQLITE = forced;
    else delete process.env.CLOUDMUX_SQLITE;
    try {
      return openSqlite(':memory:');
    } finally {
      if (prev === undefined) delete process.env.CLOUDMUX_SQLITE;
      else process.env.CLOUDMUX_SQLITE = prev;
    }
  };

  it('picks node:sqlite from Node 23 on (better-sqlite3 12 aborts on 24), better-sqlite3 before', () => {
    const db = open();
    if (!forced) expect(db.binding).toBe(major >= 23 ? 'node:sqlite' : 'better-sqlite3');
    db.close();
    expect(db.open).toBe(false);
  });

  it('runs, gets and lists rows with positional and named parameters', () => {
    const db = open();
    db.exec('CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)');
    const ins = db.prepare<[string, number]>('INSERT INTO t VALUES (?, ?)');
    expect(ins.run('a', 1)).toMatchObject({ changes: 1 });
    ins.run('b', 2);
    db.prepare<[{ k: string; v: number }]>('INSERT INTO t VALUES (@k, @v)').run({ k: 'c', v: 3 });
    expect(db.prepare<[string], { v: number }>('SELECT v FROM t WHERE k = ?').get('b')).toEqual({ v: 2 });
    expect(db.prepare<[string], { v: number }>('SELECT v FROM t WHERE k = ?').get('zz')).toBeUndefined();
    expect(db.prepare<[], { k: string }>('SELECT k FROM t ORDER BY k').all().map((r) => r.k)).toEqual(['a', 'b', 'c']);
    expect(db.pragma('journal_mode')).toBe('memory');
    db.close();
  });

  it('transactions commit, roll back on a throw, and nest as savepoints', () => {
    const db = open();
    db.exec('CREATE TABLE t (n INTEGER)');
    const add = db.prepare<[number]>('INSERT INTO t VALUES (?)');
    const count = (): number => (db.prepare<[], { c: number }>('SELECT count(*) AS c FROM t').get()!).c;
    db.transaction(() => add.run(1)).immediate();
    expect(count()).toBe(1);
    expect(() => db.transaction(() => {
      add.run(2);
      throw new Error('boom');
    })()).toThrow('boom');
    expect(count()).toBe(1);
    db.transaction(() => {
      add.run(3);
      expect(() => db.transaction(() => {
        add.run(4);
        throw new Error('inner');
      })()).toThrow('inner');
    }).immediate();
    expect(db.prepare<[], { n: number }>('SELECT n FROM t ORDER BY n').all().map((r) => r.n)).toEqual([1, 3]);
    db.close();
  });
});
