import { expect } from 'vitest';
import type { BlobStore } from '../../src/core/index.js';
import type { MigrationJournal } from '../../src/replication/journal.js';

/**
 * A store that forwards every call to `inner` except the ones overridden: for tests that need a
 * destination that lies or a source that rots, without touching the reference implementation.
 */
export function overrideStore(inner: BlobStore, overrides: Partial<BlobStore> & Record<string, unknown>): BlobStore {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (typeof prop === 'string' && prop in overrides) return overrides[prop];
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** A small deterministic payload of `n` bytes (seeded), so tests need no fixtures on disk. */
export function payload(n: number, seed = 1): Buffer {
  const buf = Buffer.alloc(n);
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    buf[i] = x >>> 24;
  }
  return buf;
}

/** The journal's audit trail: once a key's source version is verified, no copy of that version starts again. */
export function expectNoVerifiedRecopy(j: MigrationJournal): void {
  const verified = new Set<string>();
  for (const e of j.events()) {
    const id = `${e.key}\u0000${e.srcEtag ?? ''}`;
    if (e.event === 'verified' || e.event === 'identical') verified.add(id);
    if (e.event === 'copy-start') expect(verified.has(id), `${e.key} was copied again after it verified`).toBe(false);
  }
}
