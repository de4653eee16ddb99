import { testStore } from '../../src/testing/index.js';
import { routerFixture, type Fixture } from './fixture.js';
import type { BlobStore } from '../../src/core/types.js';

// The router is a BlobStore like any other: the whole suite runs over it (two memory providers,
// N=2, W=1). Conditional puts and deletes are checked against the catalog version; presigning
// is declared missing (see Router's contract), so that case checks NotSupported.
const fixtures = new Map<BlobStore, Fixture>();

testStore('router (memory x2, N=2 W=1)', {
  async create() {
    const f = await routerFixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 1 }] });
    f.worker.start();
    fixtures.set(f.router, f);
    return f.router;
  },
  async destroy(store) {
    await fixtures.get(store)?.close();
  },
  async corrupt(store, key) {
    // Flip a byte on every holder behind the router's back (each keeps its recorded sha256).
    const f = fixtures.get(store)!;
    for (const mem of Object.values(f.memory)) {
      const entry = (mem as unknown as { objects: Map<string, { data: Buffer }> }).objects.get(key);
      if (entry) {
        const copy = Buffer.from(entry.data);
        copy[0] = copy[0]! ^ 0xff;
        entry.data = copy;
      }
    }
  },
});
