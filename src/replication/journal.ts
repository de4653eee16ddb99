import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { openSqlite, type SqlDatabase } from '../state/sqlite-driver.js';
import { InvalidConfigError } from '../core/index.js';

/**
 * Where one object stands in a migration: `copying` from the moment a copy starts writing (a run
 * killed then leaves it so, and the next run compares before copying again); terminal: verified,
 * failed (with a reason), source-deleted.
 */
export type JournalState = 'copying' | 'verified' | 'failed' | 'source-deleted';

export interface JournalEntry {
  key: string;
  state: JournalState;
  size: number | null;
  srcEtag: string | null;
  dstEtag: string | null;
  sha256: string | null;
  verifiedBy: string | null;
  reason: string | null;
  /** Copies started for this key over all runs. */
  copies: number;
}

/** One row of the audit trail: what happened to which key (and source version) in which run. */
export interface JournalEvent {
  seq: number;
  run: number;
  key: string;
  srcEtag: string | null;
  event: 'copy-start' | 'verified' | 'identical' | 'failed' | 'source-deleted' | 'upload-start' | 'upload-resume' | 'upload-complete' | 'upload-abort';
  detail: string | null;
}

/** A resumable upload of one object, as the journal recorded it (see resumable-copy.ts). */
export interface JournalUpload {
  key: string;
  /** The destination's serialised upload handle. */
  handle: string;
  /** The source version the parts were read from; another version means starting over. */
  srcEtag: string;
  size: number;
  partSize: number;
  state: 'open' | 'completed' | 'aborted';
  /** The run that started it. */
  run: number;
  parts: JournalPart[];
}

/** One part the journal saw the destination accept. */
export interface JournalPart {
  partNumber: number;
  size: number;
  /** CRC32C of the part's bytes (hex), as read from the source. */
  crc32c: string;
  /** The provider's tag of the part, when it has one (S3 part ETag). */
  etag: string | null;
  /** The provider's SHA-256 of the part, when it reports one. */
  sha256: string | null;
  /** The run that last uploaded it, and how many times it was uploaded over all runs. */
  run: number;
  uploads: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
  key TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  size INTEGER, src_etag TEXT, dst_etag TEXT, sha256 TEXT, verified_by TEXT, reason TEXT,
  copies INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL
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

/**
 * The durable record of a migration (SQLite, WAL): each object's state with its source version,
 * destination etag and digest, an audit trail of copies, and the listing cursor (every source key
 * at or before it is settled). Writes are small autocommits with `synchronous=NORMAL`: they survive
 * the process being killed (kill -9), which is what resume needs; a power cut may lose the last few.
 *
 * A journal belongs to one (source, destination) pair; opening it for another pair is InvalidConfig.
 * The cursor is kept only while the options that decide what is listed (the filter fingerprint)
 * are unchanged.
 */
export class MigrationJournal {
  readonly runId: number;
  private readonly db: SqlDatabase;
  private readonly stmts;

  private constructor(readonly path: string, db: SqlDatabase, pair: string, filter: string) {
    this.db = db;
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 5000');
    db.exec(SCHEMA);
    const get = db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE name = ?');
    const set = db.prepare<[string, string]>('INSERT INTO meta(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value');
    const existingPair = get.get('pair')?.value;
    if (existingPair !== undefined && existingPair !== pair) {
      db.close();
      throw new InvalidConfigError(`--journal ${path} belongs to another migration (${existingPair}); use another journal file`);
    }
    set.run('pair', pair);
    if (get.get('filter')?.value !== filter) {
      // What is listed changed: keys before the old cursor may now be in scope.
      db.prepare('DELETE FROM meta WHERE name = ?').run('cursor');
      set.run('filter', filter);
    }
    this.runId = Number(db.prepare('INSERT INTO runs(started_at, status) VALUES (?, ?)').run(Date.now(), 'running').lastInsertRowid);
    const now = (): number => Date.now();
    this.stmts = {
      getMeta: get,
      setMeta: set,
      delMeta: db.prepare<[string]>('DELETE FROM meta WHERE name = ?'),
      lookup: db.prepare<[string], Record<string, unknown>>('SELECT * FROM objects WHERE key = ?'),
      upsert: db.prepare(`INSERT INTO objects(key, state, size, src_etag, dst_etag, sha256, verified_by, reason, copies, updated_at)
        VALUES (@key, @state, @size, @src_etag, @dst_etag, @sha256, @verified_by, @reason, @copies, @at)
        ON CONFLICT(key) DO UPDATE SET state = excluded.state, size = coalesce(excluded.size, size),
          src_etag = coalesce(excluded.src_etag, src_etag), dst_etag = excluded.dst_etag, sha256 = excluded.sha256,
          verified_by = excluded.verified_by, reason = excluded.reason, copies = copies + excluded.copies, updated_at = excluded.updated_at`),
      event: db.prepare('INSERT INTO events(run, key, src_etag, event, detail, at) VALUES (?, ?, ?, ?, ?, ?)'),
      now,
    };
  }

