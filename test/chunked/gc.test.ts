import { describe, expect, it } from 'vitest';
import { getBuffer } from '../../src/core/helpers.js';
import { isCloudmuxError } from '../../src/core/errors.js';
import type { Body, ObjectMeta, PutOptions } from '../../src/core/types.js';
import { MemoryStore } from '../../providers/memory/index.js';
import { ForwardingStore } from '../../src/layers/forwarding-store.js';
import { ChunkedStore, collectGarbage, type ChunkedStoreOptions } from '../../src/layers/chunked/index.js';
import { EncryptedStore, LocalKeyring, generateKey } from '../../src/layers/encryption/index.js';
import { seededBytes } from './helpers.js';
import { danglingReferences, snapshot } from './gc-checker.js';

const HOUR = 3_600_000;
const OPTS: ChunkedStoreOptions = { sizes: { min: 1024, target: 4096, max: 16384 }, threshold: 8192, graceMs: HOUR };

/** Holds the put of each object key (not chunks) until `release` is called. */
class GateStore extends ForwardingStore {
  protected readonly layerName = 'Gate';
  reached!: Promise<void>;
  private arrive!: () => void;
  release!: () => void;
  private gate!: Promise<void>;
  constructor(inner: MemoryStore, private readonly chunkPrefix: string) {
    super(inner);
    this.arm();
  }
  arm(): void {
    this.reached = new Promise((r) => (this.arrive = r));
    this.gate = new Promise((r) => (this.release = r));
  }
  override async put(key: string, body: Body, opts?: PutOptions): Promise<ObjectMeta> {
    if (!key.startsWith(this.chunkPrefix)) {
      this.arrive();
      await this.gate;
    }
    return this.inner.put(key, body, opts);
  }
}

describe('collectGarbage', () => {
  it('removes the chunks no manifest names once they are past the grace period, and nothing referenced', async () => {
    let now = Date.now();
    const mem = new MemoryStore();
    const store = new ChunkedStore(mem, { ...OPTS, now: () => now });
    const v1 = seededBytes(200_000, 1);
    const v2 = Buffer.concat([seededBytes(100_000, 2), v1.subarray(100_000)]);
    await store.put('doc', v1);
    await store.put('keep', seededBytes(150_000, 3));
    await store.put('gone', seededBytes(120_000, 4));
    await store.put('doc', v2); // v1's first half is now unreferenced
    await store.delete('gone');
    const young = await collectGarbage(store, { now: () => now });
    expect(young.deleted).toBe(0);
    expect(young.keptYoung).toBeGreaterThan(20);
    now += 2 * HOUR;
    const dry = await collectGarbage(store, { now: () => now, dryRun: true });
    const before = await snapshot(mem, store.chunkPrefix);
    expect(dry.deleted).toBeGreaterThan(20);
    expect((await snapshot(mem, store.chunkPrefix)).chunks.size).toBe(before.chunks.size);
    const real = await collectGarbage(store, { now: () => now });
    expect(real.deleted).toBe(dry.deleted);
    expect(real.deletedBytes).toBe(dry.deletedBytes);
    expect(real.missing).toEqual([]);
    const after = await snapshot(mem, store.chunkPrefix);
    expect(danglingReferences(after)).toEqual([]);
    const referenced = new Set([...after.manifests.values()].flat());
    expect([...after.chunks].every((id) => referenced.has(id))).toBe(true);
    expect((await getBuffer(store, 'doc', { verify: true })).equals(v2)).toBe(true);
    expect((await collectGarbage(store, { now: () => now })).deleted).toBe(0);
  });

  it('keeps the chunks of a put whose manifest is not written yet (grace period); a GC without one loses them — the checker sees it', async () => {
    const mem = new MemoryStore();
    const gated = new GateStore(mem, '.cmx-chunks/');
    const store = new ChunkedStore(gated, OPTS);
    const data = seededBytes(100_000, 5);
    const put = store.put('late', data);
    await gated.reached; // every chunk stored, manifest held back
    const report = await collectGarbage(store);
    expect(report.deleted).toBe(0);
    gated.release();
    await put;
    expect(danglingReferences(await snapshot(mem, store.chunkPrefix))).toEqual([]);
    expect((await getBuffer(store, 'late', { verify: true })).equals(data)).toBe(true);

    // Known-bad: the same history with a GC that has no grace period (its clock a day ahead).
    const mem2 = new MemoryStore();
    const gated2 = new GateStore(mem2, '.cmx-chunks/');
    const store2 = new ChunkedStore(gated2, OPTS);
    const put2 = store2.put('late', data);
    await gated2.reached;
    const bad = await collectGarbage(store2, { now: () => Date.now() + 24 * HOUR });
    expect(bad.deleted).toBeGreaterThan(0);
    gated2.release();
    await put2;
    const violations = danglingReferences(await snapshot(mem2, store2.chunkPrefix));
    expect(violations.length).toBe(bad.deleted);
    let readErr: unknown;
    try {
      await getBuffer(store2, 'late');
    } catch (e) {
      readErr = e;
    }
    expect(isCloudmuxError(readErr, 'IntegrityError')).toBe(true);
  });

  it('keeps old unreferenced chunks that a new put relies on again', async () => {
    let now = Date.now();
    const mem = new MemoryStore();
    const store = new ChunkedStore(mem, { ...OPTS, now: () => now });
    const data = seededBytes(100_000, 6);
    await store.put('a', data);
    await store.delete('a');
    now += 2 * HOUR;
    // A writer relies on the old chunks again: it touches them (real clock: now they are fresh).
    const writer = new ChunkedStore(mem, { ...OPTS, now: () => now });
    await writer.put('b', data);
    const report = await collectGarbage(store, { now: () => now });
    expect(report.deleted).toBe(0);
    expect((await getBuffer(store, 'b', { verify: true })).equals(data)).toBe(true);
  });

  it('stops before deleting anything when a manifest cannot be read', async () => {
    let now = Date.now();
    const k = generateKey('gc');
    const ring = new LocalKeyring({ [k.id]: k.key });
    const mem = new MemoryStore();
    const store = new ChunkedStore(new EncryptedStore(mem, { keyring: ring, keyId: k.id }), { ...OPTS, now: () => now });
    await store.put('enc', seededBytes(100_000, 7));
    await store.put('other', seededBytes(100_000, 8));
    await store.delete('other');
    now += 2 * HOUR;
    // A GC whose keyring lacks the key cannot read the manifest: it must not sweep.
    const blind = new ChunkedStore(new EncryptedStore(mem, { keyring: new LocalKeyring({}), keyId: k.id }), OPTS);
    let err: unknown;
    try {
      await collectGarbage(blind, { now: () => now });
    } catch (e) {
      err = e;
    }
    expect(isCloudmuxError(err, 'AccessDenied')).toBe(true);
    expect(danglingReferences(await snapshot(new EncryptedStore(mem, { keyring: ring, keyId: k.id }), store.chunkPrefix))).toEqual([]);
    const ok = await collectGarbage(store, { now: () => now });
    expect(ok.deleted).toBeGreaterThan(0);
    expect((await getBuffer(store, 'enc', { verify: true })).byteLength).toBe(100_000);
  });
});
