import { describe, expect, it } from 'vitest';
import { NotFoundError, TransientError } from '../../src/core/errors.js';
import { exists, headIfExists, unlessNotFound } from '../../src/core/helpers.js';
import { MemoryStore } from '../../providers/memory/index.js';

describe('unlessNotFound / headIfExists: NotFound is an answer, every other failure is not', () => {
  it('passes a value through, turns NotFound into undefined, rethrows anything else', async () => {
    await expect(unlessNotFound(Promise.resolve(7))).resolves.toBe(7);
    await expect(unlessNotFound(Promise.reject(new NotFoundError('gone')))).resolves.toBeUndefined();
    const other = new TransientError('reset');
    await expect(unlessNotFound(Promise.reject(other))).rejects.toBe(other);
  });

  it('heads an existing object, answers undefined for a missing one', async () => {
    const store = new MemoryStore();
    await store.put('a', Buffer.from('x'));
    expect((await headIfExists(store, 'a'))?.size).toBe(1);
    expect(await headIfExists(store, 'b')).toBeUndefined();
    expect(await exists(store, 'a')).toBe(true);
    expect(await exists(store, 'b')).toBe(false);
  });
});