  /**
   * Opens (creating if needed) the journal at `path` for the pair `src → dst` (store URLs, shown
   * in errors, so pass redacted ones). `filter` fingerprints the options that decide which keys are listed.
   */
  static open(path: string, pair: { src: string; dst: string }, filter = ''): MigrationJournal {
    mkdirSync(dirname(path), { recursive: true });
    let db: SqlDatabase;
    try {
      db = openSqlite(path);
    } catch (e) {
      throw new InvalidConfigError(`--journal ${path}: cannot open (${(e as Error).message})`, { cause: e });
    }
    return new MigrationJournal(path, db, `${pair.src} -> ${pair.dst}`, filter);
  }

  /** The default journal file for a pair: under `$XDG_STATE_HOME/cloudmux` (or `~/.local/state/cloudmux`). */
  static defaultPath(src: string, dst: string, env: NodeJS.ProcessEnv = process.env): string {
    const base = env.XDG_STATE_HOME || (process.platform === 'win32' && env.LOCALAPPDATA) || join(homedir(), '.local', 'state');
    const id = createHash('sha256').update(`${src}\n${dst}`).digest('hex').slice(0, 16);
    return join(base, 'cloudmux', `migrate-${id}.sqlite`);
  }

  /** Every source key at or before this is settled (or undefined: start from the beginning). */
  cursor(): string | undefined {
    return this.stmts.getMeta.get('cursor')?.value;
  }

  setCursor(key: string): void {
    this.stmts.setMeta.run('cursor', key);
  }

  /** A full pass finished: the next run lists from the start again. */
  passComplete(): void {
    this.stmts.delMeta.run('cursor');
  }

  lookup(key: string): JournalEntry | undefined {
    const r = this.stmts.lookup.get(key);
    if (!r) return undefined;
    return {
      key: r.key as string,
      state: r.state as JournalState,
      size: r.size as number | null,
      srcEtag: r.src_etag as string | null,
      dstEtag: r.dst_etag as string | null,
      sha256: r.sha256 as string | null,
      verifiedBy: r.verified_by as string | null,
      reason: r.reason as string | null,
      copies: r.copies as number,
    };
  }

  /** A copy of `key` (source version `srcEtag`) is about to write to the destination. */
  copying(key: string, size: number, srcEtag: string): void {
    this.tx(() => {
      this.upsert({ key, state: 'copying', size, src_etag: srcEtag, copies: 1 });
      this.stmts.event.run(this.runId, key, srcEtag, 'copy-start', null, this.stmts.now());
    });
  }

  /** The destination holds the source's bytes, proven by `verifiedBy`; `copied` says whether this run wrote them. */
  verified(key: string, v: { size: number; srcEtag: string; dstEtag: string; sha256?: string; verifiedBy: string; copied: boolean }): void {
    this.tx(() => {
      this.upsert({ key, state: 'verified', size: v.size, src_etag: v.srcEtag, dst_etag: v.dstEtag, sha256: v.sha256 ?? null, verified_by: v.verifiedBy });
      this.stmts.event.run(this.runId, key, v.srcEtag, v.copied ? 'verified' : 'identical', v.verifiedBy, this.stmts.now());
    });
  }

  failed(key: string, srcEtag: string | undefined, reason: string): void {
    this.tx(() => {
      this.upsert({ key, state: 'failed', src_etag: srcEtag ?? null, reason });
      this.stmts.event.run(this.runId, key, srcEtag ?? null, 'failed', reason, this.stmts.now());
    });
  }

  /** The source object was removed after its copy verified (--delete-source). */
  sourceDeleted(key: string, srcEtag: string): void {
    this.tx(() => {
      this.db.prepare("UPDATE objects SET state = 'source-deleted', updated_at = ? WHERE key = ?").run(this.stmts.now(), key);
      this.stmts.event.run(this.runId, key, srcEtag, 'source-deleted', null, this.stmts.now());
    });
  }

  /** The upload recorded for `key` (any state) with its parts in order, or undefined. */
  upload(key: string): JournalUpload | undefined {
    const u = this.db.prepare<[string], Record<string, unknown>>('SELECT * FROM uploads WHERE key = ?').get(key);
    if (!u) return undefined;
    const parts = this.db.prepare<[string], Record<string, unknown>>('SELECT * FROM upload_parts WHERE key = ? ORDER BY part_number').all(key);
    return {
      key, handle: u.handle as string, srcEtag: u.src_etag as string, size: u.size as number, partSize: u.part_size as number,
      state: u.state as JournalUpload['state'], run: u.run as number,
      parts: parts.map((p) => ({
        partNumber: p.part_number as number, size: p.size as number, crc32c: p.crc32c as string, etag: p.etag as string | null,
        sha256: p.sha256 as string | null, run: p.run as number, uploads: p.uploads as number,
      })),
    };
  }

