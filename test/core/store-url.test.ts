import { describe, expect, it } from 'vitest';
import { StoreUrlParams, bucketAndPrefix, overlayDefined } from '../../src/core/store-url.js';

describe('StoreUrlParams: the query of a store URL, typed and checked', () => {
  const params = (url: string): StoreUrlParams => new StoreUrlParams(new URL(url), ['on', 'n', 's'], 'x');

  it('reads strings, booleans (true/1/empty, false/0) and integers; absent is undefined', () => {
    const q = params('x://b/p?on&n=42&s=hello');
    expect([q.bool('on'), q.int('n'), q.string('s')]).toEqual([true, 42, 'hello']);
    expect(params('x://b?on=0').bool('on')).toBe(false);
    expect(params('x://b?on=true').bool('on')).toBe(true);
    const none = params('x://b');
    expect([none.bool('on'), none.int('n'), none.string('s')]).toEqual([undefined, undefined, undefined]);
  });

  it('refuses an unknown name, a non-boolean and a non-integer as InvalidConfig naming the provider', () => {
    expect(() => params('x://b?nn=1')).toThrow(/^x: unknown URL parameter "nn"; known: on, n, s$/);
    expect(() => params('x://b?on=yes').bool('on')).toThrow(/x: on: expected true\/false, got "yes"/);
    expect(() => params('x://b?n=1.5').int('n')).toThrow(/x: n must be an integer, got "1.5"/);
    try {
      params('x://b?nn=1');
    } catch (e) {
      expect((e as { code: string; provider: string })).toMatchObject({ code: 'InvalidConfig', provider: 'x' });
    }
  });

  it('bucket and prefix from host and path; explicit options win when defined', () => {
    expect(bucketAndPrefix(new URL('s3://bkt/a/b%20c/'))).toEqual({ bucket: 'bkt', prefix: 'a/b c/' });
    expect(bucketAndPrefix(new URL('s3://bkt'))).toEqual({ bucket: 'bkt', prefix: '' });
    expect(overlayDefined({ a: 1, b: 2 as number | undefined }, { a: 5, b: undefined })).toEqual({ a: 5, b: 2 });
  });
});
