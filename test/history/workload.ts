import { createHash } from 'node:crypto';
import { isCloudmuxError } from '../../src/core/errors.js';
import { collect } from '../../src/core/body.js';
import type { BlobStore, GetResult } from '../../src/core/types.js';
import { seededRandom } from '../faults/random.js';
import { bodyFor, sha256Hex, valueOf, type HistoryRecorder, type OpKind } from './history.js';

/** The relative weights of the operations a client draws. */
export type OpMix = Record<OpKind, number>;

export const DEFAULT_MIX: OpMix = { put: 40, delete: 8, get: 40, list: 12 };

export interface ClientOptions {
  /** The store under test (a Router). */
  store: BlobStore;
  recorder: HistoryRecorder;
  /** The small key set the clients collide on. */
  keys: string[];
  /** Prefix every key starts with (what a list asks for). */
  prefix: string;
  /** Operations this process performs, over all its clients. */
  ops: number;
  /** Concurrent clients in this process. */
  concurrency: number;
  /** Seed of the op/key/body/abort choices (each client draws from its own stream). */
  seed: number;
  mix?: OpMix;
  /** Body sizes, uniform in [min, max] bytes. Default [64, 4096]. */
  bodySize?: [number, number];
  /** Probability that a put is aborted by its caller after `abortAfterMs`. Default 0. */
  abortRate?: number;
  /** When a caller aborts, in ms after the put starts: uniform in [min, max]. Default [0, 30]. */
  abortAfterMs?: [number, number];
  /**
   * Read with `verify: true`. Needed where a provider can serve one version's headers with
   * another's bytes (s3rver: S3RVER_DEVIATIONS.overwriteWhileReading in test/harness/s3.ts), which
   * only a digest of the bytes read can catch; such a read then fails (allowed) instead of
   * returning torn bytes. Off elsewhere, so that reads check the router's own guarantees.
   */
  verifyReads?: boolean;
  /** Called before operation `i` (0-based, in the order operations are drawn): fault schedules hang here. */
  beforeOp?(i: number): void;
}

export interface ClientStats {
  ops: number;
  byOutcome: Record<string, number>;
  elapsedMs: number;
}

/** Derives an independent PRNG seed from a seed and a label. */
export function subSeed(seed: number, label: string): number {
  return createHash('sha256').update(`${seed}:${label}`).digest().readUInt32LE(0);
}

/**
 * Runs `concurrency` clients that together perform `ops` operations on the key set, recording
 * every invocation and completion. Operation, key, body size and abort choices come from the
 * seed; their interleaving (and so the history) still depends on timing.
 */
export async function runClients(o: ClientOptions): Promise<ClientStats> {
  const mix = o.mix ?? DEFAULT_MIX;
  const kinds = Object.entries(mix).filter(([, w]) => w > 0) as [OpKind, number][];
  const total = kinds.reduce((s, [, w]) => s + w, 0);
  const [minSize, maxSize] = o.bodySize ?? [64, 4096];
  const [minAbort, maxAbort] = o.abortAfterMs ?? [0, 30];
  const byOutcome: Record<string, number> = {};
  const count = (k: string): void => {
    byOutcome[k] = (byOutcome[k] ?? 0) + 1;
  };
  let next = 0;
  const started = performance.now();

  const client = async (c: number): Promise<void> => {
    const random = seededRandom(subSeed(o.seed, `client-${c}`));
    while (next < o.ops) {
      const i = next++;
      o.beforeOp?.(i);
      let r = random() * total;
      let f: OpKind = kinds[kinds.length - 1]![0];
      for (const [k, w] of kinds) {
        r -= w;
        if (r < 0) {
          f = k;
          break;
        }
      }
      const key = o.keys[Math.floor(random() * o.keys.length)]!;
      const size = minSize + Math.floor(random() * (maxSize - minSize + 1));
      const abortAt = random() < (o.abortRate ?? 0) ? minAbort + random() * (maxAbort - minAbort) : undefined;
      const outcome = await one(o, f, key, size, abortAt);
      count(`${f}:${outcome}`);
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, (_, c) => client(c)));
  return { ops: next, byOutcome, elapsedMs: performance.now() - started };
}

const errorText = (e: unknown): string => (isCloudmuxError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e));

async function one(o: ClientOptions, f: OpKind, key: string, size: number, abortAt: number | undefined): Promise<string> {
  const { recorder, store } = o;
  switch (f) {
    case 'put': {
      const id = recorder.nextId();
      const body = bodyFor(key, id, size);
      recorder.invoke('put', { key, value: id, sha256: sha256Hex(body) }, id);
      const ctrl = abortAt === undefined ? undefined : new AbortController();
      const timer = ctrl && setTimeout(() => ctrl.abort(new Error('caller gave up')), abortAt);
      try {
        await store.put(key, body, ctrl ? { signal: ctrl.signal } : {});
        recorder.complete(id, 'ok');
        return 'ok';
      } catch (e) {
        recorder.complete(id, 'info', { error: errorText(e) });
        return 'info';
      } finally {
        clearTimeout(timer);
      }
    }
    case 'delete': {
      const id = recorder.invoke('delete', { key, value: null });
      try {
        await store.delete(key);
        recorder.complete(id, 'ok');
        return 'ok';
      } catch (e) {
        recorder.complete(id, 'info', { error: errorText(e) });
        return 'info';
      }
    }
    case 'get':
      return readKey(store, recorder, key, false, o.verifyReads);
    case 'list': {
      const id = recorder.invoke('list');
      try {
        const listed: Record<string, string | null> = Object.fromEntries(o.keys.map((k) => [k, null]));
        for await (const item of store.list({ prefix: o.prefix })) {
          if (item.type === 'object' && item.key in listed) listed[item.key] = item.checksums?.sha256 ?? '!no-sha256';
        }
        recorder.complete(id, 'ok', { listed });
        return 'ok';
      } catch (e) {
        recorder.complete(id, 'fail', { error: errorText(e) });
        return 'fail';
      }
    }
  }
}

/** A get of the whole object, recorded: the value its body names, null for NotFound, fail otherwise. */
export async function readKey(store: BlobStore, recorder: HistoryRecorder, key: string, final = false, verify = false): Promise<string> {
  const id = recorder.invoke('get', { key });
  const extra = final ? { final: true } : {};
  try {
    const res: GetResult & { cached?: boolean; provider?: string } = await store.get(key, verify ? { verify: true } : {});
    const body = await collect(res.body);
    const cached = res.cached && res.provider ? { cachedOn: res.provider } : {};
    recorder.complete(id, 'ok', { value: valueOf(key, body), ...extra, ...cached });
    return 'ok';
  } catch (e) {
    if (isCloudmuxError(e, 'NotFound')) {
      recorder.complete(id, 'ok', { value: null, ...extra });
      return 'ok';
    }
    recorder.complete(id, 'fail', { error: errorText(e), ...extra });
    return 'fail';
  }
}
