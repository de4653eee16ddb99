import { throwIfAborted } from '../../core/errors.js';
import type { EncryptedStore } from './store.js';
import { VAULT_PREFIX } from './vault.js';

export interface RotateProgress {
  /** Objects listed so far. */
  listed: number;
  /** Re-wrapped onto the target key by this run. */
  rotated: number;
  /** Already on the target key (done by an earlier run, or written since). */
  skipped: number;
  failed: number;
}

export interface RotateReport extends RotateProgress {
  /** The first failures (key and one-line reason), at most 100. */
  failures: { key: string; error: string }[];
}

export interface RotateAllOptions {
  /** Only keys under this prefix (default: the whole store). */
  prefix?: string;
  /** Objects rotated at once (default 8). */
  concurrency?: number;
  signal?: AbortSignal;
  /** Called after every object. */
  onProgress?(p: RotateProgress): void;
}

const MAX_FAILURES = 100;

/**
 * Re-wraps every object under a prefix onto `toKeyId`: metadata rewrites only, no data moves.
 * Resumable by construction: objects already on the target key are skipped, so a killed run is
 * simply run again. One object's failure does not stop the others; the report counts them.
 * Fails up front with AccessDenied when the keyring cannot wrap under `toKeyId`.
 */
export async function rotateAll(store: EncryptedStore, toKeyId: string, opts: RotateAllOptions = {}): Promise<RotateReport> {
  await store.assertKey(toKeyId);
  const report: RotateReport = { listed: 0, rotated: 0, skipped: 0, failed: 0, failures: [] };
  const listing = store.inner.list({ prefix: opts.prefix, signal: opts.signal })[Symbol.asyncIterator]();
  const next = async (): Promise<string | undefined> => {
    for (;;) {
      const r = await listing.next();
      if (r.done) return undefined;
      // Membership records are not encrypted objects: not rotated, not counted.
      if (r.value.type === 'object' && !r.value.key.startsWith(VAULT_PREFIX)) {
        report.listed++;
        return r.value.key;
      }
    }
  };
  const worker = async (): Promise<void> => {
    for (let key = await next(); key !== undefined; key = await next()) {
      throwIfAborted(opts.signal);
      try {
        const r = await store.rotate(key, toKeyId, { signal: opts.signal });
        if (r.rotated) report.rotated++;
        else report.skipped++;
      } catch (e) {
        throwIfAborted(opts.signal);
        report.failed++;
        if (report.failures.length < MAX_FAILURES) report.failures.push({ key, error: e instanceof Error ? e.message : String(e) });
      }
      opts.onProgress?.({ listed: report.listed, rotated: report.rotated, skipped: report.skipped, failed: report.failed });
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 8) }, worker));
  return report;
}
