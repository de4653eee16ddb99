import { EventEmitter } from 'node:events';
import { compareKeys, describeError, headIfExists, throwIfAborted } from '../core/index.js';
import type { ObjectMeta, ObjectSummary } from '../core/index.js';
import type { ScanConfig } from '../config/schema.js';
import type { Router } from '../router/router.js';
import type { CatalogLookup, OutboxEntry, Replica } from '../state/types.js';

/** What a scan found wrong with one replica. */
export type ScanProblem =
  /** The catalog says the provider holds the current version; it has no such object. */
  | 'missing'
  /** The provider's object has another size than the catalog's version. */
  | 'size'
  /** The provider's recorded SHA-256 is not the catalog's. */
  | 'sha256'
  /** A live key's object on a provider the catalog does not list as holder, with nothing owed there. */
  | 'stray'
  /** A deleted key still has an object on the provider, with no delete owed. */
  | 'deleted-but-present'
  /** Fewer holders than the policy's replicas, with nothing owed. */
  | 'under-replicated';

export interface ScanRepair {
  key: string;
  provider: string;
  problem: ScanProblem;
  /** `replicate`/`delete`: an outbox entry was created for the replication worker; `adopt`: the correct copy was recorded as a holder. */
  action: 'replicate' | 'delete' | 'adopt';
  detail: string;
  /** The outbox entry created, if any. */
  entryId?: number;
}

export interface ScanReport {
  startedAt: Date;
  finishedAt: Date;
  durationMs: number;
  /** Slice bounds: keys after `from` (exclusive) up to `to` (inclusive); undefined means the start / the end. */
  from?: string;
  to?: string;
  /** This slice reached the end of the key space: the next one starts a new pass. */
  passComplete: boolean;
  /** Catalog and provider keys looked at. */
  keysChecked: number;
  /** (key, holder) pairs compared. */
  replicasChecked: number;
  repairCount: number;
  /** The first 100 repairs. */
  repairs: ScanRepair[];
  /** Differences on objects changed within `settleMs`, left for the next pass. */
  deferred: number;
  /** Objects on providers the catalog has never heard of (written outside cloudmux); left alone. */
  unknownKeys: number;
  /** Keys with a dead-lettered outbox entry: left alone until an operator requeues them. */
  deadLettered: number;
  /** Providers not scanned in this slice (down, or their listing failed). */
  skippedProviders: { provider: string; reason: string }[];
  errors: { provider?: string; key?: string; error: string }[];
}

export interface AntiEntropyEvents {
  repair: [ScanRepair];
  report: [ScanReport];
  /** A key was looked at (catalog and providers): the hook that proves each key is checked once per cycle. */
  checked: [string];
}

export interface AntiEntropyOptions extends Partial<Omit<ScanConfig, 'intervalMs'>> {
  router: Router;
  /** Keys under this prefix are canaries, never repaired (default: the router's probe prefix). */
  probePrefix?: string;
  /** Provider requests in flight during a slice. Default 8. */
  concurrency?: number;
  /** Clock for tests. */
  now?: () => number;
}

const KEEP_REPAIRS = 100;

/**
 * Anti-entropy: compares the router's catalog against what the providers hold, one rolling slice
 * of keys at a time, and has what differs repaired through the outbox (the replication worker
 * copies or deletes, verified by digest).
 *
 * # Contract
 * - A slice is the next `batchSize` catalog keys after the cursor; each provider is listed over
 *   the same key range, so objects the catalog does not list (strays, deleted keys) are found too.
 *   Listing stops after 2×`batchSize` objects on one provider; the slice then ends there.
 * - A difference is confirmed with a fresh `head` and a fresh catalog lookup before anything is
 *   owed; a key that changed meanwhile, one with work already owed, or an object changed within
 *   `settleMs` is left for the next pass. Keys with dead-lettered entries are left alone.
 * - Repairs: a holder missing its copy or holding other bytes is owed a replica; an unwanted copy
 *   (stray, or of a deleted key) is owed a delete; a correct stray copy on a provider the policy
 *   still needs is recorded as a holder; an under-replicated key is owed replicas on its placement
 *   targets. Objects unknown to the catalog are counted, never touched.
 * - Down providers are skipped for the slice.
 */
export class AntiEntropyScanner extends EventEmitter<AntiEntropyEvents> {
  /** Last key of the previous slice (undefined: the next slice starts a pass). */
  cursor: string | undefined;
  /** Completed passes over the whole key space. */
  passes = 0;
  lastReport: ScanReport | undefined;
  private readonly router: Router;
  private readonly batchSize: number;
  private readonly compare: ScanConfig['compare'];
  private readonly settleMs: number;
  private readonly probePrefix: string;
  private readonly concurrency: number;
  private readonly now: () => number;
  private running: Promise<ScanReport> | undefined;

