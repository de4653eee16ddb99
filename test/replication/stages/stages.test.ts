import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../../providers/memory/index.js';
import { getBuffer } from '../../../src/core/index.js';
import { MigrationJournal } from '../../../src/replication/journal.js';
import { LocalClaims } from '../../../src/replication/stages/claim.js';
import { copyStage, type CopyStageContext } from '../../../src/replication/stages/copy.js';
import { planMigration, type PlanEntry } from '../../../src/replication/stages/plan.js';
import { JournalRecorder, type MigrationFact, type ObjectRecorder } from '../../../src/replication/stages/record.js';
import { emptySummary, tally, type MigrationEvent } from '../../../src/replication/stages/summary.js';
import { recordedProof, removeVerifiedSource } from '../../../src/replication/stages/verify.js';
import type { JournalEntry } from '../../../src/replication/journal.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A recorder that keeps facts in memory, in order, and counts durable() calls. */
class FactLog implements ObjectRecorder {
  readonly facts: MigrationFact[] = [];
  durableCalls = 0;
  readonly uploads = undefined;
  constructor(private readonly knownEntries = new Map<string, JournalEntry>()) {}
  known(key: string): JournalEntry | undefined {
    return this.knownEntries.get(key);
  }
  record(f: MigrationFact): void {
    this.facts.push(f);
  }
  durable(): Promise<void> {
    this.durableCalls++;
    return Promise.resolve();
  }
}

function ctxFor(src: MemoryStore, dst: MemoryStore, recorder: ObjectRecorder, extra: Partial<CopyStageContext> = {}): CopyStageContext & { events: MigrationEvent[] } {
  const events: MigrationEvent[] = [];
  return { src, dst, mode: 'auto', retries: 2, dryRun: false, deleteSource: false, recorder, emit: (e) => events.push(e), events, ...extra };
}

async function collectPlan(it: AsyncIterable<PlanEntry>): Promise<[string, string][]> {
  const out: [string, string][] = [];
  for await (const e of it) out.push([e.key, e.action]);
  return out;
}

describe('plan stage', () => {
  it('merge-joins both sides over a key range, in byte order, marking what to reconcile, extras and out-of-scope keys', async () => {
    const src = new MemoryStore();
    const dst = new MemoryStore();
    for (const k of ['a', 'b/1', 'b/2', 'c', 'skip.tmp', 'z']) await src.put(k, k);
    for (const k of ['b/1', 'd', 'e.tmp', 'z']) await dst.put(k, k);
    const listed: string[] = [];
    const all = await collectPlan(planMigration(src, dst, { exclude: ['*.tmp'], emit: (e) => e.type === 'listed' && listed.push(e.key) }));
    expect(all).toEqual([['a', 'reconcile'], ['b/1', 'reconcile'], ['b/2', 'reconcile'], ['c', 'reconcile'], ['d', 'extra'], ['e.tmp', 'skip'], ['z', 'reconcile']]);
    expect(listed).toEqual(['a', 'b/1', 'b/2', 'c', 'z']);
    // (after, end]: a worker's range of a job.
    expect(await collectPlan(planMigration(src, dst, { startAfter: 'a', end: 'c' }))).toEqual([['b/1', 'reconcile'], ['b/2', 'reconcile'], ['c', 'reconcile']]);
    expect(await collectPlan(planMigration(src, dst, { startAfter: 'c', end: 'd' }))).toEqual([['d', 'extra']]);
  });
});

describe('claim stage (local)', () => {
  it('moves the cursor over the settled head only, and never past a failed key', () => {
    const moves: string[] = [];
    const claims = new LocalClaims((k) => moves.push(k));
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((k) => claims.claim(k));
    expect(claims.outstanding).toBe(4);
    b!.settle();
    expect(moves).toEqual([]);
    a!.settle();
    expect(moves).toEqual(['b']);
    c!.settle(true);
    d!.settle();
    expect(moves).toEqual(['b']);
    expect(claims.outstanding).toBe(0);
  });
});

