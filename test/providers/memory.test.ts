import { expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import type { BlobStore } from '../../src/core/index.js';
import { testStore } from '../../src/testing/index.js';

/** Reaches into the reference store to damage one stored byte, as a failing disk would. */
async function corrupt(store: BlobStore, key: string): Promise<void> {
  const objects = (store as unknown as { objects: Map<string, { data: Buffer }> }).objects;
  const entry = objects.get(key)!;
  const copy = Buffer.from(entry.data);
  copy[copy.length >> 1]! ^= 0x01;
  entry.data = copy;
}

testStore('memory', { create: () => new MemoryStore(), corrupt });

it('the suite runs with a GC handle so memory bounds are checked', () => {
  expect(typeof (globalThis as { gc?: unknown }).gc).toBe('function');
});