  constructor(opts: AntiEntropyOptions) {
    super();
    this.router = opts.router;
    this.batchSize = opts.batchSize ?? 500;
    this.compare = opts.compare ?? 'metadata';
    this.settleMs = opts.settleMs ?? 60_000;
    this.probePrefix = `${opts.probePrefix ?? this.router.health.config.probePrefix}/`;
    this.concurrency = Math.max(1, opts.concurrency ?? 8);
    this.now = opts.now ?? Date.now;
  }

  /** Scans the next slice (a call while one runs joins it). */
  scanSlice(signal?: AbortSignal): Promise<ScanReport> {
    this.running ??= this.runSlice(signal).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /**
   * Scans one slice of the key range (`after`, `end`] starting after `from` (a range leased from a
   * scan shared by several daemons, see src/jobs/shared-scan.ts), without touching this scanner's own
   * cursor. The report's `to` is where the slice ended; `to === end` (both undefined at the end of
   * the key space) means the range is done.
   */
  scanRangeSlice(from: string | undefined, end: string | undefined, signal?: AbortSignal): Promise<ScanReport> {
    const run = this.running ?? Promise.resolve();
    const next = run.catch(() => undefined).then(() => this.runSlice(signal, { from, end }));
    this.running = next.finally(() => {
      if (this.running === next) this.running = undefined;
    });
    return next;
  }

  /** Scans slices until a pass completes (from the current cursor to the end of the key space). */
  async scanToEnd(signal?: AbortSignal): Promise<ScanReport[]> {
    const reports: ScanReport[] = [];
    for (;;) {
      const r = await this.scanSlice(signal);
      reports.push(r);
      if (r.passComplete) return reports;
    }
  }

  private async runSlice(signal: AbortSignal | undefined, range?: { from: string | undefined; end: string | undefined }): Promise<ScanReport> {
    const startedAt = new Date(this.now());
    const from = range ? range.from : this.cursor;
    const report: ScanReport = {
      startedAt, finishedAt: startedAt, durationMs: 0, passComplete: false, keysChecked: 0, replicasChecked: 0, repairCount: 0, repairs: [],
      deferred: 0, unknownKeys: 0, deadLettered: 0, skippedProviders: [], errors: [],
    };
    if (from !== undefined) report.from = from;
    const state = this.router.state;
    const end = range?.end;
    const beyond = (k: string): boolean => end !== undefined && compareKeys(k, end) > 0;
    const objects = (await state.listObjects({ startAfter: from, limit: this.batchSize })).filter((o) => !beyond(o.key));
    let to = objects.length === this.batchSize ? objects[objects.length - 1]!.key : end;
    const stores = this.router.providerStores();
    const listed = new Map<string, Map<string, ObjectSummary>>();
    const cap = this.batchSize * 2;
    for (const p of this.router.providerNames()) {
      throwIfAborted(signal);
      if (this.router.health.state(p) === 'down') {
        report.skippedProviders.push({ provider: p, reason: `down: ${this.router.health.health(p)?.reason ?? ''}` });
        continue;
      }
      const items = new Map<string, ObjectSummary>();
      try {
        for await (const item of stores[p]!.list({ startAfter: from, pageSize: Math.min(1000, cap), signal })) {
          if (item.type !== 'object') continue;
          if (to !== undefined && compareKeys(item.key, to) > 0) break;
          if (item.key.startsWith(this.probePrefix)) continue;
          items.set(item.key, item);
          if (items.size >= cap) {
            to = item.key;
            break;
          }
        }
      } catch (e) {
        if (signal?.aborted) throw e;
        report.skippedProviders.push({ provider: p, reason: `listing failed: ${describeError(e)}` });
        continue;
      }
      listed.set(p, items);
    }
    const within = (k: string): boolean => to === undefined || compareKeys(k, to) <= 0;
    const keys = new Set<string>(objects.map((o) => o.key).filter(within));
    for (const items of listed.values()) for (const k of items.keys()) if (within(k)) keys.add(k);
    const sorted = [...keys].sort(compareKeys);
    report.keysChecked = sorted.length;

    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < sorted.length) {
        throwIfAborted(signal);
        const key = sorted[next++]!;
        try {
          await this.checkKey(key, listed, report, signal);
          this.emit('checked', key);
        } catch (e) {
          if (signal?.aborted) throw e;
          report.errors.push({ key, error: describeError(e) });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, Math.max(1, sorted.length)) }, worker));

    if (range) {
      if (to !== undefined) report.to = to;
      report.passComplete = to === undefined;
    } else if (to === undefined) {
      report.passComplete = true;
      this.cursor = undefined;
      this.passes++;
    } else {
      report.to = to;
      this.cursor = to;
    }
    report.finishedAt = new Date(this.now());
    report.durationMs = report.finishedAt.getTime() - startedAt.getTime();
    this.lastReport = report;
    this.emit('report', report);
    return report;
  }

  private async checkKey(key: string, listed: Map<string, Map<string, ObjectSummary>>, report: ScanReport, signal: AbortSignal | undefined): Promise<void> {
    const state = this.router.state;
    const look = await state.lookup(key);
    const entries = await state.entries({ key });
    if (entries.some((e) => e.state === 'dead')) {
      report.deadLettered++;
      return;
    }
    const owedOn = new Set(entries.map((e) => e.provider));
    if (look.state === 'unknown') {
      report.unknownKeys++;
      return;
    }
    const stores = this.router.providerStores();
    if (look.state === 'deleted') {
      for (const [p, items] of listed) {
        if (items.has(key) && !owedOn.has(p)) await this.confirm(key, p, 'deleted-but-present', look, report, signal);
      }
      return;
    }
    const { object } = look;
    const holders = new Set(look.holders.map((h) => h.provider));
    const strays: string[] = [];
    let suspects = 0;
    for (const [p, items] of listed) {
      const item = items.get(key);
      if (holders.has(p)) {
        report.replicasChecked++;
        let problem: ScanProblem | undefined;
        if (!item) problem = 'missing';
        else if (item.size !== object.size) problem = 'size';
        else if (item.checksums?.sha256 && object.sha256 && item.checksums.sha256 !== object.sha256) problem = 'sha256';
        else if (this.compare === 'metadata' && object.sha256 && !item.checksums?.sha256) {
          const meta = await headOrNull(stores[p]!, key, signal);
          if (!meta) problem = 'missing';
          else if (meta.size !== object.size) problem = 'size';
          else if (meta.checksums.sha256 && meta.checksums.sha256 !== object.sha256) problem = 'sha256';
        }
        if (problem) {
          suspects++;
          await this.confirm(key, p, problem, look, report, signal);
        }
      } else if (item && !owedOn.has(p)) {
        strays.push(p);
      }
    }
    for (const p of strays) {
      suspects++;
      await this.confirm(key, p, 'stray', look, report, signal);
    }
    if (suspects === 0 && entries.length === 0) await this.checkReplicaCount(key, look, report);
  }

  /**
   * Re-checks one suspected difference against a fresh head and a fresh catalog lookup, then has
   * it repaired. Anything that moved meanwhile waits for the next pass.
   */
  private async confirm(key: string, p: string, problem: ScanProblem, before: CatalogLookup, report: ScanReport, signal: AbortSignal | undefined): Promise<void> {
    const store = this.router.providerStores()[p]!;
    let meta: ObjectMeta | null;
    try {
      meta = await headOrNull(store, key, signal);
    } catch (e) {
      if (signal?.aborted) throw e;
      report.errors.push({ provider: p, key, error: describeError(e) });
      return;
    }
    const state = this.router.state;
    const now = await state.lookup(key);
    if (!sameVersion(before, now)) return;
    if ((await state.entries({ key })).some((e) => e.provider === p)) return;
    const recent = (d: Date | undefined): boolean => d !== undefined && d.getTime() > this.now() - this.settleMs;

    if (now.state === 'deleted') {
      if (!meta) return;
      if (recent(meta.lastModified)) {
        report.deferred++;
        return;
      }
      await this.owe(key, p, problem, `object still present after the key was deleted (version ${now.version})`, report);
      return;
    }
    if (now.state !== 'live') return;
    const { object } = now;
    const isHolder = now.holders.some((h) => h.provider === p);
    if (isHolder) {
      if (!meta) {
        await this.oweHolder(key, p, now.holders.length, 'missing', `no object where the catalog records version ${object.version}`, report);
        return;
      }
      const wrongSize = meta.size !== object.size;
      const wrongSha = !!(object.sha256 && meta.checksums.sha256 && meta.checksums.sha256 !== object.sha256);
      if (!wrongSize && !wrongSha) return;
      if (recent(meta.lastModified) || recent(object.lastModified)) {
        report.deferred++;
        return;
      }
      const detail = wrongSize ? `size ${meta.size}, catalog ${object.size}` : `sha256 ${meta.checksums.sha256!.slice(0, 12)}…, catalog ${object.sha256!.slice(0, 12)}…`;
      await this.oweHolder(key, p, now.holders.length, wrongSize ? 'size' : 'sha256', detail, report);
      return;
    }
    if (!meta) return;
    if (recent(meta.lastModified)) {
      report.deferred++;
      return;
    }
    const policy = this.router.policies.for(key);
    const configured = new Set(this.router.providerNames());
    const holders = now.holders.filter((h) => configured.has(h.provider));
    const matches = meta.size === object.size && !!object.sha256 && meta.checksums.sha256 === object.sha256;
    const wanted = holders.length < policy.replicas && this.router.placement(policy, object.size).targets.includes(p);
    if (matches && wanted) {
      const res = await state.commitPut({
        key, version: object.version, size: object.size, sha256: object.sha256, contentType: object.contentType, metadata: object.metadata,
        lastModified: object.lastModified, acked: [...now.holders, { provider: p, version: object.version, etag: meta.etag }], owed: [],
      });
      if (res.committed) this.record({ key, provider: p, problem: 'stray', action: 'adopt', detail: 'a correct copy the catalog did not record; recorded as holder' }, report);
      if (res.entries.length > 0) this.router.events.emit('owed', res.entries);
      return;
    }
    await this.owe(key, p, problem, matches ? 'an extra copy the policy does not need' : `an unrecorded copy of other bytes (size ${meta.size})`, report);
  }

  /** Fewer holders than the policy asks and nothing owed: owe replicas on the placement targets. */
  private async checkReplicaCount(key: string, look: Extract<CatalogLookup, { state: 'live' }>, report: ScanReport): Promise<void> {
    const policy = this.router.policies.for(key);
    const configured = new Set(this.router.providerNames());
    const holders = look.holders.filter((h) => configured.has(h.provider));
    if (holders.length >= policy.replicas || holders.length === 0) return;
    const have = new Set(holders.map((h) => h.provider));
    const missing = this.router.placement(policy, look.object.size).targets.filter((t) => !have.has(t)).slice(0, policy.replicas - holders.length);
    if (missing.length === 0) return;
    // The same version and holders, still nothing owed, or the next pass decides.
    const now = await this.router.state.lookup(key);
    if (!sameVersion(look, now) || (await this.router.state.entries({ key })).length > 0) return;
    const { object } = look;
    const res = await this.router.state.commitPut({
      key, version: object.version, size: object.size, sha256: object.sha256, contentType: object.contentType, metadata: object.metadata,
      lastModified: object.lastModified, acked: look.holders, owed: missing,
    });
    if (!res.committed) return;
    for (const e of res.entries.filter((x) => x.kind === 'replicate')) {
      this.record({ key, provider: e.provider, problem: 'under-replicated', action: 'replicate', detail: `${holders.length} of ${policy.replicas} replicas`, entryId: e.id }, report);
    }
    if (res.entries.length > 0) this.router.events.emit('owed', res.entries);
  }

  /**
   * A holder does not hold the catalog's bytes. The last holder goes through the router's
   * reconciliation (its bytes are adopted rather than the key left with no readable version);
   * another is owed a replica as usual.
   */
  private async oweHolder(key: string, p: string, holders: number, problem: ScanProblem, detail: string, report: ScanReport): Promise<void> {
    if (holders > 1) {
      await this.owe(key, p, problem, detail, report);
      return;
    }
    const outcome = await this.router.reconcileHolder(key, p, `anti-entropy: ${detail}`);
    if (outcome === 'adopted') this.record({ key, provider: p, problem, action: 'adopt', detail: `${detail}; the last holder's bytes became the current version` }, report);
    else if (outcome === 'repaired') this.record({ key, provider: p, problem, action: 'replicate', detail }, report);
  }

  /** Has the state store owe the fix (a replica for a holder, a delete otherwise) and records it. */
  private async owe(key: string, p: string, problem: ScanProblem, detail: string, report: ScanReport): Promise<void> {
    const entry: OutboxEntry | undefined = await this.router.state.repairReplica(key, p);
    if (!entry) return;
    this.record({ key, provider: p, problem, action: entry.kind, detail, entryId: entry.id }, report);
    this.router.events.emit('owed', [entry]);
  }

  private record(repair: ScanRepair, report: ScanReport): void {
    report.repairCount++;
    if (report.repairs.length < KEEP_REPAIRS) report.repairs.push(repair);
    this.emit('repair', repair);
  }
}

async function headOrNull(store: { head(key: string, opts?: { signal?: AbortSignal }): Promise<ObjectMeta> }, key: string, signal: AbortSignal | undefined): Promise<ObjectMeta | null> {
  return (await headIfExists(store, key, { signal })) ?? null;
}

function sameVersion(a: CatalogLookup, b: CatalogLookup): boolean {
  if (a.state !== b.state) return false;
  if (a.state === 'live' && b.state === 'live') return a.object.version === b.object.version && sameHolders(a.holders, b.holders);
  if (a.state === 'deleted' && b.state === 'deleted') return a.version === b.version;
  return true;
}

function sameHolders(a: Replica[], b: Replica[]): boolean {
  return a.length === b.length && a.every((r) => b.some((s) => s.provider === r.provider && s.version === r.version));
}
