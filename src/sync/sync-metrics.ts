import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';
import type { Counter, Gauge, Registry } from 'prom-client';
import { PRIORITY_CLASSES } from '../core/priority.js';
import type { RoundReport } from './sync-engine.js';

/**
 * Sync's priority backlog in a prom-client registry, like the outbox's per-class series: after
 * each round (`observe(report)`, e.g. from syncLoop's `onRound`),
 * `<prefix>sync_class_backlog_files{pair,class}` and `<prefix>sync_class_backlog_bytes{pair,class}`
 * (content still to move, RoundReport.backlog), `<prefix>sync_pending_changes{pair}` (local changes
 * queued) and `<prefix>sync_rounds_total{pair,online}`. Several pairs may share one registry
 * (label `pair`, default `default`).
 */
export class SyncMetrics {
  private readonly files: Gauge<'pair' | 'class'>;
  private readonly bytes: Gauge<'pair' | 'class'>;
  private readonly pending: Gauge<'pair'>;
  private readonly rounds: Counter<'pair' | 'online'>;
  private readonly pair: string;

  constructor(registry: Registry, options: { prefix?: string; pair?: string } = {}) {
    // Loaded here, by a caller that already has a registry: `import 'cloudmux'` must not load prom-client.
    const prom = createRequire(import.meta.url)('prom-client') as typeof PromClient;
    const prefix = options.prefix ?? 'cloudmux_';
    this.pair = options.pair ?? 'default';
    const gauge = <L extends string>(name: string, help: string, labelNames: L[]): Gauge<L> =>
      (registry.getSingleMetric(prefix + name) as Gauge<L> | undefined) ?? new prom.Gauge({ name: prefix + name, help, labelNames, registers: [registry] });
    this.files = gauge('sync_class_backlog_files', 'Files sync still has to move, by priority class (after the last round).', ['pair', 'class']);
    this.bytes = gauge('sync_class_backlog_bytes', 'Bytes sync still has to move, by priority class (after the last round).', ['pair', 'class']);
    this.pending = gauge('sync_pending_changes', 'Local changes queued and not yet propagated (after the last round).', ['pair']);
    const rounds = `${prefix}sync_rounds_total`;
    this.rounds = (registry.getSingleMetric(rounds) as Counter<'pair' | 'online'> | undefined)
      ?? new prom.Counter({ name: rounds, help: 'Sync rounds run (online false: the remote could not be reached).', labelNames: ['pair', 'online'], registers: [registry] });
  }

  observe(r: RoundReport): void {
    for (const c of PRIORITY_CLASSES) {
      this.files.set({ pair: this.pair, class: c }, r.backlog[c].files);
      this.bytes.set({ pair: this.pair, class: c }, r.backlog[c].bytes);
    }
    this.pending.set({ pair: this.pair }, r.pending);
    this.rounds.inc({ pair: this.pair, online: String(r.online) });
  }
}
