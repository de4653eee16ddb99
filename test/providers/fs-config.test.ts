import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsStore, fromUrl } from '../../providers/fs/index.js';
import { getText } from '../../src/core/index.js';
import { openStore } from '../../src/registry.js';
import { expectCode } from '../../src/testing/index.js';

describe('fs: construction from URLs and options', () => {
  let base: string;
  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), 'cloudmux-fs-config-'));
  });
  afterAll(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it('opens file:/// URLs through the registry, creating the root', async () => {
    const root = join(base, 'made', 'by url');
    const store = await openStore(`${pathToFileURL(root).href}?fsync=false`);
    expect(store).toBeInstanceOf(FsStore);
    expect((store as FsStore).options.fsync).toBe(false);
    await store.put('k', 'v');
    expect(await getText(store, 'k')).toBe('v');
    expect((await stat(root)).isDirectory()).toBe(true);
    expect(store.toString()).toBe(pathToFileURL(root).href);
  });

  it('opens plain paths as file stores', async () => {
    const store = await openStore(join(base, 'plain'));
    expect(store.provider).toBe('fs');
  });

  it('rejects unknown parameters, bad values and remote hosts with InvalidConfig', () => {
    const root = pathToFileURL(join(base, 'x')).href;
    expect(() => fromUrl(new URL(`${root}?fsynk=false`))).toThrow(/unknown fs store parameter fsynk/);
    expect(() => fromUrl(new URL(`${root}?fsync=maybe`))).toThrow(/true or false/);
    expect(() => fromUrl(new URL(`${root}?lock_timeout_ms=-1`))).toThrow(/non-negative integer/);
    expect(() => fromUrl(new URL('file://fileserver/share/x'))).toThrow(/host fileserver/);
    expect(() => fromUrl(new URL(root), { colour: 'blue' })).toThrow(/unknown fs store option colour/);
    let caught: unknown;
    try {
      fromUrl(new URL(`${root}?nope=1`));
    } catch (e) {
      caught = e;
    }
    expect((caught as { code?: string } | undefined)?.code).toBe('InvalidConfig');
  });

  it('typed options override the URL', () => {
    const store = fromUrl(new URL(`${pathToFileURL(join(base, 'y')).href}?fsync=false&lock_timeout_ms=5`), { fsync: true });
    expect(store.options.fsync).toBe(true);
    expect(store.options.lockTimeoutMs).toBe(5);
  });

  it('with createRoot false, a missing root is InvalidConfig on first use', async () => {
    const store = new FsStore({ root: join(base, 'absent'), createRoot: false });
    await expectCode(store.put('k', 'v'), 'InvalidConfig');
    await expectCode(store.head('k'), 'InvalidConfig');
  });

  it('presign is NotSupported and capabilities say so', async () => {
    const store = new FsStore({ root: join(base, 'caps') });
    expect(store.capabilities).toEqual({ conditionalPut: true, conditionalDelete: true, versioning: false, nativeChecksums: [], presign: false, streaming: true });
    await expectCode(store.presign('k', { method: 'GET', expiresIn: 60 }), 'NotSupported');
  });
});
