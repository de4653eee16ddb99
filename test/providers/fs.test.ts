import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsStore } from '../../providers/fs/index.js';
import type { FsLayout } from '../../providers/fs/config.js';
import type { BlobStore } from '../../src/core/index.js';
import { testStore, type CaseName } from '../../src/testing/index.js';

/** Flips one byte of the data file in place, as a failing disk would (same inode, same size). */
async function corrupt(store: BlobStore, key: string): Promise<void> {
  const path = await (store as FsStore).dataPath(key);
  const fh = await open(path, 'r+');
  try {
    const { size } = await fh.stat();
    const at = size >> 1;
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, at);
    b[0]! ^= 0x01;
    await fh.write(b, 0, 1, at);
  } finally {
    await fh.close();
  }
}

/**
 * The one case plain may not pass: it stores a key with a 299-byte segment, which no file name can
 * hold (plain refuses it with InvalidKey, proven in fs-plain.test.ts; escaped stores it).
 */
const PLAIN_DEVIATIONS: Partial<Record<CaseName, string>> = {
  oddKeys: 'plain layout: a key segment must fit in one file name (255 bytes); use layout=escaped',
};

for (const layout of ['plain', 'escaped'] as FsLayout[]) {
  const roots: string[] = [];
  testStore(`fs (layout=${layout})`, {
    create: async () => {
      const root = await mkdtemp(join(tmpdir(), `cloudmux-fs-${layout}-`));
      roots.push(root);
      return new FsStore({ root, layout });
    },
    destroy: async (store) => {
      await store.close();
      await Promise.all(roots.splice(0).map((r) => rm(r, { recursive: true, force: true })));
    },
    deviations: layout === 'plain' ? PLAIN_DEVIATIONS : undefined,
    corrupt,
  });
}