describe('copy and verify stages', () => {
  it('copies a missing object: facts in order (copying, then verified by a digest), events for the summary', async () => {
    const src = new MemoryStore();
    const dst = new MemoryStore();
    const meta = await src.put('k', 'hello');
    const log = new FactLog();
    const ctx = ctxFor(src, dst, log);
    expect(await copyStage({ key: 'k', src: { key: 'k', size: meta.size, etag: meta.etag, lastModified: meta.lastModified } }, ctx)).toBe('ok');
    expect(log.facts.map((f) => f.type)).toEqual(['copying', 'verified']);
    expect(log.facts[1]).toMatchObject({ key: 'k', srcEtag: meta.etag, copied: true, mode: 'auto' });
    expect((await getBuffer(dst, 'k')).toString()).toBe('hello');
    const s = emptySummary();
    for (const e of ctx.events) tally(s, e);
    expect(s).toMatchObject({ copied: 1, verified: 1, bytes: 5, failed: 0 });
  });

  it('an earlier verified record is proof only for the same versions and a mode it proves under', () => {
    const rec: JournalEntry = { key: 'k', state: 'verified', size: 5, srcEtag: 's1', dstEtag: 'd1', sha256: 'x', verifiedBy: 'sha256', checksumMode: 'auto', reason: null, copies: 1 };
    expect(recordedProof(rec, 's1', 5, 'd1', 'auto')).toBe('journal:sha256');
    expect(recordedProof(rec, 's2', 5, 'd1', 'auto')).toBeUndefined();
    expect(recordedProof(rec, 's1', 5, 'd2', 'auto')).toBeUndefined();
    expect(recordedProof({ ...rec, verifiedBy: 'size-only' }, 's1', 5, 'd1', 'auto')).toBeUndefined();
    expect(recordedProof({ ...rec, state: 'copying' }, 's1', 5, 'd1', 'auto')).toBeUndefined();
  });

  it('identical by record: nothing is read or written; with deleteSource the record is made durable before the source goes', async () => {
    const src = new MemoryStore();
    const dst = new MemoryStore();
    const s = await src.put('k', 'hello');
    const d = await dst.put('k', 'hello');
    const known = new Map([['k', { key: 'k', state: 'verified', size: 5, srcEtag: s.etag, dstEtag: d.etag, sha256: s.checksums.sha256 ?? null, verifiedBy: 'sha256', checksumMode: 'auto', reason: null, copies: 1 } as JournalEntry]]);
    const log = new FactLog(known);
    const ctx = ctxFor(src, dst, log, { deleteSource: true });
    const item = { key: 'k', src: { key: 'k', size: 5, etag: s.etag, lastModified: s.lastModified }, dst: { key: 'k', size: 5, etag: d.etag, lastModified: d.lastModified } };
    expect(await copyStage(item, ctx)).toBe('ok');
    expect(log.durableCalls).toBe(1);
    expect(log.facts.map((f) => f.type)).toEqual(['source-deleted']);
    expect(ctx.events.filter((e) => e.type === 'object')).toMatchObject([{ outcome: 'identical', verifiedBy: 'journal:sha256' }]);
    await expect(src.head('k')).rejects.toMatchObject({ code: 'NotFound' });
  });

  it('never deletes a source on a size-only proof (IntegrityError, source kept)', async () => {
    const src = new MemoryStore();
    const meta = await src.put('k', 'x');
    await expect(removeVerifiedSource(src, 'k', { etag: meta.etag }, 'size-only', new FactLog())).rejects.toMatchObject({ code: 'IntegrityError' });
    expect((await getBuffer(src, 'k')).toString()).toBe('x');
  });

  it('a source gone before the copy is vanished, not failed; a failing destination is failed after its retries', async () => {
    const src = new MemoryStore();
    const dst = new MemoryStore();
    const log = new FactLog();
    const ctx = ctxFor(src, dst, log);
    expect(await copyStage({ key: 'gone', src: { key: 'gone', size: 1, etag: 'e', lastModified: new Date() } }, ctx)).toBe('ok');
    expect(ctx.events.filter((e) => e.type === 'object')).toMatchObject([{ outcome: 'vanished' }]);
    const meta = await src.put('k', 'x');
    const broken = Object.assign(Object.create(dst) as MemoryStore, { put: () => Promise.reject(Object.assign(new Error('denied'), { code: 'AccessDenied' })) });
    const ctx2 = ctxFor(src, broken, log);
    expect(await copyStage({ key: 'k', src: { key: 'k', size: 1, etag: meta.etag, lastModified: meta.lastModified } }, ctx2)).toBe('failed');
    expect(log.facts.at(-1)).toMatchObject({ type: 'failed', key: 'k' });
  });
});

describe('record stage (local journal)', () => {
  it('is the one writer of the journal: facts become records, the settled head the cursor, finish a finished run', () => {
    const d = mkdtempSync(join(tmpdir(), 'cloudmux-stages-'));
    dirs.push(d);
    const path = join(d, 'j.sqlite');
    const journal = MigrationJournal.open(path, { src: 'a', dst: 'b' });
    const rec = new JournalRecorder(journal, true);
    rec.record({ type: 'copying', key: 'k', size: 5, srcEtag: 's' });
    rec.record({ type: 'verified', key: 'k', size: 5, srcEtag: 's', dstEtag: 'd', sha256: 'h', verifiedBy: 'sha256', mode: 'auto', copied: true });
    rec.settledThrough('k');
    expect(rec.known('k')).toMatchObject({ state: 'verified', srcEtag: 's', dstEtag: 'd', verifiedBy: 'sha256', checksumMode: 'auto', copies: 1 });
    expect(rec.resumeAfter()).toBe('k');
    rec.finish('complete', emptySummary());
    const again = MigrationJournal.open(path, { src: 'a', dst: 'b' });
    expect(again.cursor()).toBeUndefined();
    expect(again.events().map((e) => e.event)).toEqual(['copy-start', 'verified']);
    again.close();
  });
});
