import type { Logger } from 'pino';
import type { BreakerEvent } from '../layers/breaker.js';
import type { HealthChange } from '../router/health-tracker.js';
import type { ProbeEvent } from '../router/probe-scheduler.js';
import type { ScanRepair, ScanReport } from '../replication/anti-entropy.js';
import type { WorkerCounters } from '../replication/worker.js';
import type { GcReport } from '../layers/chunked/gc.js';
import { describeError } from './logger.js';
import type { DaemonMetrics } from './metrics.js';
import type { SpendMeter } from '../cost/spend-meter.js';
import type { Sample } from '../layers/instrumented.js';
import type { DaemonRuntime } from './runtime.js';

/** Replication totals since the daemon started (across reloads): the worker's counters, `dead` named for the status page. */
export type ReplicationTotals = Omit<WorkerCounters, 'dead'> & { deadLettered: number };

/** Where a runtime's events go besides the log and the metrics. */
export interface ObserveSink {
  log: Logger;
  metrics: DaemonMetrics;
  /** Modelled spend of the operations observed. */
  spend: SpendMeter;
  totals: ReplicationTotals;
  onRepair(r: ScanRepair): void;
  onScan(r: ScanReport): void;
}

/**
 * Turns a runtime's events into log lines and metrics: one log event per state change (provider
 * health, breaker, dead letter, repair), with its reason; counters for probes, replication and
 * scans. Listeners on shared emitters are removed by `rt.cleanup` when the runtime stops.
 */
