import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import { changeFeed, hasChangeFeed, type Change } from '../../src/core/change-feed.js';
import { isCloudmuxError } from '../../src/core/errors.js';
import { getText } from '../../src/core/helpers.js';
import { EncryptedStore, LocalKeyring, generateKey } from '../../src/layers/encryption/index.js';
import { RetryStore } from '../../src/layers/index.js';
import { routerFixture, type Fixture } from './fixture.js';

const fixtures: Fixture[] = [];
afterEach(async () => {
  for (const f of fixtures.splice(0)) await f.close();
});
async function fixture(): Promise<Fixture> {
  const f = await routerFixture({ providers: ['a', 'b'], policies: [{ replicas: 2, writeQuorum: 1 }] });
  fixtures.push(f);
  return f;
}

/** Follows the feed from `cursor` until it says nothing more is ready. */
async function drain(next: (cursor: string | undefined) => Promise<{ changes: Change[]; cursor: string; more: boolean }>, cursor?: string): Promise<{ changes: Change[]; cursor: string }> {
  const all: Change[] = [];
  for (;;) {
    const page = await next(cursor);
    all.push(...page.changes);
    cursor = page.cursor;
    if (!page.more) return { changes: all, cursor };
  }
}

describe('router change feed', () => {
  it('is declared, and reports puts, metadata updates, copies and deletes as reads will see them', async () => {
    const f = await fixture();
    const r = f.router;
    expect(hasChangeFeed(r)).toBe(true);
    expect(hasChangeFeed(new MemoryStore())).toBe(false);
    expect(() => changeFeed(new MemoryStore())).toThrow(/has no change feed/);

    const start = await r.changesSince(undefined);
    expect(start).toMatchObject({ changes: [], more: false, reset: false });
    const a = await r.put('doc/a', 'alpha');
    await r.put('doc/b', 'beta');
    await r.updateMetadata('doc/b', { metadata: { tag: 'x' } });
    await r.copy('doc/a', 'doc/c');
    await r.delete('doc/a');
    const { changes, cursor } = await drain((c) => r.changesSince(c, { limit: 2 }), start.cursor);
    expect(changes.map((c) => `${c.key}${c.deleted ? ' deleted' : ''}`)).toEqual(['doc/b', 'doc/c', 'doc/a deleted']);
    const b = await r.head('doc/b');
    expect(changes[0]).toEqual({ key: 'doc/b', deleted: false, version: b.version, size: 4, sha256: b.checksums.sha256, etag: b.etag });
    expect(changes[1]).toMatchObject({ key: 'doc/c', size: 5, sha256: a.checksums.sha256 });
    expect(changes[2]).toEqual({ key: 'doc/a', deleted: true, version: expect.any(String) });
    expect(Number(changes[2]!.version)).toBeGreaterThan(Number(a.version));
    expect(await r.changesSince(cursor)).toMatchObject({ changes: [], more: false, reset: false });
  });

  it('checks its arguments before touching the catalog', async () => {
    const f = await fixture();
    for (const limit of [0, -1, 1.5, 10_001, Number.NaN]) {
      const err = await f.router.changesSince(undefined, { limit }).catch((e: unknown) => e);
      expect(isCloudmuxError(err, 'InvalidArgument'), String(limit)).toBe(true);
    }
    expect(isCloudmuxError(await f.router.changesSince('nope').catch((e: unknown) => e), 'InvalidArgument')).toBe(true);
    const ac = new AbortController();
    ac.abort();
    expect(isCloudmuxError(await f.router.changesSince(undefined, { signal: ac.signal }).catch((e: unknown) => e), 'Aborted')).toBe(true);
  });

  it('passes through layers; through encryption without ciphertext sizes and digests', async () => {
    const f = await fixture();
    const k = generateKey('feed');
    const enc = new EncryptedStore(f.router, { keyring: new LocalKeyring({ [k.id]: k.key }), keyId: k.id });
    const layered = new RetryStore(enc);
    expect(hasChangeFeed(layered)).toBe(true);
    await layered.put('secret', 'plaintext');
    const { changes } = await drain((c) => changeFeed(layered).changesSince(c));
    expect(changes).toEqual([{ key: 'secret', deleted: false, version: expect.any(String), etag: expect.stringMatching(/^cmx-/) }]);
    expect(changes[0]!.etag).toBe((await layered.head('secret')).etag);
    expect(await getText(layered, 'secret')).toBe('plaintext');
    // A layer over a store without a feed declares none and refuses the call.
    const plain = new RetryStore(new MemoryStore());
    expect(hasChangeFeed(plain)).toBe(false);
    expect(isCloudmuxError(await plain.changesSince(undefined).catch((e: unknown) => e), 'NotSupported')).toBe(true);
  });
});
