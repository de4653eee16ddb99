import { describe, expect, it } from 'vitest';
import { compareKeys, keyProblem, validateKey, validatePrefix, InvalidKeyError, joinKey } from '../../src/core/index.js';

describe('portable keys', () => {
  it('accepts what every provider stores unchanged', () => {
    for (const k of ['a', 'a/b/c', 'with space', 'ünïcødé/日本', 'emoji😀', 'x'.repeat(1024), 'a.b', '.hidden', '..x', 'x..']) {
      expect(keyProblem(k), k).toBeUndefined();
    }
  });

  it('rejects what some provider rewrites or refuses, naming the problem', () => {
    const cases: [string, RegExp][] = [
      ['', /empty/], ['/a', /starts with/], ['a/', /ends with/], ['a//b', /empty segment/], ['a/./b', /"\."/],
      ['a/../b', /"\.\."/], ['..', /"\.\."/], ['a\\b', /backslash/], ['a\u0000', /control/], ['a\u001f', /control/],
      ['a\u0085', /control/], ['a\ud800b', /UTF-8/], ['x'.repeat(1025), /1025 bytes/], ['é'.repeat(513), /1026 bytes/],
    ];
    for (const [k, re] of cases) expect(keyProblem(k), JSON.stringify(k)).toMatch(re);
    expect(() => validateKey('a//b', 's3')).toThrow(InvalidKeyError);
    try {
      validateKey('a//b', 's3');
    } catch (e) {
      expect((e as InvalidKeyError).code).toBe('InvalidKey');
      expect((e as InvalidKeyError).provider).toBe('s3');
      expect((e as InvalidKeyError).retryable).toBe(false);
    }
  });

  it('prefixes may be empty or end with /', () => {
    expect(() => validatePrefix('')).not.toThrow();
    expect(() => validatePrefix('a/b/')).not.toThrow();
    expect(() => validatePrefix('a/b')).not.toThrow();
    expect(() => validatePrefix('/')).toThrow(InvalidKeyError);
    expect(() => validatePrefix('a//')).toThrow(InvalidKeyError);
  });

  it('compares in UTF-8 byte order, not UTF-16 order', () => {
    const keys = ['b', 'a', '\uff5e', '\u{1f600}', '\ue000', 'ab', '', '\u{10000}', 'é'];
    const byBytes = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    expect([...keys].sort(compareKeys)).toEqual(byBytes);
    // The case JavaScript gets wrong:
    expect('\u{1f600}' < '\uff5e').toBe(true);
    expect(compareKeys('\u{1f600}', '\uff5e')).toBeGreaterThan(0);
  });

  it('joins prefixes with one slash', () => {
    expect(joinKey('', 'k')).toBe('k');
    expect(joinKey('p', 'k')).toBe('p/k');
    expect(joinKey('p/', 'k')).toBe('p/k');
  });
});
