import { describe, expect, it } from 'vitest';
import { openStore, parseStoreUrl, redactUrl, splitObjectUrl } from '../../src/registry.js';
import { CloudmuxError } from '../../src/core/index.js';

describe('store URLs', () => {
  it('takes plain paths as file URLs', () => {
    expect(parseStoreUrl('/var/data').href).toBe('file:///var/data');
    expect(parseStoreUrl('rel/dir').protocol).toBe('file:');
  });

  it('splits object URLs into store and key', () => {
    const s3 = splitObjectUrl('s3://bucket/a/b%20c.txt?region=eu-west-1');
    expect(s3.store.href).toBe('s3://bucket/?region=eu-west-1');
    expect(s3.key).toBe('a/b c.txt');
    const az = splitObjectUrl('az://acct/container/dir/x');
    expect(az.store.href).toBe('az://acct/container');
    expect(az.key).toBe('dir/x');
    expect(splitObjectUrl('memory://m/k').key).toBe('k');
  });

  it('rejects unknown schemes with InvalidConfig and never echoes secrets', async () => {
    const err = await openStore('ftp://user:hunter2@host/x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CloudmuxError);
    expect((err as CloudmuxError).code).toBe('InvalidConfig');
    expect((err as Error).message).not.toContain('hunter2');
    expect(redactUrl('s3://b/p?secretKey=abc&region=x')).toBe('s3://b/p?secretKey=***&region=x');
  });

  it('opens memory stores, shared by name', async () => {
    const a = await openStore('memory://shared');
    const b = await openStore('memory://shared');
    expect(a).toBe(b);
    expect(await openStore('memory://')).not.toBe(await openStore('memory://'));
  });
});
