import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { openSqlite, type SqlDatabase } from '../state/sqlite-driver.js';
import { InvalidConfigError } from '../core/index.js';
import { JOURNAL_SCHEMA, JOURNAL_VERSION, RowsStatement, refuseNewerJournal } from './journal-schema.js';
import type { JournalEntry, JournalEvent, JournalState, JournalUpload, UploadJournal } from './journal-types.js';

export type { JournalEntry, JournalEvent, JournalPart, JournalState, JournalUpload, UploadJournal } from './journal-types.js';
export { JOURNAL_VERSION };

/** How the journal groups its writes; see {@link MigrationJournal}. */
export interface JournalOptions {
  /**
   * Longest a per-object record waits in memory before it is committed. Default 100 ms: a commit
   * costs far more than the rows in it, and what a kill -9 loses this way costs a rerun one
   * comparison per object (never a copy), while a clean stop (finishRun, close) loses nothing.
   */
  flushMs?: number;
  /** Records buffered before they are committed at once, whatever their age. Default 512. */
  maxBatch?: number;
}

type ObjectRow = {
  key: string; state: JournalState; size: number | null; src_etag: string | null; dst_etag: string | null; sha256: string | null;
  verified_by: string | null; reason: string | null; copies: number; at: number; checksum_mode: string | null;
};

/** A buffered write to `objects`: an upsert (several merged into one), or the source-deleted mark of a row already there. */
type RowWrite = { upsert: ObjectRow } | { deletedAt: number };

/**
 * The durable record of a migration (SQLite, WAL): each object's state with its source version,
 * destination etag and digest, an audit trail of copies, and the listing cursor (every source key
 * at or before it is settled).
 *
 * # Durability
 * Commits use `synchronous=NORMAL`: a committed record survives the process being killed (kill -9),
 * which is what resume needs; a power cut may lose the last few.
 *
 * Per-object records (`copying`, `verified`, `failed`, `sourceDeleted`) and the cursor are group
 * committed: buffered in call order and committed together in one transaction within `flushMs`,
 * once `maxBatch` are waiting, before any other write, before any read that could see them, and on
 * {@link durable}, {@link finishRun} and {@link close}. So a kill -9 loses at most the last `flushMs` of
 * these records, never out of order: a transaction holds them in call order and the cursor moved
 * past a key is never committed before that key's record. What a lost record costs a resumed run:
 * the object is listed again (the cursor did not pass it) and compared with the destination, which
 * holds the verified copy, so it is recorded `identical` instead of being copied again. Callers
 * that act on a record outside the journal (deleting a source object) wait for {@link durable} first.
 *
 * Upload records (`uploadStarted`, `partUploaded`, `uploadResumed`, `uploadClosed`) and `finishRun`
 * are committed before the method returns (with everything buffered before them): a resumable upload
 * relies on its handle and parts being on disk before the next part is sent.
 *
 * A journal belongs to one (source, destination) pair; opening it for another pair is InvalidConfig.
 * The cursor is kept only while the options that decide what is listed (the filter fingerprint)
 * are unchanged.
 */
export class MigrationJournal implements UploadJournal {
  readonly runId: number;
  private readonly db: SqlDatabase;
  private readonly stmts;
  private readonly flushMs: number;
  private readonly maxBatch: number;
  /** Buffered records, committed by {@link flush}. */
  private readonly rows = new Map<string, RowWrite>();
  /** Buffered events' parameters, flat: 6 per event. */
  private bufferedEvents: unknown[] = [];
  /** A cursor move (a key) or removal (null) not committed yet. */
  private cursorWrite: string | null | undefined;
  /** Buffered records (rows, events, a cursor write), counted against maxBatch. */
  private pending = 0;
  private timer: NodeJS.Timeout | undefined;
  private soon: NodeJS.Immediate | undefined;
  private waiters: { resolve(): void; reject(e: unknown): void }[] = [];

