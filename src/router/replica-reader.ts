import { IntegrityError, isCloudmuxError, mayTryOtherReplica } from '../core/index.js';
import type { GetOptions, GetResult, ObjectMeta } from '../core/index.js';
import type { EventEmitter } from 'node:events';
import type { CatalogObject } from '../state/types.js';
import { discard } from './fan-out.js';
import { storedSha256 } from './reconcile.js';
import type { PlacementPolicy } from './policy.js';
import type { ProviderSet } from './provider-set.js';
import type { RouterEvents, RouterGetResult } from './router-types.js';

export type Attempt = { ok: true; value: RouterGetResult } | { ok: false; error: unknown };
/**
 * Per pass of a get: whether what the catalog says changed while it read (a put committed, a
 * holder's copy was adopted), so that the get should look the key up and read again.
 */
export type ReadContext = { readAgain: boolean; signal?: AbortSignal };


/**
 * Reads one key from the replicas holding its current version: in the router's order, hedging
 * the first after a latency percentile when the policy says so (within a budget), checking each
 * replica's recorded digest and size against the catalog before its bytes flow.
 */
export class ReplicaReader {
  private reads = 0;
  private hedges = 0;

  constructor(
    private readonly providers: ProviderSet,
    private readonly events: EventEmitter<RouterEvents>,
    private readonly metaOf: (object: CatalogObject, fromProvider?: ObjectMeta) => ObjectMeta,
    /** A holder turned out not to hold the bytes of `version`, the catalog's when the read looked. */
    private readonly onInDoubt: (key: string, provider: string, reason: string, ctx: ReadContext, version: number) => Promise<void>,
  ) {}

  /** Counts a read (the hedging budget is a share of reads). */
  counted(): void {
    this.reads++;
  }

  /** Tries the candidates in order (hedging the first when the policy says so). */
  async readFrom(key: string, object: CatalogObject, candidates: string[], opts: GetOptions, policy: PlacementPolicy, ctx: ReadContext): Promise<RouterGetResult> {
    let failure: unknown = undefined;
    let i = 0;
    if (policy.hedge && candidates.length >= 2 && this.hedges < policy.hedge.budget * this.reads) {
      const delay = this.providers.health.percentile(candidates[0]!, policy.hedge.afterPercentile);
      if (delay !== undefined) {
        const res = await this.hedgedRead(key, object, candidates[0]!, candidates[1]!, delay, opts, ctx);
        if (res.ok) return res.value;
        failure = res.error;
        i = 2;
      }
    }
    for (; i < candidates.length; i++) {
      const res = await this.attemptRead(key, object, candidates[i]!, opts, ctx);
      if (res.ok) {
        this.events.emit('read', { key, provider: candidates[i]!, hedged: false });
        return res.value;
      }
      failure = res.error;
      if (!mayTryOtherReplica(failure)) throw failure;
    }
    throw failure;
  }

  private async hedgedRead(key: string, object: CatalogObject, a: string, b: string, delayMs: number, opts: GetOptions, ctx: ReadContext): Promise<Attempt> {
    const ctrlA = new AbortController();
    const ctrlB = new AbortController();
    const link = (c: AbortController): AbortSignal => (opts.signal ? AbortSignal.any([opts.signal, c.signal]) : c.signal);
    const first = this.attemptRead(key, object, a, { ...opts, signal: link(ctrlA) }, ctx);
    let timer: NodeJS.Timeout | undefined;
    const early = await Promise.race([first.then((r) => ({ r })), new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), delayMs)))]);
    clearTimeout(timer);
    if (early) {
      if (early.r.ok) this.events.emit('read', { key, provider: a, hedged: false });
      if (early.r.ok || !mayTryOtherReplica(early.r.error)) return early.r;
      const second = await this.attemptRead(key, object, b, opts, ctx);
      if (second.ok) this.events.emit('read', { key, provider: b, hedged: false });
      return second;
    }
    this.hedges++;
    const second = this.attemptRead(key, object, b, { ...opts, signal: link(ctrlB) }, ctx);
    const tagged = [first.then((r) => ({ r, p: a, loser: second, ctrl: ctrlB })), second.then((r) => ({ r, p: b, loser: first, ctrl: ctrlA }))];
    const winner = await Promise.race(tagged);
    if (winner.r.ok) {
      winner.ctrl.abort();
      void winner.loser.then((r) => r.ok && discard(r.value.body));
      this.events.emit('read', { key, provider: winner.p, hedged: true });
      return winner.r;
    }
    const other = await winner.loser;
    if (other.ok) this.events.emit('read', { key, provider: winner.p === a ? b : a, hedged: true });
    return other;
  }

  /** One provider read; a holder that turns out not to have the catalog's bytes is repaired and skipped. */
  private async attemptRead(key: string, object: CatalogObject, p: string, opts: GetOptions, ctx: ReadContext): Promise<Attempt> {
    let res: GetResult;
    try {
      res = await this.providers.call(p, () => this.providers.store(p).get(key, opts));
    } catch (e) {
      if (isCloudmuxError(e, 'NotFound')) await this.onInDoubt(key, p, 'missing on a provider listed as holder', ctx, object.version);
      return { ok: false, error: e };
    }
    // The provider's own SHA-256, else the one cloudmux stored in its metadata (Azure, S3 without checksums).
    const sha = storedSha256(res.meta);
    if ((object.sha256 && sha && sha !== object.sha256) || res.meta.size !== object.size) {
      discard(res.body);
      await this.onInDoubt(key, p, 'holds other bytes than the current version', ctx, object.version);
      return { ok: false, error: new IntegrityError(`${p} holds other bytes than version ${object.version}`, { provider: p, key }) };
    }
    const started = performance.now();
    res.body.once('error', (e) => this.providers.health.record(p, performance.now() - started, e));
    const value: RouterGetResult = { meta: this.metaOf(object, res.meta), body: res.body, provider: p };
    if (res.range) value.range = res.range;
    return { ok: true, value };
  }
}