export function observeRuntime(rt: DaemonRuntime, sink: ObserveSink): void {
  const { log, metrics, totals, spend } = sink;
  for (const s of rt.stacks) {
    rt.cleanup.push(metrics.bindStack(s));
    let lastFailure: string | undefined;
    const onSample = (sample: Sample): void => {
      spend.observeOperation(s.name, sample);
      if (sample.outcome !== 'ok' && sample.outcome !== 'NotFound' && sample.outcome !== 'Aborted') lastFailure = `${sample.op}: ${sample.outcome}`;
    };
    s.instrumented?.on('sample', onSample);
    rt.cleanup.push(() => s.instrumented?.off('sample', onSample));
    const breaker = s.breaker;
    if (breaker) {
      const on = (to: 'open' | 'halfOpen' | 'close') => (ev: BreakerEvent): void => {
        metrics.breakerTransitions.inc({ provider: s.name, op_class: ev.opClass, to });
        const fields = { event: `breaker.${to}`, provider: s.name, opClass: ev.opClass, lastFailure };
        if (to === 'open') log.warn({ ...fields, reason: `failure rate over the threshold${lastFailure ? `; last failure ${lastFailure}` : ''}` }, `${s.name}: ${ev.opClass} breaker open`);
        else if (to === 'close') log.info({ ...fields, reason: 'trial call succeeded' }, `${s.name}: ${ev.opClass} breaker closed`);
        else log.info({ ...fields, reason: 'reset timeout passed; next call is a trial' }, `${s.name}: ${ev.opClass} breaker half-open`);
      };
      const handlers = { open: on('open'), halfOpen: on('halfOpen'), close: on('close') };
      breaker.on('open', handlers.open).on('halfOpen', handlers.halfOpen).on('close', handlers.close);
      rt.cleanup.push(() => {
        breaker.off('open', handlers.open).off('halfOpen', handlers.halfOpen).off('close', handlers.close);
      });
    }
  }

  const onHealth = (ch: HealthChange): void => {
    metrics.healthTransitions.inc({ provider: ch.provider, to: ch.to });
    const fields = { event: `provider.${ch.to === 'healthy' ? 'up' : ch.to}`, provider: ch.provider, from: ch.from, to: ch.to, reason: ch.reason };
    if (ch.to === 'down') log.error(fields, `${ch.provider} is down: ${ch.reason}`);
    else if (ch.to === 'degraded') log.warn(fields, `${ch.provider} is degraded: ${ch.reason}`);
    else log.info(fields, `${ch.provider} is up again`);
  };
  rt.router.health.on('change', onHealth);
  rt.cleanup.push(() => rt.router.health.off('change', onHealth));

  rt.probes.on('probe', (p: ProbeEvent) => {
    metrics.probes.inc({ provider: p.provider, result: p.result });
    const fields = { event: `probe.${p.result}`, provider: p.provider, followUp: p.followUp, latencyMs: p.latencyMs, stalledMs: p.stalledMs, reason: p.error };
    if (p.result === 'failed') log.debug(fields, `${p.provider}: canary probe failed: ${p.error}`);
    else if (p.result === 'inconclusive') log.debug(fields, `${p.provider}: canary probe inconclusive: ${p.error}`);
  });

  rt.worker.on('done', (ev) => {
    metrics.replicationEntries.inc({ kind: ev.entry.kind, outcome: ev.outcome });
    if (ev.outcome === 'copied') {
      totals.copied++;
      totals.bytesCopied += ev.bytes ?? 0;
      metrics.replicatedBytes.inc({ provider: ev.entry.provider }, ev.bytes ?? 0);
      if (ev.source !== undefined) spend.observeCopy(ev.entry.key, ev.source, ev.entry.provider, ev.bytes ?? 0);
    } else if (ev.outcome === 'deleted') totals.deleted++;
    else if (ev.outcome === 'obsolete') totals.obsolete++;
    log.debug({ event: 'outbox.done', id: ev.entry.id, kind: ev.entry.kind, key: ev.entry.key, provider: ev.entry.provider, outcome: ev.outcome, source: ev.source, bytes: ev.bytes }, 'outbox entry done');
  });
  rt.worker.on('retry', (ev) => {
    metrics.replicationRetries.inc({ provider: ev.entry.provider, counted: String(ev.counted) });
    if (ev.counted) totals.retries++;
    else totals.deferred++;
    log.debug({ event: 'outbox.retry', id: ev.entry.id, key: ev.entry.key, provider: ev.entry.provider, reason: ev.error, at: ev.at, counted: ev.counted }, 'outbox entry rescheduled');
  });
  rt.worker.on('dead', (ev) => {
    totals.deadLettered++;
    metrics.deadLetters.inc({ provider: ev.entry.provider });
    log.error({ event: 'outbox.dead_letter', id: ev.entry.id, kind: ev.entry.kind, key: ev.entry.key, provider: ev.entry.provider, reason: ev.reason },
      `gave up on ${ev.entry.kind} of ${ev.entry.key} to ${ev.entry.provider}: ${ev.reason}`);
  });
  rt.worker.on('error', (e) => log.error({ event: 'outbox.error', err: e }, `replication worker: ${describeError(e)}`));

  rt.scanner.on('repair', (r) => {
    metrics.repairs.inc({ provider: r.provider, problem: r.problem, action: r.action });
    log.warn({ event: 'scan.repair', ...r }, `anti-entropy: ${r.key} on ${r.provider}: ${r.problem} (${r.detail}) → ${r.action}`);
    sink.onRepair(r);
  });
  rt.scanner.on('report', (r) => {
    metrics.scanSlices.inc({ result: r.errors.length > 0 ? 'errors' : 'ok' });
    metrics.scanKeys.inc(r.keysChecked);
    if (r.passComplete) metrics.scanPasses.inc();
    const { repairs: _r, ...summary } = r;
    const level = r.repairCount > 0 || r.errors.length > 0 || r.skippedProviders.length > 0 ? 'info' : 'debug';
    log[level]({ event: 'scan.slice', ...summary }, `anti-entropy slice: ${r.keysChecked} keys, ${r.repairCount} repairs, ${r.deferred} deferred`);
    sink.onScan(r);
  });

  const gc = rt.coordination.chunkGc;
  const onCollected = (provider: string, r: GcReport): void => {
    metrics.chunkGcRuns.inc({ provider, result: 'ok' });
    metrics.chunkGcDeleted.inc({ provider }, r.deleted);
    metrics.chunkGcDeletedBytes.inc({ provider }, r.deletedBytes);
    const { missing, ...summary } = r;
    const fields = { event: 'chunk-gc.done', provider, ...summary, missing: missing.length };
    const line = `chunk GC on ${provider}: ${r.deleted} unreferenced chunks deleted (${r.deletedBytes} bytes) of ${r.chunks}; ${r.keptYoung} kept within the grace period`;
    // Chunks that manifests name but the store lacks: a damaged tree, for an operator to look at.
    if (missing.length > 0) log.error({ ...fields, firstMissing: missing[0] }, `${line}; DAMAGED: ${missing.length} chunks named by manifests are missing`);
    else log.info(fields, line);
  };
  const onFailed = (provider: string, e: unknown): void => {
    metrics.chunkGcRuns.inc({ provider, result: 'failed' });
    log.error({ event: 'chunk-gc.failed', provider, err: e }, `chunk GC on ${provider} failed, nothing more deleted: ${describeError(e)}`);
  };
  gc.on('collected', onCollected).on('failed', onFailed);
  rt.cleanup.push(() => {
    gc.off('collected', onCollected).off('failed', onFailed);
  });
}
