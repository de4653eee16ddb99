import {
  IntegrityError, ProviderUnavailableError, bodyChunks, isCallerFault, isCloudmuxError, isReplayableBody,
} from '../core/index.js';
import type { Body, ObjectMeta, PutOptions } from '../core/index.js';
import type { CatalogLookup } from '../state/types.js';
import { fanOut } from './fan-out.js';
import type { Placement, ProviderSet } from './provider-set.js';
import { storedSha256 } from './reconcile.js';

export type Digest = { sha256: string; bytes: number };
export type Acked = { provider: string; meta: ObjectMeta };
/** What a put's provider writes came to. */
export interface WriteOutcome {
  acked: Acked[];
  digest: Digest;
  failure: unknown;
  /** Providers whose write failed in a way that may have landed (a lost response, a reset, an abort). */
  inDoubt: string[];
  /** Providers that stored bytes other than those sent. */
  wrong: string[];
}

/** A fenced write found the provider's copy changed behind the catalog (not the caller's fault). */
const CONFLICT_CODES = new Set(['PreconditionFailed', 'AlreadyExists', 'NotFound']);
/** How long a put waits for the head that tells whether a failed write landed. */
const IN_DOUBT_HEAD_MS = 10_000;

/** A failed write may have reached the provider (it was sent), unlike one refused before sending. */
export function mayHaveLanded(e: unknown): boolean {
  if (!isCloudmuxError(e)) return true;
  return !['ProviderUnavailable', 'NotSupported', 'InvalidKey', 'InvalidArgument', 'InvalidConfig', 'AuthFailed', 'AccessDenied'].includes(e.code);
}

/** The etag the catalog recorded for each provider's copy (null: a copy whose etag is unknown). */
export function recordedEtags(found: CatalogLookup): Map<string, string | null> {
  const out = new Map<string, string | null>();
  if (found.state !== 'live') return out;
  for (const r of [...found.stale, ...found.holders]) out.set(r.provider, r.etag ?? null);
  return out;
}

/**
 * A put's provider writes, made while the router holds the key's write lease: W acknowledgements
 * (moving on to spares when a provider fails), each fenced by the etag the catalog recorded, and
 * an account of what may have landed where the answer was lost.
 */
export class PutWriter {
  constructor(private readonly providers: ProviderSet) {}

