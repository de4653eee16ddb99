import type { BacklogStats, StateStore } from '../state/types.js';
import { describeError } from './logger.js';
import type { ReplicationTotals } from './observe.js';
import type { DaemonRuntime } from './runtime.js';
import type { SpendMeter } from '../cost/spend-meter.js';

export interface Readiness {
  ready: boolean;
  /** Why not ready (empty when ready). */
  reasons: string[];
  providers: Record<string, 'healthy' | 'degraded' | 'down'>;
}

/** What /readyz and /status report on. */
export interface StatusSource {
  runtime: DaemonRuntime;
  state: StateStore;
  stopping: boolean;
  startedAt: Date;
  configFile: string | undefined;
  configLoadedAt: Date;
  lastReload: { at: Date; ok: boolean; error?: string } | undefined;
  listen: { host: string; port: number } | undefined;
  totals: ReplicationTotals;
  spend: SpendMeter;
}

/**
 * Ready when not stopping, the first probe round has finished, the state store answers and, for
 * every policy, at least its write quorum of providers is not down.
 */
export async function readinessOf(src: StatusSource): Promise<Readiness> {
  const rt = src.runtime;
  const health = rt.router.health;
  const reasons: string[] = [];
  const providers: Readiness['providers'] = {};
  for (const s of rt.stacks) providers[s.name] = health.state(s.name);
  if (src.stopping) reasons.push('shutting down');
  if (!rt.firstProbeDone) reasons.push('starting: the first probe round has not finished');
  try {
    await src.state.backlog();
  } catch (e) {
    reasons.push(`state store ${src.state.kind} does not answer: ${describeError(e)}`);
  }
  for (const policy of rt.router.policies.all()) {
    const up = policy.providers.filter((p) => providers[p] !== undefined && providers[p] !== 'down');
    if (up.length < policy.writeQuorum) {
      const down = policy.providers.filter((p) => !up.includes(p)).map((p) => `${p}: ${health.health(p)?.reason ?? 'not configured'}`);
      reasons.push(`policy "${policy.prefix}": ${up.length} provider(s) up, write quorum is ${policy.writeQuorum} (down: ${down.join('; ')})`);
    }
  }
  return { ready: reasons.length === 0, reasons, providers };
}

/** The /status document: daemon, readiness, providers, policies, backlog, replication, scan. */
export async function statusOf(src: StatusSource): Promise<Record<string, unknown>> {
  const rt = src.runtime;
  let backlog: BacklogStats | { error: string };
  try {
    backlog = await src.state.backlog();
  } catch (e) {
    backlog = { error: describeError(e) };
  }
  const readiness = await readinessOf(src);
  return {
    daemon: {
      pid: process.pid, startedAt: src.startedAt, uptimeSeconds: Math.round((Date.now() - src.startedAt.getTime()) / 1000), config: src.configFile ?? null,
      configLoadedAt: src.configLoadedAt, lastReload: src.lastReload ?? null, stopping: src.stopping, listen: src.listen ? `${src.listen.host}:${src.listen.port}` : null,
    },
    ready: readiness.ready,
    reasons: readiness.reasons,
    providers: rt.stacks.map((s) => {
      const h = rt.router.health.health(s.name);
      return {
        name: s.name, url: s.url, state: h?.state, reason: h?.reason, since: h?.since, breaker: s.breaker?.state() ?? null, errorRate: h?.errorRate,
        requests: h?.requests, ewmaMs: h?.ewmaMs ?? null, p50Ms: h?.p50Ms ?? null, p95Ms: h?.p95Ms ?? null, lastProbe: h?.lastProbe ?? null,
        inconclusiveProbes: h?.inconclusiveProbes ?? 0,
      };
    }),
    policies: rt.router.policies.all().map((p) => ({ prefix: p.prefix, replicas: p.replicas, writeQuorum: p.writeQuorum, providers: p.providers, pin: p.pin })),
    backlog,
    replication: { ...src.totals },
    spend: await src.spend.report(src.state),
    scan: {
      intervalMs: rt.config.daemon.scan.intervalMs, cursor: rt.scanner.cursor ?? null, passes: rt.scanner.passes, last: rt.scanner.lastReport ?? null,
    },
    state: { kind: src.state.kind },
    coordination: await rt.coordination.status().catch((e: unknown) => ({ error: describeError(e) })),
  };
}
