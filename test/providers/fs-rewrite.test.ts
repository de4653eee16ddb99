import { execFile } from 'node:child_process';
import { chmod, mkdtemp, open, rm, stat } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsStore } from '../../providers/fs/index.js';
import type { FsLayout } from '../../providers/fs/config.js';
import { judgeSidecar, type Sidecar } from '../../providers/fs/sidecar.js';
import { MemoryStore } from '../../providers/memory/index.js';
import { getBuffer, listAll, type ObjectSummary } from '../../src/core/index.js';
import { migrate } from '../../src/replication/migrate.js';
import { verifyTrees } from '../../src/replication/verify.js';
import { expectCode, sha256Hex } from '../../src/testing/index.js';
import { rotUnnoticed } from './fs-disk.js';

/** What another program does: open the existing file and overwrite its bytes, same inode, same size. */
async function rewriteInPlace(path: string, bytes: string): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(Buffer.from(bytes), 0, Buffer.byteLength(bytes), 0);
  } finally {
    await fh.close();
  }
}

async function listed(store: FsStore, key: string): Promise<ObjectSummary> {
  const item = (await listAll(store)).find((i) => i.type === 'object' && i.key === key);
  expect(item).toBeDefined();
  return item as ObjectSummary;
}

const OLD = 'the bytes first written';
const NEW = 'THE BYTES LATER WRITTEN';

for (const layout of ['plain', 'escaped'] as FsLayout[]) describe(`fs (layout=${layout}): a rewrite by another program`, () => {
  let root: string;
  let store: FsStore;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), `cloudmux-fs-rewrite-${layout}-`));
    store = new FsStore({ root, layout, fsync: false });
  });
  afterEach(async () => {
    await store.close();
    await rm(root, { recursive: true, force: true });
  });

  it('same size, same inode, at once after the put: head, list, get and ifNoneMatch see the new bytes', async () => {
    const put = await store.put('d/k', OLD, { contentType: 'text/x-kept', metadata: { owner: 'kept' } });
    const path = await store.dataPath('d/k');
    const ino = (await stat(path)).ino;
    await rewriteInPlace(path, NEW); // No wait: the same mtime second, likely the same clock tick.
    expect((await stat(path)).ino).toBe(ino);

    const head = await store.head('d/k');
    expect(head.checksums.sha256).toBe(sha256Hex(NEW));
    expect(head.metadata.cloudmux_sha256).toBe(sha256Hex(NEW));
    expect(head.etag).not.toBe(put.etag);
    expect(head.contentType).toBe('text/x-kept');
    expect(head.metadata.owner).toBe('kept');

    const item = await listed(store, 'd/k');
    expect(item.etag).toBe(head.etag);
    expect(item.checksums?.sha256).toBe(sha256Hex(NEW));

    const got = await store.get('d/k', { ifNoneMatch: put.etag });
    expect(got.meta.etag).toBe(head.etag);
    got.body.destroy();
    await expectCode(store.get('d/k', { ifNoneMatch: head.etag }), 'NotModified');
    expect((await getBuffer(store, 'd/k', { verify: true })).toString()).toBe(NEW);
  });

  it('is noticed first by a listing too, and by ifMatch on a put', async () => {
    const put = await store.put('k', OLD);
    await rewriteInPlace(await store.dataPath('k'), NEW);
    const item = await listed(store, 'k');
    expect(item.etag).not.toBe(put.etag);
    expect(item.checksums?.sha256).toBe(sha256Hex(NEW));
    await expectCode(store.put('k', 'third', { ifMatch: put.etag }), 'PreconditionFailed');
  });

  it('a rewrite that restores the mtime to the nanosecond is still noticed (ctime)', async (ctx) => {
    const put = await store.put('k', OLD);
    const path = await store.dataPath('k');
    const before = await stat(path, { bigint: true });
    await rewriteInPlace(path, NEW);
    const ns = before.mtimeNs;
    await promisify(execFile)('touch', ['-m', '-d', `@${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`, path]).catch(() => undefined);
    if ((await stat(path, { bigint: true })).mtimeNs !== ns) ctx.skip(); // No GNU touch to set nanoseconds here.
    const head = await store.head('k');
    expect(head.etag).not.toBe(put.etag);
    expect(head.checksums.sha256).toBe(sha256Hex(NEW));
  });

  it('a change of mode or times alone keeps the etag and digest (the bytes are checked, not blamed)', async () => {
    const put = await store.put('k', OLD);
    const path = await store.dataPath('k');
    await chmod(path, 0o600);
    await promisify(execFile)('touch', ['-m', path]);
    const head = await store.head('k');
    expect(head.etag).toBe(put.etag);
    expect(head.checksums.sha256).toBe(sha256Hex(OLD));
    expect((await listed(store, 'k')).etag).toBe(put.etag);
  });

  it('bytes changed where no stat can tell: one verified read fails, then the store recomputes (never fails for ever)', async () => {
    const put = await store.put('k', OLD);
    await rotUnnoticed(store, 'k');
    expect((await store.head('k')).etag).toBe(put.etag); // Nothing can tell before the bytes are read.
    await expectCode(getBuffer(store, 'k', { verify: true }), 'IntegrityError');
    const head = await store.head('k');
    expect(head.etag).not.toBe(put.etag);
    expect(head.checksums.sha256).not.toBe(sha256Hex(OLD));
    expect((await getBuffer(store, 'k', { verify: true })).byteLength).toBe(OLD.length);
    // And another process over the same root (fresh memory) agrees.
    const other = new FsStore({ root, layout, fsync: false });
    expect((await other.head('k')).etag).toBe(head.etag);
  });

  it('migrate copies a same-size rewrite, verify reports it, and --delete-source never deletes the only copy', async () => {
    const dst = new MemoryStore();
    await store.put('a', OLD);
    await store.put('b', OLD);
    let summary = await migrate(store, dst, { preflight: false });
    expect(summary.copied).toBe(2);

    await rewriteInPlace(await store.dataPath('a'), NEW);
    const report = await verifyTrees(store, dst);
    expect(report.differing).toBe(1);

    await rewriteInPlace(await store.dataPath('b'), NEW);
    summary = await migrate(store, dst, { preflight: false, deleteSource: true });
    expect(summary.failed).toBe(0);
    expect((await getBuffer(dst, 'a')).toString()).toBe(NEW);
    expect((await getBuffer(dst, 'b')).toString()).toBe(NEW);

    // To a fresh destination: no IntegrityError from a stale sidecar, on the first run.
    await store.put('c', OLD);
    await rewriteInPlace(await store.dataPath('c'), NEW);
    const fresh = new MemoryStore();
    summary = await migrate(store, fresh, { preflight: false });
    expect(summary.failed).toBe(0);
    expect((await getBuffer(fresh, 'c')).toString()).toBe(NEW);
  });
});

