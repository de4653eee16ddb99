import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import { getBuffer, listAll } from '../../src/core/index.js';
import type { BlobStore, PutOptions, Body } from '../../src/core/index.js';
import type { MigrateOptions, MigrationSummary } from '../../src/replication/migrate.js';
import { verifyTrees } from '../../src/replication/verify.js';
import { seedDataset } from '../replication/dataset.js';
import { overrideStore } from '../replication/helpers.js';

export type RunOptions = Pick<MigrateOptions, 'include' | 'exclude' | 'checksum' | 'deleteSource' | 'retries'>;

/** One way of running a migration: a local run on a SQLite journal, or N workers of a PostgreSQL job. */
export interface MigrationRunner {
  /** Runs one pass from src to dst (each call a new pass: the same journal, or a new job). */
  run(src: BlobStore, dst: BlobStore, opts?: RunOptions): Promise<MigrationSummary>;
}

async function keys(store: BlobStore): Promise<string[]> {
  return (await listAll(store)).flatMap((i) => (i.type === 'object' ? [i.key] : []));
}

/**
 * The behaviour a user relies on from `migrate`, whatever runs it: one process on its journal, or
 * several workers sharing a job in PostgreSQL. `fresh()` gives a runner with its own journal / schema.
 */
export function migrationCases(name: string, fresh: () => Promise<MigrationRunner>): void {
  describe(`migration contract: ${name}`, () => {
    it('copies a tree, verify finds no difference, a second pass copies nothing', async () => {
      const src = new MemoryStore();
      const dst = new MemoryStore();
      const all = await seedDataset(src, { small: 60, large: 2, largeSize: 300_000 });
      const r = await fresh();
      const first = await r.run(src, dst);
      expect(first).toMatchObject({ listed: all.length, copied: all.length, verified: all.length, failed: 0, identical: 0 });
      expect(first.bytes).toBe(first.listedBytes);
      const v = await verifyTrees(src, dst, { download: true });
      expect({ differing: v.differing, onlyInA: v.onlyInA, onlyInB: v.onlyInB }).toEqual({ differing: 0, onlyInA: 0, onlyInB: 0 });
      const second = await r.run(src, dst);
      expect(second).toMatchObject({ listed: all.length, copied: 0, identical: all.length, verified: all.length, bytes: 0 });
    });

    it('honours include/exclude and counts objects only at the destination', async () => {
      const src = new MemoryStore();
      const dst = new MemoryStore();
      for (const k of ['a/1.txt', 'a/2.log', 'b/1.txt', 'c.txt']) await src.put(k, k);
      await dst.put('a/9.txt', 'extra');
      const s = await (await fresh()).run(src, dst, { include: ['a/**', 'b/**'], exclude: ['**/*.log'] });
      expect(s).toMatchObject({ listed: 2, copied: 2, extraAtDestination: 1 });
      expect(await keys(dst)).toEqual(['a/1.txt', 'a/9.txt', 'b/1.txt']);
    });

    it('copies again an object rewritten at the same size (digests, not sizes)', async () => {
      const src = new MemoryStore();
      const dst = new MemoryStore();
      await src.put('k', 'aaaa');
      await src.put('j', 'same');
      const r = await fresh();
      expect((await r.run(src, dst)).copied).toBe(2);
      await src.put('k', 'bbbb');
      const again = await r.run(src, dst);
      expect(again).toMatchObject({ copied: 1, identical: 1 });
      expect((await getBuffer(dst, 'k')).toString()).toBe('bbbb');
    });

    it('--delete-source removes each source object only after its copy verified', async () => {
      const src = new MemoryStore();
      const dst = new MemoryStore();
      for (let i = 0; i < 20; i++) await src.put(`k${i}`, `v${i}`);
      const s = await (await fresh()).run(src, dst, { deleteSource: true });
      expect(s).toMatchObject({ copied: 20, sourceDeleted: 20, failed: 0 });
      expect(await keys(src)).toEqual([]);
      expect((await getBuffer(dst, 'k7')).toString()).toBe('v7');
    });

    it('an object the destination refuses fails with a reason; the others are copied', async () => {
      const src = new MemoryStore();
      const inner = new MemoryStore();
      for (let i = 0; i < 10; i++) await src.put(`k${i}`, `v${i}`);
      const dst = overrideStore(inner, {
        put: (key: string, body: Body, o?: PutOptions) => (key === 'k3'
          ? Promise.reject(Object.assign(new Error('no'), { code: 'AccessDenied', retryable: false, name: 'CloudmuxError' }))
          : inner.put(key, body, o)),
      });
      const s = await (await fresh()).run(src, dst, { retries: 1 });
      expect(s.failed).toBe(1);
      expect(s.copied).toBe(9);
      expect(s.failures.map((f) => f.key)).toEqual(['k3']);
      expect(s.failures[0]!.reason.length).toBeGreaterThan(0);
    });
  });
}