  /**
   * A resumable upload of `key` started: recorded before its first part is sent, so a run killed
   * at any later point finds it. Replaces an earlier upload of the key and its parts.
   */
  uploadStarted(key: string, u: { handle: string; srcEtag: string; size: number; partSize: number }): void {
    this.tx(() => {
      this.db.prepare('DELETE FROM upload_parts WHERE key = ?').run(key);
      this.db.prepare(`INSERT INTO uploads(key, handle, src_etag, size, part_size, state, run, started_at) VALUES (?, ?, ?, ?, ?, 'open', ?, ?)
        ON CONFLICT(key) DO UPDATE SET handle = excluded.handle, src_etag = excluded.src_etag, size = excluded.size, part_size = excluded.part_size,
          state = 'open', run = excluded.run, started_at = excluded.started_at`).run(key, u.handle, u.srcEtag, u.size, u.partSize, this.runId, this.stmts.now());
      this.stmts.event.run(this.runId, key, u.srcEtag, 'upload-start', `${u.size} bytes in parts of ${u.partSize}`, this.stmts.now());
    });
  }

  /** The destination accepted a part (recorded after its upload returned). */
  partUploaded(key: string, p: { partNumber: number; size: number; crc32c: string; etag?: string; sha256?: string }): void {
    this.db.prepare(`INSERT INTO upload_parts(key, part_number, size, crc32c, etag, sha256, run, uploads, at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)
      ON CONFLICT(key, part_number) DO UPDATE SET size = excluded.size, crc32c = excluded.crc32c, etag = excluded.etag, sha256 = excluded.sha256,
        run = excluded.run, uploads = uploads + 1, at = excluded.at`).run(key, p.partNumber, p.size, p.crc32c, p.etag ?? null, p.sha256 ?? null, this.runId, this.stmts.now());
  }

  /** A run picked up an open upload, keeping `kept` of its `total` parts. */
  uploadResumed(key: string, srcEtag: string, kept: number, total: number): void {
    this.stmts.event.run(this.runId, key, srcEtag, 'upload-resume', `kept ${kept} of ${total} parts`, this.stmts.now());
  }

  /** The upload was completed (the object is written) or given up (aborted at the destination, or found gone). */
  uploadClosed(key: string, srcEtag: string, state: 'completed' | 'aborted', detail?: string): void {
    this.tx(() => {
      this.db.prepare('UPDATE uploads SET state = ? WHERE key = ?').run(state, key);
      this.stmts.event.run(this.runId, key, srcEtag, state === 'completed' ? 'upload-complete' : 'upload-abort', detail ?? null, this.stmts.now());
    });
  }

  /** Objects per state. */
  counts(): Partial<Record<JournalState, number>> {
    const rows = this.db.prepare<[], { state: JournalState; n: number }>('SELECT state, count(*) AS n FROM objects GROUP BY state').all();
    return Object.fromEntries(rows.map((r) => [r.state, r.n]));
  }

  /** Failed objects with their reasons (first `limit`). */
  failures(limit = 100): { key: string; reason: string }[] {
    return this.db.prepare<[number], { key: string; reason: string }>("SELECT key, reason FROM objects WHERE state = 'failed' ORDER BY key LIMIT ?").all(limit);
  }

  /** The audit trail, oldest first (optionally of one key). */
  events(key?: string): JournalEvent[] {
    const rows = key === undefined
      ? this.db.prepare<[], Record<string, unknown>>('SELECT * FROM events ORDER BY seq').all()
      : this.db.prepare<[string], Record<string, unknown>>('SELECT * FROM events WHERE key = ? ORDER BY seq').all(key);
    return rows.map((r) => ({ seq: r.seq as number, run: r.run as number, key: r.key as string, srcEtag: r.src_etag as string | null, event: r.event as JournalEvent['event'], detail: r.detail as string | null }));
  }

  /** Records how this run ended. */
  finishRun(status: 'complete' | 'incomplete' | 'aborted', summary: unknown): void {
    this.db.prepare('UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE id = ?').run(Date.now(), status, JSON.stringify(summary), this.runId);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private upsert(row: { key: string; state: JournalState; size?: number | null; src_etag?: string | null; dst_etag?: string | null; sha256?: string | null; verified_by?: string | null; reason?: string | null; copies?: number }): void {
    this.stmts.upsert.run({
      size: null, src_etag: null, dst_etag: null, sha256: null, verified_by: null, reason: null, copies: 0, ...row, at: this.stmts.now(),
    });
  }

  private tx(fn: () => void): void {
    this.db.transaction(fn)();
  }
}
