import { describe, expect, it } from 'vitest';
import { DaemonMetrics, type MetricsSource } from '../../src/daemon/metrics.js';
import { AdaptiveConcurrency } from '../../src/layers/adaptive-concurrency.js';
import { emptyByClass } from '../../src/state/index.js';

describe('daemon metrics for transfers', () => {
  it('exports backlog and age per priority class, and concurrency and rate per provider', async () => {
    const byClass = emptyByClass();
    byClass.critical = { count: 2, bytes: 20, oldestAgeMs: 1500 };
    byClass.bulk = { count: 2000, bytes: 2e6, oldestAgeMs: 60_000 };
    const limiter = new AdaptiveConcurrency({ name: 'azure', initial: 6, now: () => 0, eventLoopLag: () => 0 });
    limiter.tryAcquire();
    const source = {
      providers: () => [],
      backlog: async () => ({ count: 2002, bytes: 2e6 + 20, oldestAgeMs: 60_000, dead: 0, byProvider: {}, byClass }),
      readiness: async () => ({ ready: true }),
      lastScanAt: () => undefined,
      adaptive: () => [limiter.status()],
    } as unknown as MetricsSource;
    const text = await new DaemonMetrics(source, { processMetrics: false }).metrics();
    expect(text).toContain('cloudmux_outbox_class_backlog_entries{class="critical"} 2');
    expect(text).toContain('cloudmux_outbox_class_backlog_entries{class="bulk"} 2000');
    expect(text).toContain('cloudmux_outbox_class_oldest_age_seconds{class="bulk"} 60');
    expect(text).toContain('cloudmux_replication_concurrency{provider="azure"} 6');
    expect(text).toContain('cloudmux_replication_in_flight{provider="azure"} 1');
    expect(text).toContain('cloudmux_replication_rate_per_second{provider="azure"} 0');
    expect(text).toContain('# TYPE cloudmux_provider_throttles_total counter');
  });
});
