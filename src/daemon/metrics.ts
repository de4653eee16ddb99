import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Sample } from '../layers/instrumented.js';
import type { OpClass } from '../core/errors.js';
import type { BreakerState } from '../layers/breaker.js';
import type { ProviderHealth } from '../router/health-tracker.js';
import type { BacklogStats } from '../state/types.js';
import type { AdaptiveStatus } from '../layers/adaptive-concurrency.js';
import { PRIORITY_CLASSES } from '../core/priority.js';
import type { ProviderStack } from '../router/open-router.js';
import type { SpendReport } from '../cost/spend-meter.js';

/** What the gauges read at scrape time. */
export interface MetricsSource {
  /** Every configured provider's health and per-class breaker state. */
  providers(): { name: string; health: ProviderHealth | undefined; breaker: Record<OpClass, BreakerState> | undefined }[];
  /** Outbox backlog; throws when the state store is unusable. */
  backlog(): Promise<BacklogStats>;
  readiness(): Promise<{ ready: boolean }>;
  /** Last anti-entropy slice finished at (ms since epoch), if any. */
  lastScanAt(): number | undefined;
  /** The replication worker's adaptive limiters, one per destination provider (none without `replication.adaptive`). */
  adaptive?(): AdaptiveStatus[];
  /** The replication worker's bandwidth limit in force (`transfers.bwlimit`; undefined: none configured). */
  bandwidth?(): { up?: number; down?: number } | undefined;
  /** Modelled spend (optional: absent, no spend series). */
  spend?(): Promise<SpendReport>;
}

const BREAKER_VALUE: Record<BreakerState, number> = { closed: 0, halfOpen: 1, open: 2 };
const HEALTH_STATES = ['healthy', 'degraded', 'down'] as const;

/**
 * The daemon's Prometheus registry. Counters are fed by events (operation samples, replication,
 * repairs, reloads); gauges read the current state at scrape time, so a reload that replaces the
 * providers never leaves a stale series behind. Every series is prefixed `cloudmux_`.
 */
