// The migration journal's SQLite tables, the version rule it opens them under, and the batched
// INSERT its group commits use.
import type { SqlDatabase, SqlStatement } from '../state/sqlite-driver.js';
import { InvalidConfigError } from '../core/index.js';

export const JOURNAL_SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
  key TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  size INTEGER, src_etag TEXT, dst_etag TEXT, sha256 TEXT, verified_by TEXT, reason TEXT,
  copies INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL,
  checksum_mode TEXT
);
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  run INTEGER NOT NULL, key TEXT NOT NULL, src_etag TEXT, event TEXT NOT NULL, detail TEXT, at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_key ON events(key, seq);
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT, started_at INTEGER NOT NULL, finished_at INTEGER, status TEXT, summary TEXT
);
CREATE TABLE IF NOT EXISTS uploads (
  key TEXT PRIMARY KEY, handle TEXT NOT NULL, src_etag TEXT NOT NULL, size INTEGER NOT NULL, part_size INTEGER NOT NULL,
  state TEXT NOT NULL, run INTEGER NOT NULL, started_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS upload_parts (
  key TEXT NOT NULL, part_number INTEGER NOT NULL, size INTEGER NOT NULL, crc32c TEXT NOT NULL, etag TEXT, sha256 TEXT,
  run INTEGER NOT NULL, uploads INTEGER NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (key, part_number)
);
`;

/** The journal format this code writes (`meta.version`; journals from before it have none: 1). */
export const JOURNAL_VERSION = 1;

/** A journal a newer cloudmux wrote is refused before anything is touched (the rule of the state schemas). */
export function refuseNewerJournal(db: SqlDatabase, path: string): void {
  const hasMeta = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").get() !== undefined;
  const found = hasMeta ? (db.prepare("SELECT value FROM meta WHERE name = 'version'").get() as { value: string } | undefined)?.value : undefined;
  if (found !== undefined && !(Number(found) <= JOURNAL_VERSION)) {
    db.close();
    throw new InvalidConfigError(`--journal ${path} is journal version ${found}, newer than this cloudmux understands (${JOURNAL_VERSION})`);
  }
}

/**
 * An INSERT of many rows at once: a batch is written in chunks of 64, 32, 16, … 1 rows (in the order
 * given, so events keep their sequence), each chunk size prepared once.
 */
export class RowsStatement {
  private readonly bySize = new Map<number, SqlStatement>();

  constructor(private readonly db: SqlDatabase, private readonly sql: (values: string) => string, private readonly columns: number) {}

  /** Writes the rows whose parameters `flat` holds, `columns` per row. */
  write(flat: unknown[]): void {
    let rows = flat.length / this.columns;
    let at = 0;
    for (let size = 64; rows > 0; size >>= 1) {
      while (rows >= size) {
        const end = at + size * this.columns;
        this.statement(size).run(...(at === 0 && end === flat.length ? flat : flat.slice(at, end)));
        at = end;
        rows -= size;
      }
    }
  }

  private statement(rows: number): SqlStatement {
    let s = this.bySize.get(rows);
    if (!s) {
      const row = `(${Array<string>(this.columns).fill('?').join(', ')})`;
      s = this.db.prepare(this.sql(Array<string>(rows).fill(row).join(', ')));
      this.bySize.set(rows, s);
    }
    return s;
  }
}
