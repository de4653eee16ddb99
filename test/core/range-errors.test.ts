import { describe, expect, it } from 'vitest';
import { CloudmuxError, InvalidRangeError, ThrottledError, TransientError, NotFoundError, isRetryable, parseRetryAfter, rangeHeader, resolveRange } from '../../src/core/index.js';

describe('ranges', () => {
  it('clamps, resolves suffixes, and rejects offsets past the end', () => {
    expect(resolveRange({ offset: 2, length: 100 }, 10)).toEqual({ offset: 2, length: 8 });
    expect(resolveRange({ offset: 2 }, 10)).toEqual({ offset: 2, length: 8 });
    expect(resolveRange({ suffix: 3 }, 10)).toEqual({ offset: 7, length: 3 });
    expect(resolveRange({ suffix: 30 }, 10)).toEqual({ offset: 0, length: 10 });
    expect(resolveRange({ offset: 0 }, 0)).toEqual({ offset: 0, length: 0 });
    expect(resolveRange({ suffix: 5 }, 0)).toEqual({ offset: 0, length: 0 });
    expect(() => resolveRange({ offset: 10 }, 10)).toThrow(InvalidRangeError);
    expect(() => resolveRange({ offset: 1, length: 0 }, 10)).toThrow(InvalidRangeError);
    expect(() => resolveRange({ offset: 1.5 }, 10)).toThrow(InvalidRangeError);
  });

  it('renders HTTP Range headers', () => {
    expect(rangeHeader({ offset: 0, length: 10 })).toBe('bytes=0-9');
    expect(rangeHeader({ offset: 5 })).toBe('bytes=5-');
    expect(rangeHeader({ suffix: 7 })).toBe('bytes=-7');
  });
});

describe('errors', () => {
  it('carry code, provider, key, retryability and cause', () => {
    const cause = new Error('socket hang up');
    const e = new TransientError('reset', { provider: 's3', key: 'k', cause });
    expect(e).toBeInstanceOf(CloudmuxError);
    expect(e).toBeInstanceOf(Error);
    expect(e.code).toBe('Transient');
    expect(e.name).toBe('TransientError');
    expect(e.provider).toBe('s3');
    expect(e.key).toBe('k');
    expect(e.cause).toBe(cause);
    expect(isRetryable(e)).toBe(true);
    expect(isRetryable(new ThrottledError('slow down', { retryAfterMs: 1000 }))).toBe(true);
    expect(isRetryable(new NotFoundError('x'))).toBe(false);
    expect(isRetryable(new Error('plain'))).toBe(false);
  });

  it('parses Retry-After seconds and dates', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4_000)).toBe(6000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });
});