  private constructor(readonly path: string, db: SqlDatabase, pair: string, filter: string, opts: JournalOptions) {
    this.db = db;
    this.flushMs = Math.max(0, opts.flushMs ?? 100);
    this.maxBatch = Math.max(1, opts.maxBatch ?? 512);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 5000');
    refuseNewerJournal(db, path);
    db.exec(JOURNAL_SCHEMA);
    db.prepare("INSERT OR IGNORE INTO meta(name, value) VALUES ('version', ?)").run(String(JOURNAL_VERSION));
    // Journals from before the checksum mode was recorded: add the column (their rows read as null).
    const columns = db.prepare<[], { name: string }>('PRAGMA table_info(objects)').all();
    if (!columns.some((c) => c.name === 'checksum_mode')) db.exec('ALTER TABLE objects ADD COLUMN checksum_mode TEXT');
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
    this.stmts = {
      getMeta: get,
      setMeta: set,
      delMeta: db.prepare<[string]>('DELETE FROM meta WHERE name = ?'),
      lookup: db.prepare<[string], Record<string, unknown>>('SELECT * FROM objects WHERE key = ?'),
      // One statement per batch and table: a batch costs a few calls into SQLite, not a few per object.
      upserts: new RowsStatement(db, (values) => `INSERT INTO objects(key, state, size, src_etag, dst_etag, sha256, verified_by, reason, copies, updated_at, checksum_mode)
        VALUES ${values} ON CONFLICT(key) DO UPDATE SET state = excluded.state, size = coalesce(excluded.size, size),
          src_etag = coalesce(excluded.src_etag, src_etag), dst_etag = excluded.dst_etag, sha256 = excluded.sha256,
          verified_by = excluded.verified_by, reason = excluded.reason, copies = copies + excluded.copies, updated_at = excluded.updated_at,
          checksum_mode = excluded.checksum_mode`, 11),
      events: new RowsStatement(db, (values) => `INSERT INTO events(run, key, src_etag, event, detail, at) VALUES ${values}`, 6),
      sourceDeleted: db.prepare<[number, string]>("UPDATE objects SET state = 'source-deleted', updated_at = ? WHERE key = ?"),
      event: db.prepare('INSERT INTO events(run, key, src_etag, event, detail, at) VALUES (?, ?, ?, ?, ?, ?)'),
      upload: db.prepare<[string], Record<string, unknown>>('SELECT * FROM uploads WHERE key = ?'),
      parts: db.prepare<[string], Record<string, unknown>>('SELECT * FROM upload_parts WHERE key = ? ORDER BY part_number'),
      dropParts: db.prepare<[string]>('DELETE FROM upload_parts WHERE key = ?'),
      startUpload: db.prepare(`INSERT INTO uploads(key, handle, src_etag, size, part_size, state, run, started_at) VALUES (?, ?, ?, ?, ?, 'open', ?, ?)
        ON CONFLICT(key) DO UPDATE SET handle = excluded.handle, src_etag = excluded.src_etag, size = excluded.size, part_size = excluded.part_size,
          state = 'open', run = excluded.run, started_at = excluded.started_at`),
      part: db.prepare(`INSERT INTO upload_parts(key, part_number, size, crc32c, etag, sha256, run, uploads, at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)
        ON CONFLICT(key, part_number) DO UPDATE SET size = excluded.size, crc32c = excluded.crc32c, etag = excluded.etag, sha256 = excluded.sha256,
          run = excluded.run, uploads = uploads + 1, at = excluded.at`),
      closeUpload: db.prepare<[string, string]>('UPDATE uploads SET state = ? WHERE key = ?'),
      finishRun: db.prepare<[number, string, string, number]>('UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE id = ?'),
    };
  }

  /**
   * Opens (creating if needed) the journal at `path` for the pair `src → dst` (store URLs, shown
   * in errors, so pass redacted ones). `filter` fingerprints the options that decide which keys are listed.
   */
  static open(path: string, pair: { src: string; dst: string }, filter = '', opts: JournalOptions = {}): MigrationJournal {
    mkdirSync(dirname(path), { recursive: true });
    let db: SqlDatabase;
    try {
      db = openSqlite(path);
    } catch (e) {
      throw new InvalidConfigError(`--journal ${path}: cannot open (${(e as Error).message})`, { cause: e });
    }
    return new MigrationJournal(path, db, `${pair.src} -> ${pair.dst}`, filter, opts);
  }

