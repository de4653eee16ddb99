import { afterEach, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryStore } from '../../providers/memory/index.js';
import { getText, listAll } from '../../src/core/index.js';
import type { BlobStore, Body, CopyOptions, GetOptions, GetResult, ObjectMeta, PutOptions } from '../../src/core/index.js';
import { ForwardingStore } from '../../src/layers/forwarding-store.js';
import { SyncEngine, type RoundReport, type SyncEngineOptions } from '../../src/sync/sync-engine.js';
import { SyncState } from '../../src/sync/sync-state.js';
import type { Merger } from '../../src/sync/merge/index.js';
import { FaultyStore } from '../faults/faulty-store.js';
import { cleanupDirs, localTree, readFile, remoteTree, removeFile, tempDir, writeFile } from './helpers.js';

afterEach(cleanupDirs);

const engines: SyncEngine[] = [];
afterEach(() => {
  for (const e of engines.splice(0)) e.close();
});

function device(remote: BlobStore, name: string, extra: Partial<SyncEngineOptions> = {}): SyncEngine & { dir: string } {
  const dir = tempDir(`sync-${name}`);
  const e = SyncEngine.open({ local: dir, remote, device: name, pair: 'memory://test', fsync: false, ...extra });
  engines.push(e);
  return Object.assign(e, { dir });
}

/** Counts puts and copies (renames must copy, not re-upload). */
class CountingStore extends ForwardingStore {
  protected readonly layerName = 'Counting';
  puts: string[] = [];
  copies: string[] = [];
  override put(key: string, body: Body, opts?: PutOptions): Promise<ObjectMeta> {
    this.puts.push(key);
    return super.put(key, body, opts);
  }
  override copy(src: string, dst: string, opts?: CopyOptions): Promise<ObjectMeta> {
    this.copies.push(`${src}->${dst}`);
    return super.copy(src, dst, opts);
  }
}

