import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import { getBuffer, listAll } from '../../src/core/helpers.js';
import { compareObjects } from '../../src/replication/plan.js';
import { migrate } from '../../src/replication/migrate.js';
import { verifyTrees, treesMatch } from '../../src/replication/verify.js';
import { stack } from '../encryption/helpers.js';

describe('a destination object that fails its integrity check', () => {
  it('counts as different, so a migration replaces it (plaintext of the same size under an encrypted destination)', async () => {
    const src = new MemoryStore();
    await src.put('a.txt', 'hello world 1');
    await src.put('b.txt', 'other');
    const { inner, store: dst } = stack();
    // Same size as the source's, written behind the encryption layer: unreadable through it.
    await inner.put('a.txt', 'HELLO WORLD 1');
    const [s] = await listAll(src, { prefix: 'a.txt' });
    const [d] = await listAll(dst, { prefix: 'a.txt' });
    const cmp = await compareObjects(src, s as never, dst, d as never, 'auto');
    expect(cmp).toMatchObject({ same: false, by: 'unreadable' });
    expect(cmp.reason).toMatch(/not encrypted/);

    const summary = await migrate(src, dst, { concurrency: 2 });
    expect(summary).toMatchObject({ copied: 2, verified: 2, failed: 0 });
    expect((await getBuffer(dst, 'a.txt')).toString()).toBe('hello world 1');
    expect(treesMatch(await verifyTrees(src, dst))).toBe(true);
  });

  it('the same failure on the source side stays an error', async () => {
    const { inner, store: src } = stack();
    await inner.put('a.txt', 'plain bytes!!');
    const dst = new MemoryStore();
    await dst.put('a.txt', 'other bytes!!');
    const [s] = await listAll(src, { prefix: 'a.txt' });
    const [d] = await listAll(dst, { prefix: 'a.txt' });
    await expect(compareObjects(src, s as never, dst, d as never, 'auto')).rejects.toMatchObject({ code: 'IntegrityError' });
  });
});