  /** Writes an in-memory body to W providers, moving on to the next candidate when one fails. */
  async writeReplayable(key: string, bytes: Buffer, opts: PutOptions, digest: Digest, plan: Placement, quorum: number, fence: Map<string, string | null>):
    Promise<WriteOutcome> {
    const out: WriteOutcome = { acked: [], digest, failure: undefined, inDoubt: [], wrong: [] };
    const queue = [...plan.writeOrder];
    const putOpts: PutOptions = { ...opts, expect: { ...opts.expect, sha256: digest.sha256 }, size: bytes.byteLength };
    while (out.acked.length < quorum && queue.length > 0 && !opts.signal?.aborted) {
      const wave = queue.splice(0, quorum - out.acked.length);
      const results = await Promise.allSettled(wave.map((p) => this.providers.call(p, () => this.fencedPut(p, key, bytes, putOpts, fence), 'write')));
      let callerFault = false;
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') out.acked.push({ provider: wave[i]!, meta: r.value });
        else {
          out.failure = r.reason;
          if (mayHaveLanded(r.reason)) out.inDoubt.push(wave[i]!);
          if (isCloudmuxError(r.reason) && isCallerFault(r.reason, 'write') && !CONFLICT_CODES.has(r.reason.code)) callerFault = true;
        }
      });
      if (callerFault) break;
    }
    return out;
  }

  /**
   * Streams a body to up to W+1 providers at once (hashing it once), then, if fewer than W took
   * it, copies from one that did to the next candidates.
   */
  async writeStream(key: string, body: Body, opts: PutOptions, plan: Placement, quorum: number, fence: Map<string, string | null>): Promise<WriteOutcome> {
    const out: WriteOutcome = { acked: [], digest: { sha256: '', bytes: 0 }, failure: undefined, inDoubt: [], wrong: [] };
    const width = Math.min(plan.writeOrder.length, plan.targets.length > quorum ? quorum + 1 : quorum);
    if (width === 0) {
      out.failure = new ProviderUnavailableError('no provider is available for writes', { provider: 'router', key });
      return out;
    }
    const first = plan.writeOrder.slice(0, width);
    const fan = fanOut(bodyChunks(body), width);
    const results = await Promise.allSettled(first.map((p, i) => {
      const branch = fan.branches[i]!;
      return this.providers.call(p, () => this.fencedPut(p, key, branch, opts, fence), 'write').catch((e: unknown) => {
        if (!branch.destroyed) branch.destroy();
        throw e;
      });
    }));
    try {
      const d = await fan.done;
      out.digest = { sha256: d.sha256!, bytes: d.bytes };
    } catch (e) {
      out.failure = e;
    }
    const digest = out.digest;
    results.forEach((r, i) => {
      if (r.status === 'rejected') {
        out.failure ??= r.reason;
        if (mayHaveLanded(r.reason)) out.inDoubt.push(first[i]!);
      } else if (digest.sha256 && r.value.checksums.sha256 && r.value.checksums.sha256 !== digest.sha256) out.wrong.push(first[i]!);
      else if (digest.sha256) out.acked.push({ provider: first[i]!, meta: r.value });
      else out.wrong.push(first[i]!);
    });
    if (out.wrong.length > 0) out.failure ??= new IntegrityError('a provider stored bytes other than those sent', { provider: 'router', key });
    // Fill the quorum by copying from a provider that has the bytes.
    const rest = plan.writeOrder.slice(width);
    while (out.acked.length > 0 && out.acked.length < quorum && rest.length > 0 && !opts.signal?.aborted) {
      const p = rest.shift()!;
      try {
        const src = out.acked[0]!;
        const got = await this.providers.call(src.provider, () => this.providers.store(src.provider).get(key, { ifMatch: src.meta.etag, verify: true, signal: opts.signal }));
        const meta = await this.providers.call(p, () => this.fencedPut(p, key, got.body, { ...opts, size: digest.bytes, expect: { sha256: digest.sha256 } }, fence), 'write');
        out.acked.push({ provider: p, meta });
      } catch (e) {
        out.failure = e;
        if (mayHaveLanded(e)) out.inDoubt.push(p);
      }
    }
    return out;
  }

  /**
   * A provider write fenced by the etag the catalog recorded for that provider's copy (If-Match),
   * or If-None-Match: * where the catalog knows of none, on stores that can write conditionally: a
   * writer whose lease lapsed cannot overwrite what a later writer put there. A mismatch means
   * someone wrote the provider behind the catalog (an outside program, a stale copy the catalog
   * forgot, or a writer whose lease lapsed): we hold the lease now, so a replayable body is written
   * again over what is there.
   */
  private async fencedPut(p: string, key: string, body: Body, opts: PutOptions, fence: Map<string, string | null>): Promise<ObjectMeta> {
    const store = this.providers.store(p);
    if (!store.capabilities.conditionalPut) return store.put(key, body, opts);
    const recorded = fence.get(p);
    const cond: PutOptions = recorded === undefined ? { ifNoneMatch: '*' } : recorded === null ? {} : { ifMatch: recorded };
    try {
      return await store.put(key, body, { ...opts, ...cond });
    } catch (e) {
      if (!isReplayableBody(body) || !isCloudmuxError(e) || !CONFLICT_CODES.has(e.code)) throw e;
      const there = await store.head(key, { signal: opts.signal }).catch((err: unknown) => {
        if (isCloudmuxError(err, 'NotFound')) return undefined;
        throw err;
      });
      return store.put(key, body, { ...opts, ...(there ? { ifMatch: there.etag } : { ifNoneMatch: '*' }) });
    }
  }

  /** Providers whose write failed in a way that may have landed: those that hold the new bytes count as acknowledged. */
  async resolveInDoubt(key: string, digest: Digest, inDoubt: string[], acked: Acked[]): Promise<void> {
    const ackedNames = new Set(acked.map((a) => a.provider));
    for (const p of inDoubt) {
      if (ackedNames.has(p) || !this.providers.has(p)) continue;
      const meta = await this.providers.call(p, () => this.providers.store(p).head(key, { signal: AbortSignal.timeout(IN_DOUBT_HEAD_MS) })).catch(() => undefined);
      if (meta && meta.size === digest.bytes && storedSha256(meta) === digest.sha256) {
        acked.push({ provider: p, meta });
        ackedNames.add(p);
      }
    }
  }
}