describe('fs sidecar judgement (unit)', () => {
  const st = (ino: bigint, size: bigint, mtimeNs: bigint, ctimeNs: bigint) => ({ ino, size, mtimeNs, ctimeNs }) as unknown as BigIntStats;
  const sc: Sidecar = {
    v: 1, key: 'k', inode: '7', size: 3, mtimeNs: '1000', ctimeNs: '2000', etag: 'e', lastModified: new Date(0).toISOString(),
    contentType: 'text/plain', metadata: {}, checksums: { sha256: 'x' },
  };
  const raw = JSON.stringify(sc);

  it('believes a sidecar only for the recorded inode, size, mtime and ctime, sealed after the ctime', () => {
    expect(judgeSidecar(raw, 'k', st(7n, 3n, 1000n, 2000n), 2001n).current).toBeDefined();
    // The same clock tick as the seal: a rewrite then would keep every stamp (racy): doubted.
    expect(judgeSidecar(raw, 'k', st(7n, 3n, 1000n, 2000n), 2000n).stale).toBeDefined();
    expect(judgeSidecar(raw, 'k', st(7n, 3n, 1001n, 2000n), 9999n).stale).toBeDefined();
    expect(judgeSidecar(raw, 'k', st(7n, 3n, 1000n, 2001n), 9999n).stale).toBeDefined();
    expect(judgeSidecar(raw, 'k', st(7n, 4n, 1000n, 2000n), 9999n).stale).toBeDefined();
    expect(judgeSidecar(raw, 'k', st(8n, 3n, 1000n, 2000n), 9999n)).toEqual({});
    // Sidecars written before stamps existed are checked once.
    const { mtimeNs: _m, ctimeNs: _c, ...unstamped } = sc;
    expect(judgeSidecar(JSON.stringify(unstamped), 'k', st(7n, 3n, 1000n, 2000n), 9999n).stale).toBeDefined();
  });
});
