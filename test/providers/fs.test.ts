import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsStore } from '../../providers/fs/index.js';
import type { FsLayout } from '../../providers/fs/config.js';
import type { BlobStore } from '../../src/core/index.js';
import { testStore, type CaseName } from '../../src/testing/index.js';
import { rotUnnoticed } from './fs-disk.js';

/**
 * A stored byte flipped behind the store's back so that no stat can tell (see fs-disk.ts): the
 * sidecar still believed, a verified read must fail. (A visible rewrite is another matter: the
 * store notices it and recomputes, see fs-rewrite.test.ts.)
 */
async function corrupt(store: BlobStore, key: string): Promise<void> {
  await rotUnnoticed(store as FsStore, key);
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
