import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import { SyncEngine } from '../../src/sync/sync-engine.js';
import { FaultyStore } from '../faults/faulty-store.js';
import { seededRandom } from '../faults/random.js';
import { cleanupDirs, localTree, remoteTree, removeFile, sha, tempDir, writeFile } from './helpers.js';

afterEach(cleanupDirs);

describe('a device offline for 100 rounds', () => {
  it('comes back with 1,000 changes: all of them arrive, nothing is duplicated, only real conflicts make copies', async () => {
    const seed = Number(process.env.SYNC_OFFLINE_SEED ?? 7);
    const random = seededRandom(seed);
    const inner = new MemoryStore();
    const aRemote = new FaultyStore(inner);
    const aDir = tempDir('sync-off-a');
    const bDir = tempDir('sync-off-b');
    const a = SyncEngine.open({ local: aDir, remote: aRemote, device: 'a', pair: 'p', fsync: false });
    const b = SyncEngine.open({ local: bDir, remote: inner, device: 'b', pair: 'p', fsync: false });
    for (let i = 0; i < 5; i++) writeFile(aDir, `shared/${i}.txt`, `shared ${i} v0`);
    await a.round();
    await b.round();

    aRemote.outage(true, 'ProviderUnavailable');
    const expectA = new Map<string, string>();
    let changes = 0;
    for (let round = 0; round < 100; round++) {
      for (let k = 0; k < 10; k++) {
        const path = `a/${Math.floor(random() * 300)}.txt`;
        if (expectA.has(path) && random() < 0.2) {
          removeFile(aDir, path);
          expectA.delete(path);
        } else {
          const content = `a ${round} ${k}`;
          writeFile(aDir, path, content);
          expectA.set(path, sha(content));
        }
        changes++;
      }
      if (round % 20 === 0) writeFile(aDir, `shared/${round / 20}.txt`, `shared ${round / 20} from a`);
      if (round % 20 === 10) {
        writeFile(bDir, `shared/${(round - 10) / 20}.txt`, `shared ${(round - 10) / 20} from b`);
        writeFile(bDir, `b/${round}.txt`, `b ${round}`);
        await b.round();
      }
      const r = await a.round();
      expect(r.online).toBe(false);
    }
    expect(changes).toBe(1000);
    expect(a.state.queueCount()).toBe(expectA.size + 5);

    aRemote.outage(false);
    const back = await a.round();
    expect(back.online).toBe(true);
    expect(back.counts).toMatchObject({ failed: 0, deferred: 0, raced: 0 });
    expect(back.pending).toBe(0);
    await b.round();
    expect((await a.round()).planned).toEqual([]);
    expect((await b.round()).planned).toEqual([]);

    const tree = localTree(aDir);
    expect(tree).toEqual(localTree(bDir));
    expect(await remoteTree(inner)).toEqual(tree);
    // a's own files: exactly what a left, no copies.
    expect(new Map([...tree].filter(([p]) => p.startsWith('a/')))).toEqual(new Map([...expectA].sort(([x], [y]) => (x < y ? -1 : 1))));
    // b's files arrived; each shared file edited on both sides gave exactly one conflict copy.
    expect([...tree.keys()].filter((p) => p.startsWith('b/'))).toHaveLength(5);
    const shared = [...tree.keys()].filter((p) => p.startsWith('shared/'));
    expect(shared.filter((p) => p.includes('.conflict-a-'))).toHaveLength(5);
    expect(shared).toHaveLength(10);
    a.close();
    b.close();
  }, 300_000);
});