export class DaemonMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'provider' | 'op' | 'outcome'>;
  readonly errors: Counter<'provider' | 'op' | 'code'>;
  readonly replicatedBytes: Counter<'provider'>;
  readonly replicationEntries: Counter<'kind' | 'outcome'>;
  readonly replicationRetries: Counter<'provider' | 'counted'>;
  readonly deadLetters: Counter<'provider'>;
  readonly repairs: Counter<'provider' | 'problem' | 'action'>;
  readonly scanSlices: Counter<'result'>;
  readonly scanKeys: Counter;
  readonly scanPasses: Counter;
  readonly reloads: Counter<'result'>;
  readonly healthTransitions: Counter<'provider' | 'to'>;
  readonly breakerTransitions: Counter<'provider' | 'op_class' | 'to'>;
  readonly probes: Counter<'provider' | 'result'>;
  readonly throttles: Counter<'provider' | 'op'>;
  readonly chunkGcRuns: Counter<'provider' | 'result'>;
  readonly chunkGcDeleted: Counter<'provider'>;
  readonly chunkGcDeletedBytes: Counter<'provider'>;

  constructor(source: MetricsSource, opts: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'cloudmux_daemon_' });
    this.requests = new Counter({ name: 'cloudmux_provider_requests_total', help: 'Provider operations by outcome (`ok` or an error code).', labelNames: ['provider', 'op', 'outcome'], registers });
    this.errors = new Counter({ name: 'cloudmux_provider_errors_total', help: 'Failed provider operations by error code.', labelNames: ['provider', 'op', 'code'], registers });
    this.replicatedBytes = new Counter({ name: 'cloudmux_replicated_bytes_total', help: 'Bytes copied to a provider by the replication worker.', labelNames: ['provider'], registers });
    this.replicationEntries = new Counter({ name: 'cloudmux_replication_entries_total', help: 'Outbox entries finished (copied, deleted, obsolete, already-done).', labelNames: ['kind', 'outcome'], registers });
    this.replicationRetries = new Counter({ name: 'cloudmux_replication_retries_total', help: 'Outbox entries rescheduled (counted: an attempt was spent; not counted: destination or sources down).', labelNames: ['provider', 'counted'], registers });
    this.deadLetters = new Counter({ name: 'cloudmux_replication_dead_letters_total', help: 'Outbox entries given up on.', labelNames: ['provider'], registers });
    this.repairs = new Counter({ name: 'cloudmux_repairs_total', help: 'Differences the anti-entropy scan had repaired.', labelNames: ['provider', 'problem', 'action'], registers });
    this.scanSlices = new Counter({ name: 'cloudmux_scan_slices_total', help: 'Anti-entropy slices scanned.', labelNames: ['result'], registers });
    this.scanKeys = new Counter({ name: 'cloudmux_scan_keys_total', help: 'Keys compared by the anti-entropy scan.', registers });
    this.scanPasses = new Counter({ name: 'cloudmux_scan_passes_total', help: 'Complete anti-entropy passes over the key space.', registers });
    this.reloads = new Counter({ name: 'cloudmux_config_reloads_total', help: 'Config reloads by result (ok, invalid).', labelNames: ['result'], registers });
    this.healthTransitions = new Counter({ name: 'cloudmux_provider_health_transitions_total', help: 'Provider health changes.', labelNames: ['provider', 'to'], registers });
    this.breakerTransitions = new Counter({ name: 'cloudmux_breaker_transitions_total', help: 'Circuit breaker state changes.', labelNames: ['provider', 'op_class', 'to'], registers });
    this.throttles = new Counter({ name: 'cloudmux_provider_throttles_total', help: 'Requests a provider throttled (429, 503 SlowDown/ServerBusy: CloudmuxError Throttled).', labelNames: ['provider', 'op'], registers });
    this.probes = new Counter({ name: 'cloudmux_probes_total', help: 'Canary probes by result.', labelNames: ['provider', 'result'], registers });
    this.chunkGcRuns = new Counter({ name: 'cloudmux_chunk_gc_runs_total', help: 'Chunk garbage collections run by this daemon (as leader), by result (ok, failed).', labelNames: ['provider', 'result'], registers });
    this.chunkGcDeleted = new Counter({ name: 'cloudmux_chunk_gc_deleted_chunks_total', help: 'Unreferenced chunks deleted by chunk garbage collection.', labelNames: ['provider'], registers });
    this.chunkGcDeletedBytes = new Counter({ name: 'cloudmux_chunk_gc_deleted_bytes_total', help: 'Bytes of the unreferenced chunks deleted.', labelNames: ['provider'], registers });

    new Gauge({
      name: 'cloudmux_provider_up', help: '1 while the provider is healthy or degraded, 0 while down.', labelNames: ['provider'], registers,
      collect() {
        this.reset();
        for (const p of source.providers()) this.set({ provider: p.name }, p.health?.state === 'down' ? 0 : 1);
      },
    });
    new Gauge({
      name: 'cloudmux_provider_health', help: 'Provider health state (1 for the current state).', labelNames: ['provider', 'state'], registers,
      collect() {
        this.reset();
        for (const p of source.providers()) for (const s of HEALTH_STATES) this.set({ provider: p.name, state: s }, p.health?.state === s ? 1 : 0);
      },
    });
    new Gauge({
      name: 'cloudmux_provider_error_rate', help: 'Failed fraction of provider requests in the health window.', labelNames: ['provider'], registers,
      collect() {
        this.reset();
        for (const p of source.providers()) this.set({ provider: p.name }, p.health?.errorRate ?? 0);
      },
    });
    new Gauge({
      name: 'cloudmux_provider_latency_ewma_seconds', help: 'EWMA latency of successful provider requests.', labelNames: ['provider'], registers,
      collect() {
        this.reset();
        for (const p of source.providers()) if (p.health?.ewmaMs !== undefined) this.set({ provider: p.name }, p.health.ewmaMs / 1000);
      },
    });
    new Gauge({
      name: 'cloudmux_probe_success', help: '1 if the last canary probe succeeded, 0 if it failed.', labelNames: ['provider'], registers,
      collect() {
        this.reset();
        for (const p of source.providers()) if (p.health?.lastProbe) this.set({ provider: p.name }, p.health.lastProbe.ok ? 1 : 0);
      },
    });
    new Gauge({
      name: 'cloudmux_breaker_state', help: 'Circuit breaker per provider and operation class: 0 closed, 1 half-open, 2 open.', labelNames: ['provider', 'op_class'], registers,
      collect() {
        this.reset();
        for (const p of source.providers()) {
          for (const [cls, st] of Object.entries(p.breaker ?? {})) this.set({ provider: p.name, op_class: cls }, BREAKER_VALUE[st]);
        }
      },
    });
    // prom-client starts every metric's collect() before awaiting any: the backlog gauges of one
    // scrape share the query in flight (and only while it is in flight, so no scrape sees an older one).
    let backlogQuery: Promise<BacklogStats | undefined> | undefined;
    const backlog = (): Promise<BacklogStats | undefined> => {
      backlogQuery ??= source.backlog().catch(() => undefined).finally(() => {
        backlogQuery = undefined;
      });
      return backlogQuery;
    };
    const perProvider = (field: 'count' | 'bytes') => async function (this: Gauge<'provider'>): Promise<void> {
      this.reset();
      const stats = await backlog();
      if (!stats) return;
      for (const p of source.providers()) this.set({ provider: p.name }, stats.byProvider[p.name]?.[field] ?? 0);
    };
    new Gauge({ name: 'cloudmux_outbox_backlog_entries', help: 'Pending outbox entries by destination provider.', labelNames: ['provider'], registers, collect: perProvider('count') });
    new Gauge({ name: 'cloudmux_outbox_backlog_bytes', help: 'Bytes still to replicate by destination provider.', labelNames: ['provider'], registers, collect: perProvider('bytes') });
    new Gauge({
      name: 'cloudmux_outbox_oldest_age_seconds', help: 'Age of the oldest pending outbox entry (0 when empty).', registers,
      async collect() {
        const stats = await backlog();
        if (stats) this.set(stats.oldestAgeMs / 1000);
      },
    });
    new Gauge({
      name: 'cloudmux_outbox_dead_entries', help: 'Dead-lettered outbox entries (need an operator).', registers,
      async collect() {
        const stats = await backlog();
        if (stats) this.set(stats.dead);
      },
    });
    const perClass = (field: 'count' | 'bytes' | 'oldestAgeMs') => async function (this: Gauge<'class'>): Promise<void> {
      this.reset();
      const stats = await backlog();
      if (!stats) return;
      for (const c of PRIORITY_CLASSES) this.set({ class: c }, field === 'oldestAgeMs' ? stats.byClass[c].oldestAgeMs / 1000 : stats.byClass[c][field]);
    };
    new Gauge({ name: 'cloudmux_outbox_class_backlog_entries', help: 'Pending outbox entries by priority class.', labelNames: ['class'], registers, collect: perClass('count') });
    new Gauge({ name: 'cloudmux_outbox_class_backlog_bytes', help: 'Bytes still to replicate by priority class.', labelNames: ['class'], registers, collect: perClass('bytes') });
    new Gauge({ name: 'cloudmux_outbox_class_oldest_age_seconds', help: 'Age of the oldest pending entry of each priority class (0 when none).', labelNames: ['class'], registers, collect: perClass('oldestAgeMs') });
    const perLimiter = (read: (s: AdaptiveStatus) => number) => function (this: Gauge<'provider'>): void {
      this.reset();
      for (const s of source.adaptive?.() ?? []) this.set({ provider: s.name }, read(s));
    };
    new Gauge({ name: 'cloudmux_replication_concurrency', help: 'Copies allowed in flight to each provider now (adaptive limit).', labelNames: ['provider'], registers, collect: perLimiter((s) => s.limit) });
    new Gauge({ name: 'cloudmux_replication_in_flight', help: 'Copies in flight to each provider.', labelNames: ['provider'], registers, collect: perLimiter((s) => s.inFlight) });
    new Gauge({ name: 'cloudmux_replication_rate_per_second', help: 'Copies finished per second to each provider (last adaptive window).', labelNames: ['provider'], registers, collect: perLimiter((s) => s.completedPerSec) });
    new Gauge({ name: 'cloudmux_replication_bytes_per_second', help: 'Bytes copied per second to each provider (last adaptive window).', labelNames: ['provider'], registers, collect: perLimiter((s) => s.bytesPerSec) });
    new Gauge({
      name: 'cloudmux_replication_bwlimit_bytes_per_second', help: 'Bandwidth limit of the replication worker in force now (transfers.bwlimit); absent while off.',
      labelNames: ['direction'], registers,
      collect(this: Gauge<'direction'>) {
        this.reset();
        const bw = source.bandwidth?.();
        if (bw?.up !== undefined) this.set({ direction: 'up' }, bw.up);
        if (bw?.down !== undefined) this.set({ direction: 'down' }, bw.down);
      },
    });
    new Gauge({
      name: 'cloudmux_state_store_up', help: '1 while the state store answers.', registers,
      async collect() {
        this.set((await backlog()) ? 1 : 0);
      },
    });
    new Gauge({
      name: 'cloudmux_ready', help: '1 while /readyz answers 200.', registers,
      async collect() {
        this.set((await source.readiness()).ready ? 1 : 0);
      },
    });
    const spendOf = source.spend?.bind(source);
    if (spendOf) {
      let spendQuery: Promise<SpendReport | undefined> | undefined;
      const spend = (): Promise<SpendReport | undefined> => {
        spendQuery ??= spendOf().catch(() => undefined).finally(() => {
          spendQuery = undefined;
        });
        return spendQuery;
      };
      const gauge = (name: string, help: string, by: 'provider' | 'prefix', field: 'storagePerMonth' | 'spend'): void => {
        new Gauge({
          name, help, labelNames: field === 'spend' ? [by, 'kind'] : [by], registers,
          async collect() {
            this.reset();
            const r = await spend();
            if (!r) return;
            for (const [k, l] of Object.entries(by === 'provider' ? r.byProvider : r.byPrefix)) {
              if (field === 'storagePerMonth') this.set({ [by]: k }, l.storagePerMonth);
              else for (const kind of ['egress', 'requests'] as const) this.set({ [by]: k, kind }, l[kind]);
            }
          },
        });
      };
      gauge('cloudmux_modelled_storage_dollars_per_month', 'Modelled storage run rate (bytes held now × list price) by provider.', 'provider', 'storagePerMonth');
      gauge('cloudmux_modelled_prefix_storage_dollars_per_month', 'Modelled storage run rate by placement-policy prefix.', 'prefix', 'storagePerMonth');
      gauge('cloudmux_modelled_spend_dollars', 'Modelled egress and request dollars of the provider operations this daemon observed since it started, by provider.', 'provider', 'spend');
      gauge('cloudmux_modelled_prefix_spend_dollars', 'Modelled egress and request dollars of the replicas this daemon copied since it started, by placement-policy prefix.', 'prefix', 'spend');
    }
    new Gauge({
      name: 'cloudmux_scan_last_timestamp_seconds', help: 'When the last anti-entropy slice finished (unix time).', registers,
      collect() {
        const at = source.lastScanAt();
        if (at !== undefined) this.set(at / 1000);
      },
    });
  }

  /** Feeds one provider stack's operation samples into the registry; returns the unbinding. */
  bindStack(stack: ProviderStack): () => void {
    const inst = stack.instrumented;
    if (!inst) return () => {};
    const unbindHistogram = inst.bindPrometheus(this.registry);
    const listener = (s: Sample): void => {
      this.requests.inc({ provider: stack.name, op: s.op, outcome: s.outcome });
      if (s.outcome !== 'ok') this.errors.inc({ provider: stack.name, op: s.op, code: s.outcome });
      if (s.outcome === 'Throttled') this.throttles.inc({ provider: stack.name, op: s.op });
    };
    inst.on('sample', listener);
    return () => {
      unbindHistogram();
      inst.off('sample', listener);
    };
  }

  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