describe('SyncEngine over a memory remote', () => {
  it('propagates creates, edits and deletes both ways; all trees end equal', async () => {
    const remote = new MemoryStore();
    const a = device(remote, 'a');
    const b = device(remote, 'b');
    writeFile(a.dir, 'docs/readme.txt', 'hello');
    writeFile(a.dir, 'empty', '');
    writeFile(a.dir, 'unicode/ü-😀.txt', 'x');
    let r = await a.round();
    expect(r.online).toBe(true);
    expect(r.counts).toMatchObject({ done: 3, failed: 0 });
    await b.round();
    expect(localTree(b.dir)).toEqual(localTree(a.dir));

    writeFile(b.dir, 'docs/readme.txt', 'hello from b');
    removeFile(b.dir, 'empty');
    writeFile(b.dir, 'new/file.bin', Buffer.alloc(70_000, 7));
    await b.round();
    r = await a.round();
    expect(r.planned.map((x) => [x.path, x.case])).toEqual([
      ['docs/readme.txt', 'remote-changed'], ['empty', 'remote-deleted'], ['new/file.bin', 'remote-created'],
    ]);
    expect(readFile(a.dir, 'docs/readme.txt')).toBe('hello from b');
    expect(readFile(a.dir, 'empty')).toBeUndefined();
    expect(localTree(a.dir)).toEqual(localTree(b.dir));
    expect(await remoteTree(remote)).toEqual(localTree(a.dir));
    // Quiet round: nothing planned, nothing read.
    r = await a.round();
    expect(r.planned).toEqual([]);
    expect(r.hashed).toBe(0);
    expect(r.examined).toBe(0);
  });

  it('a propagated delete keeps the deleted version in the versions area, restorable', async () => {
    const remote = new MemoryStore();
    const a = device(remote, 'a');
    const b = device(remote, 'b');
    writeFile(a.dir, 'keep.txt', 'precious');
    await a.round();
    await b.round();
    removeFile(b.dir, 'keep.txt');
    await b.round();
    await a.round();
    expect(readFile(a.dir, 'keep.txt')).toBeUndefined();
    const kept = await a.versions.list('keep.txt');
    expect(kept).toHaveLength(1);
    await a.versions.restore('keep.txt', kept[0]!.id, a.device, a.clock.now());
    await a.round();
    await b.round();
    expect(readFile(a.dir, 'keep.txt')).toBe('precious');
    expect(readFile(b.dir, 'keep.txt')).toBe('precious');
  });

  it('keep-both: concurrent edits end as the remote version plus a conflict copy, on every device', async () => {
    const remote = new MemoryStore();
    const a = device(remote, 'a');
    const b = device(remote, 'b');
    writeFile(a.dir, 'report.txt', 'v0');
    await a.round();
    await b.round();
    writeFile(a.dir, 'report.txt', 'edit by a');
    writeFile(b.dir, 'report.txt', 'edit by b');
    await a.round();
    const r = await b.round();
    expect(r.outcomes.find((o) => o.action.path === 'report.txt')).toMatchObject({ result: 'done', action: { kind: 'keep-both' } });
    await a.round();
    const tree = localTree(a.dir);
    expect(tree).toEqual(localTree(b.dir));
    expect(readFile(a.dir, 'report.txt')).toBe('edit by a');
    const copies = [...tree.keys()].filter((p) => /^report\.conflict-b-\d{8}-\d{6}\.txt$/.test(p));
    expect(copies).toHaveLength(1);
    expect(readFile(a.dir, copies[0]!)).toBe('edit by b');
    expect(b.state.conflictCount()).toBe(1);
  });

  it('newest: the later HLC stamp wins; the loser is in the versions area', async () => {
    const remote = new MemoryStore();
    let wall = 1_000_000;
    const clock = (): number => wall;
    const { createSyncClock } = await import('../../src/sync/sync-clock.js');
    const a = device(remote, 'a', { conflict: ['newest'], clock: createSyncClock('a', { now: clock }) });
    const bRemote = new FaultyStore(remote);
    const b = device(bRemote, 'b', { conflict: ['newest'], clock: createSyncClock('b', { now: clock }) });
    writeFile(a.dir, 'n.txt', 'v0');
    await a.round();
    await b.round();
    writeFile(b.dir, 'n.txt', 'older edit by b');
    wall += 10;
    bRemote.outage(true, 'ProviderUnavailable');
    expect((await b.round()).online).toBe(false); // b's edit is seen (and stamped) while offline
    bRemote.outage(false);
    wall += 10;
    writeFile(a.dir, 'n.txt', 'newer edit by a');
    await a.round();
    wall += 10;
    await b.round();
    expect(readFile(b.dir, 'n.txt')).toBe('newer edit by a');
    const kept = await b.versions.list('n.txt');
    expect(kept.map((v) => v.id)).toEqual([expect.stringMatching(/^[0-9a-f]{12}-[0-9a-f]{6}-b$/)]);
  });

  it('merge:<name>: the merger gets base, local and remote; merged bytes land on both sides; its conflict keeps both', async () => {
    const remote = new MemoryStore();
    const seen: (string | undefined)[] = [];
    // Appends local's and remote's lines that the base lacks; refuses when both removed lines.
    const union: Merger = {
      name: 'union', maxBytes: 1024,
      async merge({ base, local, remote: r }) {
        const b = base ? Buffer.from(base).toString() : undefined;
        seen.push(b);
        if (b === undefined) return { kind: 'conflict', reason: 'no base' };
        const [bl, ll, rl] = [b, Buffer.from(local).toString(), Buffer.from(r).toString()].map((t) => t.split('\n'));
        if (ll!.length < bl!.length || rl!.length < bl!.length) return { kind: 'conflict', reason: 'lines removed' };
        return { kind: 'merged', bytes: Buffer.from([...bl!, ...ll!.slice(bl!.length), ...rl!.slice(bl!.length)].join('\n')) };
      },
    };
    const opts = { conflict: ['*.log=merge:union'], mergers: () => union };
    const a = device(remote, 'a', opts);
    const b = device(remote, 'b', opts);
    writeFile(a.dir, 'x.log', 'one');
    await a.round();
    await b.round();
    writeFile(a.dir, 'x.log', 'one\nfrom a');
    writeFile(b.dir, 'x.log', 'one\nfrom b');
    await a.round();
    const r = await b.round();
    expect(r.outcomes).toEqual([expect.objectContaining({ result: 'done', action: expect.objectContaining({ kind: 'merge' }) })]);
    expect(seen).toEqual(['one']);
    await a.round();
    expect(readFile(a.dir, 'x.log')).toBe('one\nfrom b\nfrom a'); // merged on b: local (b) lines, then remote (a) lines
    expect(localTree(b.dir)).toEqual(localTree(a.dir));
    // Overlapping edits: the merger says conflict → keep both.
    writeFile(a.dir, 'x.log', 'a only');
    writeFile(b.dir, 'x.log', 'b only');
    await a.round();
    await b.round();
    await a.round();
    expect([...localTree(a.dir).keys()]).toEqual([expect.stringMatching(/^x\.conflict-b-\d{8}-\d{6}\.log$/), 'x.log']);
    expect(localTree(b.dir)).toEqual(localTree(a.dir));
  });

  it('a local rename is a server-side copy + delete, not a re-upload; a remote rename is a local move', async () => {
    const inner = new MemoryStore();
    const remote = new CountingStore(inner);
    const a = device(remote, 'a');
    const b = device(remote, 'b');
    writeFile(a.dir, 'big/old-name.bin', Buffer.alloc(100_000, 1));
    await a.round();
    await b.round();
    remote.puts = [];
    const { renameSync } = await import('node:fs');
    renameSync(join(a.dir, 'big', 'old-name.bin'), join(a.dir, 'new-name.bin'));
    const r = await a.round();
    expect(r.planned).toEqual([expect.objectContaining({ kind: 'rename-remote', path: 'new-name.bin', from: 'big/old-name.bin' })]);
    expect(remote.puts).toEqual([]);
    expect(remote.copies).toContain('big/old-name.bin->new-name.bin');
    const rb = await b.round();
    expect(rb.planned).toEqual([expect.objectContaining({ kind: 'rename-local', path: 'new-name.bin' })]);
    expect(localTree(b.dir)).toEqual(localTree(a.dir));
  });

  it('offline: changes are queued durably, the round reports offline, and sync resumes when the remote answers', async () => {
    const inner = new MemoryStore();
    const remote = new FaultyStore(inner);
    const dir = tempDir('sync-off');
    let a = SyncEngine.open({ local: dir, remote, device: 'a', pair: 'p', fsync: false });
    writeFile(dir, 'one.txt', '1');
    remote.outage(true, 'ProviderUnavailable');
    let r = await a.round();
    expect(r.online).toBe(false);
    expect(r.pending).toBe(1);
    a.close();
    // A restart (or kill -9) keeps the queue and its stamp.
    a = SyncEngine.open({ local: dir, remote, device: 'a', pair: 'p', fsync: false });
    engines.push(a);
    const stamp = a.state.queue().get('one.txt')!.hlc;
    writeFile(dir, 'two.txt', '2');
    r = await a.round();
    expect(r.online).toBe(false);
    expect(a.state.queue().get('one.txt')!.hlc).toBe(stamp);
    remote.outage(false);
    r = await a.round();
    expect(r.online).toBe(true);
    expect(r.pending).toBe(0);
    expect(await remoteTree(inner)).toEqual(localTree(dir));
    expect((await inner.head('one.txt')).metadata.sync_hlc).toBe(stamp);
  });

  it('a remote outage mid-round stops the round; nothing is lost and the next round finishes', async () => {
    const inner = new MemoryStore();
    const remote = new FaultyStore(inner, { ops: ['put'], failCalls: { 3: 'ProviderUnavailable' } });
    const a = device(remote, 'a', { concurrency: 1 });
    for (let i = 0; i < 6; i++) writeFile(a.dir, `f${i}`, `content ${i}`);
    const r = await a.round();
    expect(r.online).toBe(false);
    expect(r.counts.done).toBe(2);
    expect(r.pending).toBe(4);
    const r2 = await a.round();
    expect(r2.online).toBe(true);
    expect(await remoteTree(inner)).toEqual(localTree(a.dir));
  });

  it('never clobbers a local file that changed after it was examined (the write is deferred)', async () => {
    const inner = new MemoryStore();
    let dirOfA = '';
    let edited = false;
    // Edits the local file while the remote bytes are being fetched.
    class EditDuringGet extends ForwardingStore {
      protected readonly layerName = 'EditDuringGet';
      override async get(key: string, opts?: GetOptions): Promise<GetResult> {
        const r = await super.get(key, opts);
        if (key === 'x.txt' && !edited) {
          edited = true;
          writeFileSync(join(dirOfA, 'x.txt'), 'local edit during the round');
        }
        return r;
      }
    }
    const a = device(new EditDuringGet(inner), 'a');
    dirOfA = a.dir;
    const b = device(inner, 'b');
    writeFile(a.dir, 'x.txt', 'v0');
    await a.round();
    await b.round();
    writeFile(b.dir, 'x.txt', 'remote edit');
    await b.round();
    const r = await a.round();
    expect(r.outcomes).toEqual([expect.objectContaining({ result: 'deferred' })]);
    expect(readFile(a.dir, 'x.txt')).toBe('local edit during the round');
    // Next round: both changed → conflict, both versions survive.
    await a.round();
    await b.round();
    const contents = [...localTree(a.dir).keys()].map((p) => readFile(a.dir, p));
    expect(contents.sort()).toEqual(['local edit during the round', 'remote edit']);
  });

  it('without atomic conditional delete, a write landing between the scan and the delete survives (tombstone compare-and-swap)', async () => {
    const inner = new MemoryStore();
    class NoConditionalDelete extends ForwardingStore {
      protected readonly layerName = 'NoConditionalDelete';
      onHead: (() => Promise<void>) | undefined;
      override get capabilities() {
        return { ...this.inner.capabilities, conditionalDelete: false };
      }
      override async head(key: string): Promise<ObjectMeta> {
        const r = await super.head(key);
        await this.onHead?.(); // another device's round runs right after a check, before the delete
        return r;
      }
    }
    const remote = new NoConditionalDelete(inner);
    const a = device(remote, 'a');
    const b = device(inner, 'b');
    writeFile(a.dir, 'doc.txt', 'v1');
    await a.round();
    await b.round();
    removeFile(a.dir, 'doc.txt');
    writeFile(b.dir, 'doc.txt', 'v2 from b');
    let bRound: RoundReport | undefined;
    remote.onHead = async () => {
      remote.onHead = undefined;
      bRound = await b.round();
    };
    await a.round();
    // b's change met a's tombstone: its create-only upload lost the race and waits a round.
    expect(bRound?.outcomes).toEqual([expect.objectContaining({ result: 'raced', action: expect.objectContaining({ kind: 'upload', case: 'local-changed-remote-deleted' }) })]);
    await b.round();
    await a.round();
    expect(readFile(a.dir, 'doc.txt')).toBe('v2 from b');
    expect(await remoteTree(inner)).toEqual(localTree(a.dir));
    // A propagated delete on such a store leaves no tombstone behind.
    removeFile(a.dir, 'doc.txt');
    await a.round();
    expect(await listAll(inner, { prefix: 'doc' })).toEqual([]);
  });

  it('dry run plans without writing anything', async () => {
    const remote = new MemoryStore();
    const a = device(remote, 'a');
    writeFile(a.dir, 'x', '1');
    const r = await a.round({ dryRun: true });
    expect(r.planned).toEqual([expect.objectContaining({ kind: 'upload', path: 'x' })]);
    expect(await listAll(remote)).toEqual([]);
    expect(a.state.queueCount()).toBe(0);
  });

  it('bad input is a typed error and changes nothing', async () => {
    const remote = new MemoryStore();
    const dir = tempDir('sync-bad');
    expect(() => SyncEngine.open({ local: dir, remote, device: 'bad device!', pair: 'p' })).toThrow(expect.objectContaining({ code: 'InvalidArgument' }));
    expect(() => SyncEngine.open({ local: dir, remote, device: 'a', pair: 'p', conflict: ['*.txt=merge:nope'] })).toThrow(/conflict policy merge:nope: unknown merger "nope"/);
    const e = SyncEngine.open({ local: dir, remote, device: 'a', pair: 'p' });
    e.close();
    expect(() => SyncEngine.open({ local: dir, remote, device: 'a', pair: 'other' })).toThrow(expect.objectContaining({ code: 'InvalidConfig' }));
    const s = SyncState.open(join(dir, '.cloudmux-sync', 'state.db'), 'p');
    s.setMeta('version', '2');
    s.close();
    expect(() => SyncEngine.open({ local: dir, remote, device: 'a', pair: 'p' })).toThrow(/schema version 2; this cloudmux reads version 1/);
    expect(await getText(remote, 'x').catch((err: { code: string }) => err.code)).toBe('NotFound');
  });

  it('local names that are not portable keys are reported and left alone', async () => {
    const remote = new MemoryStore();
    const a = device(remote, 'a');
    writeFile(a.dir, 'ok.txt', 'fine');
    writeFileSync(join(a.dir, 'back\\slash'), 'nope');
    const r = await a.round();
    expect(r.skipped).toEqual([expect.objectContaining({ path: 'back\\slash', reason: 'invalid-name' })]);
    expect([...(await remoteTree(remote)).keys()]).toEqual(['ok.txt']);
  });
});
