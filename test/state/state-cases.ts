import { describe, expect, it } from 'vitest';
import { compareKeys } from '../../src/core/keys.js';
import { isCloudmuxError } from '../../src/core/errors.js';
import type { CatalogChange, CatalogChangeOptions, CatalogChangePage, PutRecord, StateStore } from '../../src/state/types.js';

/** A controllable clock (ms). */
export function testClock(start = 1_700_000_000_000): { now: () => number; advance(ms: number): void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

function rec(key: string, version: number, acked: string[], owed: string[] = [], size = 10): PutRecord {
  return { key, version, size, sha256: `sha-${version}`, contentType: 'text/plain', metadata: { a: '1' }, lastModified: new Date(), acked: acked.map((provider) => ({ provider, version, etag: `e-${provider}-${version}` })), owed };
}

/**
 * The StateStore contract, run against each implementation. `fresh` returns an empty store
 * (optionally on a test clock).
 */
export function stateStoreCases(name: string, fresh: (clock?: () => number) => Promise<StateStore>, caughtUp: (s: StateStore) => Promise<void> = async () => {}): void {
  describe(`state store contract: ${name}`, () => {
    it('priority classes: a claim takes critical first, reserved quota slots give bulk its share, classes and providers filter', async () => {
      const clock = testClock();
      const s = await fresh(clock.now);
      const put = async (key: string, priority: 'critical' | 'normal' | 'bulk', owed = ['b']): Promise<void> => {
        const v = await s.nextVersion();
        await s.commitPut({ ...rec(key, v, ['a'], owed), priority });
        clock.advance(1);
      };
      for (let i = 0; i < 5; i++) await put(`bulk-${i}`, 'bulk');
      await put('normal-0', 'normal');
      await put('crit-0', 'critical', ['b', 'c']);
      await put('crit-1', 'critical');
      const stats = await s.backlog();
      expect(stats.byClass.bulk).toMatchObject({ count: 5, bytes: 50 });
      expect(stats.byClass.critical.count).toBe(3);
      expect(stats.byClass.critical.oldestAgeMs).toBe(2);
      expect(stats.byClass.bulk.oldestAgeMs).toBe(8);
      // Without options: most urgent first, oldest first within a class.
      const first = await s.claim('w', 3, 60_000);
      expect(first.map((e) => `${e.key}>${e.provider}:${e.priority}`)).toEqual(['crit-0>b:critical', 'crit-0>c:critical', 'crit-1>b:critical']);
      // A quota reserves slots: one bulk slot among two, though normal is more urgent.
      const second = await s.claim('w', 2, 60_000, { quota: { bulk: 1 } });
      expect(second.map((e) => e.key)).toEqual(['normal-0', 'bulk-0']);
      // Class filter (a metered link: critical only) and provider filter.
      expect(await s.claim('w', 5, 60_000, { classes: ['critical'] })).toEqual([]);
      expect(await s.claim('w', 5, 60_000, { providers: ['c'] })).toEqual([]);
      expect((await s.claim('w', 5, 60_000, { providers: ['b'], classes: ['bulk'] })).map((e) => e.key)).toEqual(['bulk-1', 'bulk-2', 'bulk-3', 'bulk-4']);
    });

    it('hands out strictly increasing versions, also concurrently', async () => {
      const s = await fresh();
      const vs = await Promise.all(Array.from({ length: 50 }, () => s.nextVersion()));
      expect(new Set(vs).size).toBe(50);
      const next = await s.nextVersion();
      expect(next).toBeGreaterThan(Math.max(...vs));
    });

    it('records a put and the replicas it owes in one commit', async () => {
      const s = await fresh();
      const v = await s.nextVersion();
      const res = await s.commitPut(rec('k', v, ['a'], ['b', 'c'], 42));
      expect(res.committed).toBe(true);
      expect(res.entries.map((e) => [e.kind, e.provider, e.version, e.size])).toEqual([['replicate', 'b', v, 42], ['replicate', 'c', v, 42]]);
      const found = await s.lookup('k');
      expect(found.state).toBe('live');
      if (found.state !== 'live') return;
      expect(found.object).toMatchObject({ key: 'k', version: v, size: 42, sha256: `sha-${v}`, contentType: 'text/plain', metadata: { a: '1' } });
      expect(found.holders).toEqual([{ provider: 'a', version: v, etag: `e-a-${v}` }]);
      expect(await s.lookup('other')).toEqual({ state: 'unknown' });
    });

    it('never lets an older version overwrite a newer one', async () => {
      const s = await fresh();
      const v1 = await s.nextVersion();
      const v2 = await s.nextVersion();
      await s.commitPut(rec('k', v2, ['a']));
      const late = await s.commitPut(rec('k', v1, ['b'], ['a']));
      expect(late).toMatchObject({ committed: false, version: v2, entries: [] });
      const found = await s.lookup('k');
      expect(found.state === 'live' && found.object.version).toBe(v2);
      expect((await s.backlog()).count).toBe(0);
    });

    it('an overwrite supersedes owed replicas of the old version and owes deletes of stale copies', async () => {
      const s = await fresh();
      const v1 = await s.nextVersion();
      await s.commitPut(rec('k', v1, ['a', 'b'], ['c']));
      const v2 = await s.nextVersion();
      const res = await s.commitPut(rec('k', v2, ['c'], ['d']));
      expect(res.entries.map((e) => `${e.kind}:${e.provider}`).sort()).toEqual(['delete:a', 'delete:b', 'replicate:d']);
      const pending = await s.entries({ key: 'k' });
      expect(pending.map((e) => `${e.kind}:${e.provider}@${e.version}`).sort()).toEqual([`delete:a@${v2}`, `delete:b@${v2}`, `replicate:d@${v2}`]);
      const found = await s.lookup('k');
      if (found.state !== 'live') throw new Error('not live');
      expect(found.holders.map((h) => h.provider)).toEqual(['c']);
      expect(found.stale.map((h) => h.provider)).toEqual(['a', 'b']);
    });

    it('an overwrite placed elsewhere owes a delete where it supersedes a replica owed of an older version (a copy may have landed unseen)', async () => {
      const s = await fresh();
      const v1 = await s.nextVersion();
      await s.commitPut(rec('k', v1, ['b'], ['a', 'c']));
      // The copy to a ran and its answer was lost: the entry waits for a retry, and the catalog never names a.
      const [toA] = (await s.entries({ key: 'k' })).filter((e) => e.provider === 'a');
      await s.retryLater(toA!.id, 'lost response', new Date(), true);
      const v2 = await s.nextVersion();
      const res = await s.commitPut(rec('k', v2, ['b'], ['c']));
      // c is still a target (owed v2 instead); a is not: whatever landed there is owed a delete.
      expect(res.entries.map((e) => `${e.kind}:${e.provider}@${e.version}`).sort()).toEqual([`delete:a@${v2}`, `replicate:c@${v2}`]);
      // A provider already owed a delete is not owed a second.
      const v3 = await s.nextVersion();
      const again = await s.commitPut(rec('k', v3, ['b']));
      expect(again.entries.map((e) => `${e.kind}:${e.provider}`).sort()).toEqual(['delete:c']);
      expect((await s.entries({ key: 'k' })).map((e) => `${e.kind}:${e.provider}`).sort()).toEqual(['delete:a', 'delete:c']);
    });

    it('adoption commits only for keys the catalog has never seen', async () => {
      const s = await fresh();
      const v1 = await s.nextVersion();
      expect((await s.commitPut({ ...rec('k', v1, ['a']), onlyIfUnknown: true })).committed).toBe(true);
      const v2 = await s.nextVersion();
      expect((await s.commitPut({ ...rec('k', v2, ['b']), onlyIfUnknown: true })).committed).toBe(false);
      const v3 = await s.nextVersion();
      await s.commitDelete({ key: 'gone', version: v3, alsoOn: [] });
      const v4 = await s.nextVersion();
      expect((await s.commitPut({ ...rec('gone', v4, ['a']), onlyIfUnknown: true })).committed).toBe(false);
    });

    it('a delete tombstones the key and owes a delete everywhere a copy may be, leased to the deleter', async () => {
      const clock = testClock();
      const s = await fresh(clock.now);
      const v1 = await s.nextVersion();
      await s.commitPut(rec('k', v1, ['a'], ['b']));
      const v2 = await s.nextVersion();
      const res = await s.commitDelete({ key: 'k', version: v2, alsoOn: ['c'], leaseOwner: 'router-1', leaseMs: 1000 });
      expect(res.committed).toBe(true);
      expect(await s.lookup('k')).toEqual({ state: 'deleted', version: v2 });
      // The replicate owed to b becomes a delete (its copy may have landed unseen); a (holder) and c (asked for) get deletes too.
      expect(res.entries.map((e) => `${e.kind}:${e.provider}`).sort()).toEqual(['delete:a', 'delete:b', 'delete:c']);
      expect(await s.claim('worker', 10, 60_000)).toEqual([]);
      clock.advance(1001);
      const claimed = await s.claim('worker', 10, 60_000);
      expect(claimed).toHaveLength(3);
      for (const e of claimed) await s.completeDelete(e);
      expect((await s.backlog()).count).toBe(0);
      expect(await s.listObjects({ limit: 10 })).toEqual([]);
      expect(await s.pruneTombstones(60_000)).toBe(0);
      expect(await s.pruneTombstones(5)).toBe(1);
      expect(await s.lookup('k')).toEqual({ state: 'unknown' });
    });

    it('a delete keeps owing a delete pending where the catalog records no copy (a repair of bytes it never named)', async () => {
      const s = await fresh();
      const v1 = await s.nextVersion();
      await s.commitPut(rec('k', v1, ['a']));
      // b holds bytes the catalog never named (a failed write that landed): a delete is owed there, with no replica row.
      expect((await s.repairReplica('k', 'b'))?.kind).toBe('delete');
      const v2 = await s.nextVersion();
      const res = await s.commitDelete({ key: 'k', version: v2, alsoOn: [] });
      expect(res.entries.map((e) => `${e.kind}:${e.provider}`).sort()).toEqual(['delete:a', 'delete:b']);
    });

    it('leases: two claimers never get the same entry; an expired lease is taken over', async () => {
      const clock = testClock();
      const s = await fresh(clock.now);
      for (let i = 0; i < 6; i++) await s.commitPut(rec(`k${i}`, await s.nextVersion(), ['a'], ['b']));
      const [x, y] = await Promise.all([s.claim('w1', 4, 1000), s.claim('w2', 4, 1000)]);
      expect(x.length + y.length).toBe(6);
      expect(new Set([...x, ...y].map((e) => e.id)).size).toBe(6);
      expect(await s.claim('w3', 10, 1000)).toEqual([]);
      clock.advance(1001);
      const retaken = await s.claim('w3', 10, 1000);
      expect(retaken).toHaveLength(6);
      expect(retaken.every((e) => e.leaseOwner === 'w3')).toBe(true);
    });

    it('retryLater schedules the next attempt; deferrals do not count; dead letters keep their reason', async () => {
      const clock = testClock();
      const s = await fresh(clock.now);
      await s.commitPut(rec('k', await s.nextVersion(), ['a'], ['b'], 100));
      let [e] = await s.claim('w', 1, 1000);
      await s.retryLater(e!.id, 'Transient: boom', new Date(clock.now() + 5000), true);
      expect(await s.claim('w', 1, 1000)).toEqual([]);
      clock.advance(5000);
      [e] = await s.claim('w', 1, 1000);
      expect(e).toMatchObject({ attempts: 1, lastError: 'Transient: boom' });
      await s.retryLater(e!.id, 'b is down', new Date(clock.now()), false);
      [e] = await s.claim('w', 1, 1000);
      expect(e!.attempts).toBe(1);
      await s.deadLetter(e!.id, 'after 2 attempts: AccessDenied');
      const stats = await s.backlog();
      expect(stats).toMatchObject({ count: 0, bytes: 0, dead: 1 });
      expect((await s.entries({ state: 'dead' }))[0]).toMatchObject({ lastError: 'after 2 attempts: AccessDenied', state: 'dead' });
      expect(await s.claim('w', 1, 1000)).toEqual([]);
      expect(await s.requeueDead()).toBe(1);
      expect(await s.claim('w', 1, 1000)).toHaveLength(1);
    });

    it('completing a replica makes the provider a holder, unless the key moved on meanwhile', async () => {
      const s = await fresh();
      const v1 = await s.nextVersion();
      await s.commitPut(rec('k', v1, ['a'], ['b']));
      await s.commitPut(rec('j', await s.nextVersion(), ['a'], ['b']));
      const claimed = await s.claim('w', 10, 60_000);
      const forK = claimed.find((e) => e.key === 'k')!;
      const forJ = claimed.find((e) => e.key === 'j')!;
      expect(await s.completeReplicate(forK, 'etag-b')).toBe(true);
      const found = await s.lookup('k');
      expect(found.state === 'live' && found.holders.map((h) => `${h.provider}:${h.etag ?? ''}`)).toEqual(['a:e-a-' + v1, 'b:etag-b']);
      // j is overwritten (on a only) while its copy to b runs: the finished copy is stale and must go.
      await s.commitPut(rec('j', await s.nextVersion(), ['a']));
      expect(await s.completeReplicate(forJ, 'etag-old')).toBe(false);
      const owed = await s.entries({ key: 'j', state: 'pending' });
      expect(owed.map((e) => `${e.kind}:${e.provider}`)).toEqual(['delete:b']);
    });

    it('repairReplica owes a replica to a holder that lost its copy, a delete to a non-holder', async () => {
      const s = await fresh();
      const v = await s.nextVersion();
      await s.commitPut(rec('k', v, ['a', 'b']));
      const r1 = await s.repairReplica('k', 'b');
      expect(r1).toMatchObject({ kind: 'replicate', provider: 'b', version: v });
      const found = await s.lookup('k');
      expect(found.state === 'live' && found.holders.map((h) => h.provider)).toEqual(['a']);
      expect(await s.repairReplica('k', 'b')).toBeUndefined(); // already owed
      expect(await s.repairReplica('k', 'c')).toMatchObject({ kind: 'delete', provider: 'c' });
      expect(await s.repairReplica('never-seen', 'a')).toMatchObject({ kind: 'delete', provider: 'a', key: 'never-seen' });
    });

    it('lists live keys in UTF-8 byte order with prefix and startAfter', async () => {
      const s = await fresh();
      const keys = ['p/a', 'p/b', 'p/\u{1F600}', 'p/\uFF21', 'p/z', 'q/a', 'o'];
      for (const k of keys) await s.commitPut(rec(k, await s.nextVersion(), ['a']));
      await s.commitDelete({ key: 'p/b', version: await s.nextVersion(), alsoOn: [] });
      const expected = ['p/a', 'p/z', 'p/\uFF21', 'p/\u{1F600}'];
      expect([...expected].sort(compareKeys)).toEqual(expected);
      expect((await s.listObjects({ prefix: 'p/', limit: 100 })).map((o) => o.key)).toEqual(expected);
      expect((await s.listObjects({ prefix: 'p/', startAfter: 'p/z', limit: 100 })).map((o) => o.key)).toEqual(expected.slice(2));
      expect((await s.listObjects({ prefix: 'p/', limit: 2 })).map((o) => o.key)).toEqual(expected.slice(0, 2));
      expect((await s.listObjects({ startAfter: 'p', limit: 100 })).map((o) => o.key)).toEqual([...expected, 'q/a']);
    });

    it('reports the backlog: count, bytes, oldest age, per provider', async () => {
      const clock = testClock();
      const s = await fresh(clock.now);
      await s.commitPut(rec('k1', await s.nextVersion(), ['a'], ['b'], 100));
      clock.advance(2000);
      await s.commitPut(rec('k2', await s.nextVersion(), ['a'], ['b', 'c'], 50));
      clock.advance(500);
      expect(await s.backlog()).toEqual({ count: 3, bytes: 200, oldestAgeMs: 2500, dead: 0, byProvider: { b: { count: 2, bytes: 150 }, c: { count: 1, bytes: 50 } },
        byClass: { critical: { count: 0, bytes: 0, oldestAgeMs: 0 }, normal: { count: 3, bytes: 200, oldestAgeMs: 2500 }, bulk: { count: 0, bytes: 0, oldestAgeMs: 0 } } });
    });
  });

  describe(`state store change feed: ${name}`, () => {
    const brief = (cs: CatalogChange[]): string[] => cs.map((c) => `${c.key}@${c.version}${c.deleted ? ' deleted' : ''}`);
    // A change is delivered once no older transaction is still running (PostgreSQL, whose
    // horizon is cluster-wide: other tests' open transactions delay it); the cases assert exact
    // pages, so they read once the feed has caught up with what they committed.
    const feed = async (st: StateStore, cursor: string | undefined, opts: CatalogChangeOptions): Promise<CatalogChangePage> => {
      await caughtUp(st);
      return st.changesSince(cursor, opts);
    };

    it('pages puts and deletes in commit order; the cursor continues where the last page ended', async () => {
      const s = await fresh();
      const [v1, v2, v3, v4] = [await s.nextVersion(), await s.nextVersion(), await s.nextVersion(), await s.nextVersion()];
      await s.commitPut(rec('k1', v1, ['a'], [], 11));
      await s.commitPut(rec('k2', v2, ['a']));
      await s.commitPut(rec('k3', v3, ['a']));
      await s.commitDelete({ key: 'k2', version: v4, alsoOn: [] });
      const p1 = await feed(s, undefined, { limit: 2 });
      expect(p1).toMatchObject({ more: true, reset: false });
      expect(brief(p1.changes)).toEqual([`k1@${v1}`, `k3@${v3}`]);
      expect(p1.changes[0]).toEqual({ key: 'k1', version: v1, deleted: false, size: 11, sha256: `sha-${v1}` });
      const p2 = await feed(s, p1.cursor, { limit: 2 });
      expect(p2).toMatchObject({ more: false, reset: false });
      expect(p2.changes).toEqual([{ key: 'k2', version: v4, deleted: true, size: 0 }]);
      const p3 = await feed(s, p2.cursor, { limit: 2 });
      expect(p3).toMatchObject({ changes: [], more: false, reset: false });
      // Nothing new: the cursor stays usable (and does not go back).
      const v5 = await s.nextVersion();
      await s.commitPut(rec('k1', v5, ['a']));
      const p4 = await feed(s, p3.cursor, { limit: 10 });
      expect(brief(p4.changes)).toEqual([`k1@${v5}`]);
    });

    it('delivers a lower version committed after a higher one was read (versions are not commit order)', async () => {
      const s = await fresh();
      const low = await s.nextVersion();
      const high = await s.nextVersion();
      await s.commitPut(rec('late', high, ['a']));
      const seen = await feed(s, undefined, { limit: 100 });
      expect(brief(seen.changes)).toEqual([`late@${high}`]);
      // The writer holding the lower stamp commits only now.
      await s.commitPut(rec('slow', low, ['a']));
      const next = await feed(s, seen.cursor, { limit: 100 });
      expect(brief(next.changes)).toEqual([`slow@${low}`]);
    });

    it('is a compacted log: a key rewritten between two reads appears once, newest state; refused commits add nothing', async () => {
      const s = await fresh();
      const start = await feed(s, undefined, { limit: 10 });
      const vs = [await s.nextVersion(), await s.nextVersion(), await s.nextVersion()];
      for (const v of vs) await s.commitPut(rec('k', v, ['a']));
      expect((await s.commitPut(rec('k', vs[0]!, ['b']))).committed).toBe(false);
      const page = await feed(s, start.cursor, { limit: 10 });
      expect(brief(page.changes)).toEqual([`k@${vs[2]}`]);
    });

    it('filters by prefix and still advances past other keys', async () => {
      const s = await fresh();
      for (const k of ['p/a', 'q/a', 'p/b', 'q/b']) await s.commitPut(rec(k, await s.nextVersion(), ['a']));
      const page = await feed(s, undefined, { limit: 10, prefix: 'p/' });
      expect(page.changes.map((c) => c.key)).toEqual(['p/a', 'p/b']);
      await s.commitPut(rec('q/c', await s.nextVersion(), ['a']));
      await s.commitPut(rec('p/\u{1F600}', await s.nextVersion(), ['a']));
      const next = await feed(s, page.cursor, { limit: 10, prefix: 'p/' });
      expect(next.changes.map((c) => c.key)).toEqual(['p/\u{1F600}']);
    });

    it('a cursor behind forgotten tombstones resets; one past them, or a fresh start, does not', async () => {
      const clock = testClock();
      const s = await fresh(clock.now);
      await s.commitPut(rec('keep', await s.nextVersion(), ['a']));
      const before = await feed(s, undefined, { limit: 10 });
      await s.commitDelete({ key: 'gone', version: await s.nextVersion(), alsoOn: [] });
      const after = await feed(s, before.cursor, { limit: 10 });
      expect(brief(after.changes)).toEqual([expect.stringMatching(/^gone@\d+ deleted$/)]);
      clock.advance(10_000);
      expect(await s.pruneTombstones(5_000)).toBe(1);
      const reset = await feed(s, before.cursor, { limit: 10 });
      expect(reset).toMatchObject({ changes: [], more: false, reset: true });
      // The reset page's cursor is current: after relisting, the caller continues from it.
      await s.commitPut(rec('new', await s.nextVersion(), ['a']));
      expect(brief((await feed(s, reset.cursor, { limit: 10 })).changes)).toEqual([expect.stringMatching(/^new@/)]);
      expect(await feed(s, after.cursor, { limit: 10 })).toMatchObject({ reset: false });
      const fromStart = await feed(s, undefined, { limit: 10 });
      expect(fromStart.reset).toBe(false);
      expect(fromStart.changes.map((c) => c.key)).toEqual(['keep', 'new']);
    });

    it('refuses a malformed cursor (InvalidArgument) and resets on a cursor of another catalog', async () => {
      const s = await fresh();
      const other = await fresh();
      await s.commitPut(rec('k', await s.nextVersion(), ['a']));
      for (const bad of ['', 'garbage', 'cmxc1.s.zz.1', 'cmxc1.p.0123456789abcdef0123456789abcdef.-1', 'cmxc1.p.0123456789abcdef0123456789abcdef.5.!!']) {
        const err = await feed(s, bad, { limit: 10 }).catch((e: unknown) => e);
        expect(isCloudmuxError(err, 'InvalidArgument'), bad).toBe(true);
      }
      const foreign = (await feed(other, undefined, { limit: 10 })).cursor;
      expect(await feed(s, foreign, { limit: 10 })).toMatchObject({ changes: [], reset: true });
    });
  });
}
