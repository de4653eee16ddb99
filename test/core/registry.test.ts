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

  it('keeps the key as typed: # is a character, ? starts the options, escapes decode once; never normalises', () => {
    const hash = splitObjectUrl('s3://b/sp ace#frag?endpoint=http://127.0.0.1:9000&forcePathStyle=true');
    expect(hash.key).toBe('sp ace#frag');
    expect(hash.store.searchParams.get('endpoint')).toBe('http://127.0.0.1:9000');
    expect(splitObjectUrl('memory://m/q%3F%2523').key).toBe('q?%23');
    expect(parseStoreUrl('file:/tmp/a#b').href).toBe('file:///tmp/a%23b');
    for (const bad of ['s3://b/a/../b', 's3://b/./x', 's3://b/a/%2e%2E/c', 's3://b/new\nline', 's3://b/a//b']) {
      expect(() => parseStoreUrl(bad), bad).toThrow(expect.objectContaining({ code: 'InvalidKey' }));
    }
    expect(() => parseStoreUrl('memory://m/a%zz')).toThrow(/memory:\/\/m\/a%zz: malformed percent-escape/);
    expect(() => parseStoreUrl('s3://b/k?endpoint=http://h/#x')).toThrow(/a # in its options/);
    expect(redactUrl('s3://b/k#x?secretKey=abc')).toBe('s3://b/k#x?secretKey=***');
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