  /** The default journal file for a pair: under `$XDG_STATE_HOME/cloudmux` (or `~/.local/state/cloudmux`). */
  static defaultPath(src: string, dst: string, env: NodeJS.ProcessEnv = process.env): string {
    const base = env.XDG_STATE_HOME || (process.platform === 'win32' && env.LOCALAPPDATA) || join(homedir(), '.local', 'state');
    const id = createHash('sha256').update(`${src}\n${dst}`).digest('hex').slice(0, 16);
    return join(base, 'cloudmux', `migrate-${id}.sqlite`);
  }

  /** Every source key at or before this is settled (or undefined: start from the beginning). */
  cursor(): string | undefined {
    this.flush();
    return this.stmts.getMeta.get('cursor')?.value;
  }

  /** Moves the cursor (group committed, after the records of the keys it passes). */
  setCursor(key: string): void {
    if (this.cursorWrite === undefined) this.pending++;
    this.cursorWrite = key;
    this.afterBuffering();
  }

  /** A full pass finished: the next run lists from the start again. */
  passComplete(): void {
    if (this.cursorWrite === undefined) this.pending++;
    this.cursorWrite = null;
    this.afterBuffering();
  }

  /** The record of `key`, including one not committed yet. */
  lookup(key: string): JournalEntry | undefined {
    if (this.rows.has(key)) this.flush();
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
      checksumMode: (r.checksum_mode as string | null | undefined) ?? null,
      reason: r.reason as string | null,
      copies: r.copies as number,
    };
  }

  /**
   * A copy of `key` (source version `srcEtag`) is about to write to the destination. Group
   * committed: for a copy in one request it usually reaches the disk with its outcome; a resumable
   * upload commits it with its handle ({@link uploadStarted}), before the first part is sent.
   */
  copying(key: string, size: number, srcEtag: string): void {
    this.upsert({ key, state: 'copying', size, src_etag: srcEtag, copies: 1 });
    this.event(key, srcEtag, 'copy-start', null);
    this.afterBuffering();
  }

  /**
   * The destination holds the source's bytes, proven by `verifiedBy` under checksum mode `mode`;
   * `copied` says whether this run wrote them. Group committed.
   */
  verified(key: string, v: { size: number; srcEtag: string; dstEtag: string; sha256?: string; verifiedBy: string; mode?: string; copied: boolean }): void {
    this.upsert({ key, state: 'verified', size: v.size, src_etag: v.srcEtag, dst_etag: v.dstEtag, sha256: v.sha256 ?? null, verified_by: v.verifiedBy, checksum_mode: v.mode ?? null });
    this.event(key, v.srcEtag, v.copied ? 'verified' : 'identical', v.verifiedBy);
    this.afterBuffering();
  }

  /** Group committed. */
  failed(key: string, srcEtag: string | undefined, reason: string): void {
    this.upsert({ key, state: 'failed', src_etag: srcEtag ?? null, reason });
    this.event(key, srcEtag ?? null, 'failed', reason);
    this.afterBuffering();
  }

  /** The source object was removed after its copy verified (--delete-source). Group committed. */
  sourceDeleted(key: string, srcEtag: string): void {
    const at = Date.now();
    const w = this.rows.get(key);
    if (w && 'upsert' in w) {
      // Same outcome as the upsert followed by the update.
      w.upsert.state = 'source-deleted';
      w.upsert.at = at;
    } else {
      if (!w) this.pending++;
      this.rows.set(key, { deletedAt: at });
    }
    this.event(key, srcEtag, 'source-deleted', null);
    this.afterBuffering();
  }

  /**
   * Resolves once every record made before the call is committed (rejects if the commit fails).
   * Calls made in the same turn of the event loop share one commit.
   */
  durable(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.soon ??= setImmediate(() => {
        this.soon = undefined;
        try {
          this.flush();
        } catch {
          // flush() already rejected the waiters.
        }
      });
    });
  }

  /** Commits every buffered record now (one transaction). Throws what the commit throws; the records then stay buffered. */
  flush(): void {
    this.commit();
  }

  /** The upload recorded for `key` (any state) with its parts in order, or undefined. */
  upload(key: string): JournalUpload | undefined {
    this.flush();
    const u = this.stmts.upload.get(key);
    if (!u) return undefined;
    const parts = this.stmts.parts.all(key);
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
   * A resumable upload of `key` started: committed (with everything buffered before it) before this
   * returns, so before its first part is sent, and a run killed at any later point finds it.
   * Replaces an earlier upload of the key and its parts.
   */
  uploadStarted(key: string, u: { handle: string; srcEtag: string; size: number; partSize: number }): void {
    this.commit(() => {
      this.stmts.dropParts.run(key);
      this.stmts.startUpload.run(key, u.handle, u.srcEtag, u.size, u.partSize, this.runId, Date.now());
      this.stmts.event.run(this.runId, key, u.srcEtag, 'upload-start', `${u.size} bytes in parts of ${u.partSize}`, Date.now());
    });
  }

  /** The destination accepted a part (recorded after its upload returned; committed before this returns). */
  partUploaded(key: string, p: { partNumber: number; size: number; crc32c: string; etag?: string; sha256?: string }): void {
    this.commit(() => {
      this.stmts.part.run(key, p.partNumber, p.size, p.crc32c, p.etag ?? null, p.sha256 ?? null, this.runId, Date.now());
    });
  }

  /** A run picked up an open upload, keeping `kept` of its `total` parts. */
  uploadResumed(key: string, srcEtag: string, kept: number, total: number): void {
    this.commit(() => {
      this.stmts.event.run(this.runId, key, srcEtag, 'upload-resume', `kept ${kept} of ${total} parts`, Date.now());
    });
  }

  /** The upload was completed (the object is written) or given up (aborted at the destination, or found gone). */
  uploadClosed(key: string, srcEtag: string, state: 'completed' | 'aborted', detail?: string): void {
    this.commit(() => {
      this.stmts.closeUpload.run(state, key);
      this.stmts.event.run(this.runId, key, srcEtag, state === 'completed' ? 'upload-complete' : 'upload-abort', detail ?? null, Date.now());
    });
  }

  /** Objects per state. */
  counts(): Partial<Record<JournalState, number>> {
    this.flush();
    const rows = this.db.prepare<[], { state: JournalState; n: number }>('SELECT state, count(*) AS n FROM objects GROUP BY state').all();
    return Object.fromEntries(rows.map((r) => [r.state, r.n]));
  }

  /** Failed objects with their reasons (first `limit`). */
  failures(limit = 100): { key: string; reason: string }[] {
    this.flush();
    return this.db.prepare<[number], { key: string; reason: string }>("SELECT key, reason FROM objects WHERE state = 'failed' ORDER BY key LIMIT ?").all(limit);
  }

  /** The audit trail, oldest first (optionally of one key). */
  events(key?: string): JournalEvent[] {
    this.flush();
    const rows = key === undefined
      ? this.db.prepare<[], Record<string, unknown>>('SELECT * FROM events ORDER BY seq').all()
      : this.db.prepare<[string], Record<string, unknown>>('SELECT * FROM events WHERE key = ? ORDER BY seq').all(key);
    return rows.map((r) => ({ seq: r.seq as number, run: r.run as number, key: r.key as string, srcEtag: r.src_etag as string | null, event: r.event as JournalEvent['event'], detail: r.detail as string | null }));
  }

  /** Records how this run ended (committed, with everything buffered, before this returns). */
  finishRun(status: 'complete' | 'incomplete' | 'aborted', summary: unknown): void {
    this.commit(() => {
      this.stmts.finishRun.run(Date.now(), status, JSON.stringify(summary), this.runId);
    });
  }

  /** Commits what is buffered, then closes the file (closed even when the commit fails, which is then thrown). */
  close(): void {
    if (!this.db.open) return;
    try {
      this.flush();
    } finally {
      if (this.timer) clearTimeout(this.timer);
      if (this.soon) clearImmediate(this.soon);
      this.timer = undefined;
      this.soon = undefined;
      this.db.close();
    }
  }

  /** Writes the buffer: events in call order, then each key's merged row, then the cursor (inside the caller's transaction). */
  private writePending(): void {
    const { events, upserts, sourceDeleted, setMeta, delMeta } = this.stmts;
    events.write(this.bufferedEvents);
    const rows: unknown[] = [];
    for (const w of this.rows.values()) {
      if ('upsert' in w) {
        const r = w.upsert;
        rows.push(r.key, r.state, r.size, r.src_etag, r.dst_etag, r.sha256, r.verified_by, r.reason, r.copies, r.at, r.checksum_mode);
      }
    }
    upserts.write(rows);
    for (const [key, w] of this.rows) if ('deletedAt' in w) sourceDeleted.run(w.deletedAt, key);
    if (this.cursorWrite === null) delMeta.run('cursor');
    else if (this.cursorWrite !== undefined) setMeta.run('cursor', this.cursorWrite);
  }

  /** Commits, in one transaction, everything buffered and then what `fn` writes. */
  private commit(fn?: () => void): void {
    if (this.pending === 0) {
      if (fn) this.db.transaction(fn)();
      return;
    }
    const waiters = this.waiters;
    try {
      this.db.transaction(() => {
        this.writePending();
        fn?.();
      })();
    } catch (e) {
      // Rolled back: the records stay buffered for the next commit; those waiting learn why.
      this.waiters = [];
      for (const w of waiters) w.reject(e);
      throw e;
    }
    this.rows.clear();
    this.bufferedEvents = [];
    this.cursorWrite = undefined;
    this.pending = 0;
    this.waiters = [];
    if (this.timer) clearTimeout(this.timer);
    if (this.soon) clearImmediate(this.soon);
    this.timer = undefined;
    this.soon = undefined;
    for (const w of waiters) w.resolve();
  }

  /** Merges an upsert into the key's buffered row (the same result as applying both, in order). */
  private upsert(r: {
    key: string; state: JournalState; size?: number | null; src_etag?: string | null; dst_etag?: string | null; sha256?: string | null;
    verified_by?: string | null; reason?: string | null; copies?: number; checksum_mode?: string | null;
  }): void {
    const row: ObjectRow = {
      key: r.key, state: r.state, size: r.size ?? null, src_etag: r.src_etag ?? null, dst_etag: r.dst_etag ?? null, sha256: r.sha256 ?? null,
      verified_by: r.verified_by ?? null, reason: r.reason ?? null, copies: r.copies ?? 0, at: Date.now(), checksum_mode: r.checksum_mode ?? null,
    };
    const w = this.rows.get(r.key);
    if (w === undefined) {
      this.rows.set(r.key, { upsert: row });
      this.pending++;
    } else if ('upsert' in w) {
      const was = w.upsert;
      row.size ??= was.size;
      row.src_etag ??= was.src_etag;
      row.copies += was.copies;
      w.upsert = row;
    } else {
      // A source-deleted mark then an upsert of the same key: keep their order by committing the mark first.
      this.flush();
      this.rows.set(r.key, { upsert: row });
      this.pending++;
    }
  }

  private event(key: string, srcEtag: string | null, event: JournalEvent['event'], detail: string | null): void {
    this.bufferedEvents.push(this.runId, key, srcEtag, event, detail, Date.now());
    this.pending++;
  }

  /** After buffering: commit when the batch is full, else make sure a timed commit is coming. */
  private afterBuffering(): void {
    if (this.pending >= this.maxBatch) {
      this.flush();
      return;
    }
    if (this.timer === undefined && this.pending > 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        try {
          this.flush();
        } catch {
          // Nobody to throw to from a timer: the records stay buffered, and the next commit (a full
          // batch, durable(), finishRun(), close()) tries again and throws to its caller.
        }
      }, this.flushMs);
      this.timer.unref();
    }
  }
}
