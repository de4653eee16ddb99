import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { BlobStore } from '../core/types.js';
import { loadConfig } from '../config/load.js';
import type { CloudmuxConfig } from '../config/schema.js';
import { TimeoutStore } from '../layers/timeout.js';
import type { BreakerEvent } from '../layers/breaker.js';
import type { Router } from '../router/router.js';
import type { HealthChange } from '../router/health-tracker.js';
import { ReplicationWorker } from '../replication/worker.js';
import { openStateStore } from '../state/index.js';
import type { BacklogStats, StateStore } from '../state/types.js';
import { AntiEntropyScanner, type ScanRepair, type ScanReport } from '../replication/anti-entropy.js';
import { DaemonHttpServer, type HttpHandlers } from './http.js';
import { createDaemonLogger, describeError } from './logger.js';
import { DaemonMetrics } from './metrics.js';
import { openProviderStacks, openRouter, type ProviderStack } from '../router/open-router.js';

export interface DaemonOptions {
  /** Config file; read at start (unless `config` is given) and again by {@link Daemon.reload} / SIGHUP. */
  configFile?: string;
  /** A config already loaded and validated. */
  config?: CloudmuxConfig;
  /** Where `${VAR}` references are looked up on (re)load. Default: process.env. */
  env?: Record<string, string | undefined>;
  /** Default: pino JSON lines on stdout at `daemon.logLevel`. */
  logger?: Logger;
  /** Overrides `daemon.listen` of the config (e.g. port 0 for any free port). */
  listen?: { host?: string; port?: number };
  /** Export Node process metrics (CPU, memory, event loop). Default true. */
  processMetrics?: boolean;
}

export interface Readiness {
  ready: boolean;
  /** Why not ready (empty when ready). */
  reasons: string[];
  providers: Record<string, 'healthy' | 'degraded' | 'down'>;
}

/** Replication totals since the daemon started (across reloads). */
export interface ReplicationTotals {
  copied: number;
  bytesCopied: number;
  deleted: number;
  obsolete: number;
  retries: number;
  deferred: number;
  deadLettered: number;
}

export interface DaemonEvents {
  /** A reload finished: applied, or refused with the reason (the old config keeps running). */
  reload: [{ ok: boolean; error?: string }];
  repair: [ScanRepair];
  scan: [ScanReport];
  /** The daemon has stopped and closed its state store. */
  stopped: [];
}

/** Everything built from one config; a reload builds a new one and swaps it in. */
interface Runtime {
  config: CloudmuxConfig;
  stacks: ProviderStack[];
  router: Router;
  worker: ReplicationWorker;
  scanner: AntiEntropyScanner;
  /** Each provider's stack below the retry layer, under the probe deadline: probes fail fast and can be the breaker's half-open trial. */
  probeStores: Record<string, BlobStore>;
  cleanup: (() => void)[];
  timers: Set<NodeJS.Timeout>;
  scanAbort: AbortController;
  scanning: Promise<unknown> | undefined;
  firstProbeDone: boolean;
  stopped: boolean;
}

/**
 * The failover daemon: runs what must keep running next to applications that use a Router with
 * the same config (and so the same catalog and outbox): canary probes and breaker tracking for
 * every provider, the replication worker draining the outbox, a scheduled anti-entropy scan, and
 * HTTP endpoints for liveness, readiness, Prometheus metrics and status.
 *
 * # Contract
 * - `reload()` (SIGHUP) swaps in a new config only if it loads, validates and opens; otherwise the
 *   running one stays and the reason is logged. In-flight copies of the old config finish (or are
 *   re-queued after `daemon.shutdownGraceMs`) before the new worker starts.
 * - `stop()` (SIGTERM) stops claiming work, lets in-flight copies finish for the grace period,
 *   aborts the rest (their outbox entries are rescheduled, never removed), then closes the
 *   providers and the state store. Outbox entries leave the store only when their work is done,
 *   so a kill -9 at any point loses nothing: leased entries are taken up again once their lease
 *   (`replication.leaseMs`) expires.
 * - Ready when the state store answers and, for every policy, at least its write quorum of
 *   providers is not down.
 * - One log event per state change (provider health, breaker, dead letter, repair, reload), with
 *   its reason. Config values are never logged; provider URLs only with credentials masked.
 */
export class Daemon extends EventEmitter<DaemonEvents> {
  readonly log: Logger;
  readonly metrics: DaemonMetrics;
  readonly startedAt = new Date();
  readonly totals: ReplicationTotals = { copied: 0, bytesCopied: 0, deleted: 0, obsolete: 0, retries: 0, deferred: 0, deadLettered: 0 };
  /** Resolves once stop() has finished. */
  readonly stopped: Promise<void>;
  private readonly configFile: string | undefined;
  private readonly env: Record<string, string | undefined> | undefined;
  private readonly listenOverride: { host?: string; port?: number } | undefined;
  private rt!: Runtime;
  private state!: StateStore;
  private http: DaemonHttpServer | undefined;
  private configLoadedAt = new Date();
  private lastReload: { at: Date; ok: boolean; error?: string } | undefined;
  private lastScanAt: number | undefined;
  private stopping = false;
  private queue: Promise<unknown> = Promise.resolve();
  private resolveStopped!: () => void;

  private constructor(opts: DaemonOptions, config: CloudmuxConfig) {
    super();
    this.configFile = opts.configFile;
    this.env = opts.env;
    this.listenOverride = opts.listen;
    this.log = opts.logger ?? createDaemonLogger(config.daemon.logLevel);
    this.stopped = new Promise((resolve) => (this.resolveStopped = resolve));
    this.metrics = new DaemonMetrics({
      providers: () => this.rt.stacks.map((s) => ({ name: s.name, health: this.rt.router.health.health(s.name), breaker: s.breaker?.state() })),
      backlog: () => this.state.backlog(),
      readiness: () => this.readiness(),
      lastScanAt: () => this.lastScanAt,
    }, { processMetrics: opts.processMetrics });
  }

  /** Loads the config, opens the state store and providers, starts probes, worker, scan and HTTP. */
  static async start(opts: DaemonOptions): Promise<Daemon> {
    const config = opts.config ?? (opts.configFile ? await loadConfig(opts.configFile, { env: opts.env }) : undefined);
    if (!config) throw new TypeError('Daemon.start needs a config or a configFile');
    const d = new Daemon(opts, config);
    d.state = await openStateStore(config.state);
    try {
      d.rt = await d.buildRuntime(config);
    } catch (e) {
      await d.state.close();
      throw e;
    }
    const listen = d.listenAddress(config);
    try {
      d.http = await DaemonHttpServer.listen(listen.host, listen.port, d.handlers());
    } catch (e) {
      await d.disposeRuntime(d.rt);
      await d.state.close();
      throw e;
    }
    d.wireRuntime(d.rt);
    d.runRuntime(d.rt);
    const addr = d.http.address();
    d.log.info({
      event: 'daemon.started', listen: `${addr.host}:${addr.port}`, config: d.configFile, state: d.state.toString(),
      providers: d.rt.stacks.map((s) => ({ name: s.name, url: s.url })),
    }, `cloudmux daemon listening on http://${addr.host}:${addr.port}`);
    if (!isLoopback(addr.host)) d.log.warn({ event: 'daemon.listen_not_loopback', host: addr.host }, 'the HTTP endpoints are reachable from other hosts; /status names providers and keys');
    return d;
  }

  /** Where the HTTP endpoints listen (port resolved when 0 was asked for). */
  address(): { host: string; port: number } {
    return this.http!.address();
  }

  /** The config running now. */
  get config(): CloudmuxConfig {
    return this.rt.config;
  }

  /** The router the daemon runs on (its health, policies, catalog and outbox). */
  get router(): Router {
    return this.rt.router;
  }

  get scanner(): AntiEntropyScanner {
    return this.rt.scanner;
  }

  /**
   * Re-reads the config file (or takes `config`) and swaps it in. An invalid config, or one whose
   * providers or state store cannot be opened, is refused: the running one stays.
   */
  reload(config?: CloudmuxConfig): Promise<{ ok: boolean; error?: string }> {
    const run = this.queue.then(() => this.reloadNow(config));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Graceful stop: no new work, in-flight copies get `graceMs` (default `daemon.shutdownGraceMs`)
   * to finish and are then aborted and re-queued; providers and the state store are closed.
   */
  stop(opts: { graceMs?: number; reason?: string } = {}): Promise<void> {
    if (this.stopping) return this.stopped;
    this.stopping = true;
    const run = this.queue.then(() => this.stopNow(opts));
    this.queue = run.catch(() => undefined);
    return this.stopped;
  }

  /**
   * SIGHUP reloads; the first SIGTERM/SIGINT stops gracefully; a second one exits at once
   * (exit code 130). Returns a function removing the handlers.
   */
  handleSignals(): () => void {
    let signals = 0;
    const onHup = (): void => {
      this.log.info({ event: 'signal', signal: 'SIGHUP' }, 'SIGHUP: reloading config');
      void this.reload();
    };
    const onStop = (signal: NodeJS.Signals): void => {
      signals++;
      if (signals === 1) {
        this.log.info({ event: 'signal', signal }, `${signal}: stopping (again to exit at once)`);
        void this.stop({ reason: signal });
        return;
      }
      this.log.warn({ event: 'daemon.exit_now', signal }, `second ${signal}: exiting at once; leased outbox entries are taken up again after their lease expires`);
      process.exit(130);
    };
    process.on('SIGHUP', onHup);
    process.on('SIGTERM', onStop);
    process.on('SIGINT', onStop);
    return () => {
      process.off('SIGHUP', onHup);
      process.off('SIGTERM', onStop);
      process.off('SIGINT', onStop);
    };
  }

  /** Runs the next anti-entropy slice now (also what the schedule calls). */
  scanNow(): Promise<ScanReport> {
    const rt = this.rt;
    const p = rt.scanner.scanSlice(rt.scanAbort.signal);
    rt.scanning = p.catch(() => undefined);
    return p;
  }

  async readiness(): Promise<Readiness> {
    const rt = this.rt;
    const reasons: string[] = [];
    const providers: Readiness['providers'] = {};
    for (const s of rt.stacks) providers[s.name] = rt.router.health.state(s.name);
    if (this.stopping) reasons.push('shutting down');
    if (!rt.firstProbeDone) reasons.push('starting: the first probe round has not finished');
    try {
      await this.state.backlog();
    } catch (e) {
      reasons.push(`state store ${this.state.kind} does not answer: ${describeError(e)}`);
    }
    for (const policy of rt.router.policies.all()) {
      const up = policy.providers.filter((p) => providers[p] !== undefined && providers[p] !== 'down');
      if (up.length < policy.writeQuorum) {
        const down = policy.providers.filter((p) => !up.includes(p)).map((p) => `${p}: ${rt.router.health.health(p)?.reason ?? 'not configured'}`);
        reasons.push(`policy "${policy.prefix}": ${up.length} provider(s) up, write quorum is ${policy.writeQuorum} (down: ${down.join('; ')})`);
      }
    }
    return { ready: reasons.length === 0, reasons, providers };
  }

  async status(): Promise<Record<string, unknown>> {
    const rt = this.rt;
    let backlog: BacklogStats | { error: string };
    try {
      backlog = await this.state.backlog();
    } catch (e) {
      backlog = { error: describeError(e) };
    }
    const readiness = await this.readiness();
    const addr = this.http?.address();
    return {
      daemon: {
        pid: process.pid, startedAt: this.startedAt, uptimeSeconds: Math.round((Date.now() - this.startedAt.getTime()) / 1000), config: this.configFile ?? null,
        configLoadedAt: this.configLoadedAt, lastReload: this.lastReload ?? null, stopping: this.stopping, listen: addr ? `${addr.host}:${addr.port}` : null,
      },
      ready: readiness.ready,
      reasons: readiness.reasons,
      providers: rt.stacks.map((s) => {
        const h = rt.router.health.health(s.name);
        return {
          name: s.name, url: s.url, state: h?.state, reason: h?.reason, since: h?.since, breaker: s.breaker?.state() ?? null, errorRate: h?.errorRate,
          requests: h?.requests, ewmaMs: h?.ewmaMs ?? null, p50Ms: h?.p50Ms ?? null, p95Ms: h?.p95Ms ?? null, lastProbe: h?.lastProbe ?? null,
        };
      }),
      policies: rt.router.policies.all().map((p) => ({ prefix: p.prefix, replicas: p.replicas, writeQuorum: p.writeQuorum, providers: p.providers, pin: p.pin })),
      backlog,
      replication: { ...this.totals },
      scan: {
        intervalMs: rt.config.daemon.scan.intervalMs, cursor: rt.scanner.cursor ?? null, passes: rt.scanner.passes, last: rt.scanner.lastReport ?? null,
      },
      state: { kind: this.state.kind },
    };
  }

  // ---------------------------------------------------------------------------------------------

  private handlers(): HttpHandlers {
    return {
      readiness: () => this.readiness(),
      metrics: async () => ({ contentType: this.metrics.contentType, body: await this.metrics.metrics() }),
      status: () => this.status(),
    };
  }

  private listenAddress(config: CloudmuxConfig): { host: string; port: number } {
    return { host: this.listenOverride?.host ?? config.daemon.listen.host, port: this.listenOverride?.port ?? config.daemon.listen.port };
  }

  private async buildRuntime(config: CloudmuxConfig): Promise<Runtime> {
    const stacks = await openProviderStacks(config);
    let router: Router;
    try {
      router = await openRouter(config, { state: this.state, stacks, closeResources: false });
    } catch (e) {
      await Promise.allSettled(stacks.map((s) => s.store.close()));
      throw e;
    }
    const worker = ReplicationWorker.forRouter(router, { ...config.replication });
    const scanner = new AntiEntropyScanner({ router, ...config.daemon.scan });
    const probeStores: Record<string, BlobStore> = {};
    for (const s of stacks) {
      const below = s.breaker ?? s.rateLimit ?? s.instrumented ?? s.driver;
      probeStores[s.name] = new TimeoutStore(below, { timeoutMs: config.daemon.probeTimeoutMs });
    }
    return { config, stacks, router, worker, scanner, probeStores, cleanup: [], timers: new Set(), scanAbort: new AbortController(), scanning: undefined, firstProbeDone: false, stopped: false };
  }

  /** Wires events to logs and metrics. */
  private wireRuntime(rt: Runtime): void {
    const log = this.log;
    for (const s of rt.stacks) {
      rt.cleanup.push(this.metrics.bindStack(s));
      let lastFailure: string | undefined;
      const onSample = (sample: { outcome: string; op: string }): void => {
        if (sample.outcome !== 'ok' && sample.outcome !== 'NotFound' && sample.outcome !== 'Aborted') lastFailure = `${sample.op}: ${sample.outcome}`;
      };
      s.instrumented?.on('sample', onSample);
      rt.cleanup.push(() => s.instrumented?.off('sample', onSample));
      const breaker = s.breaker;
      if (breaker) {
        const on = (to: 'open' | 'halfOpen' | 'close') => (ev: BreakerEvent): void => {
          this.metrics.breakerTransitions.inc({ provider: s.name, op_class: ev.opClass, to });
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
      this.metrics.healthTransitions.inc({ provider: ch.provider, to: ch.to });
      const fields = { event: `provider.${ch.to === 'healthy' ? 'up' : ch.to}`, provider: ch.provider, from: ch.from, to: ch.to, reason: ch.reason };
      if (ch.to === 'down') log.error(fields, `${ch.provider} is down: ${ch.reason}`);
      else if (ch.to === 'degraded') log.warn(fields, `${ch.provider} is degraded: ${ch.reason}`);
      else log.info(fields, `${ch.provider} is up again`);
    };
    rt.router.health.on('change', onHealth);
    rt.cleanup.push(() => rt.router.health.off('change', onHealth));

    rt.worker.on('done', (ev) => {
      this.metrics.replicationEntries.inc({ kind: ev.entry.kind, outcome: ev.outcome });
      if (ev.outcome === 'copied') {
        this.totals.copied++;
        this.totals.bytesCopied += ev.bytes ?? 0;
        this.metrics.replicatedBytes.inc({ provider: ev.entry.provider }, ev.bytes ?? 0);
      } else if (ev.outcome === 'deleted') this.totals.deleted++;
      else if (ev.outcome === 'obsolete') this.totals.obsolete++;
      log.debug({ event: 'outbox.done', id: ev.entry.id, kind: ev.entry.kind, key: ev.entry.key, provider: ev.entry.provider, outcome: ev.outcome, source: ev.source, bytes: ev.bytes }, 'outbox entry done');
    });
    rt.worker.on('retry', (ev) => {
      this.metrics.replicationRetries.inc({ provider: ev.entry.provider, counted: String(ev.counted) });
      if (ev.counted) this.totals.retries++;
      else this.totals.deferred++;
      log.debug({ event: 'outbox.retry', id: ev.entry.id, key: ev.entry.key, provider: ev.entry.provider, reason: ev.error, at: ev.at, counted: ev.counted }, 'outbox entry rescheduled');
    });
    rt.worker.on('dead', (ev) => {
      this.totals.deadLettered++;
      this.metrics.deadLetters.inc({ provider: ev.entry.provider });
      log.error({ event: 'outbox.dead_letter', id: ev.entry.id, kind: ev.entry.kind, key: ev.entry.key, provider: ev.entry.provider, reason: ev.reason },
        `gave up on ${ev.entry.kind} of ${ev.entry.key} to ${ev.entry.provider}: ${ev.reason}`);
    });
    rt.worker.on('error', (e) => log.error({ event: 'outbox.error', err: e }, `replication worker: ${describeError(e)}`));

    rt.scanner.on('repair', (r) => {
      this.metrics.repairs.inc({ provider: r.provider, problem: r.problem, action: r.action });
      log.warn({ event: 'scan.repair', ...r }, `anti-entropy: ${r.key} on ${r.provider}: ${r.problem} (${r.detail}) → ${r.action}`);
      this.emit('repair', r);
    });
    rt.scanner.on('report', (r) => {
      this.lastScanAt = r.finishedAt.getTime();
      this.metrics.scanSlices.inc({ result: r.errors.length > 0 ? 'errors' : 'ok' });
      this.metrics.scanKeys.inc(r.keysChecked);
      if (r.passComplete) this.metrics.scanPasses.inc();
      const { repairs: _r, ...summary } = r;
      const level = r.repairCount > 0 || r.errors.length > 0 || r.skippedProviders.length > 0 ? 'info' : 'debug';
      log[level]({ event: 'scan.slice', ...summary }, `anti-entropy slice: ${r.keysChecked} keys, ${r.repairCount} repairs, ${r.deferred} deferred`);
      this.emit('scan', r);
    });
  }

  /** Starts probes, the worker and the scan schedule. */
  private runRuntime(rt: Runtime): void {
    this.startProbes(rt);
    rt.worker.start();
    this.scheduleScan(rt);
  }

  private startProbes(rt: Runtime): void {
    const interval = rt.config.health.probeIntervalMs;
    if (interval <= 0) {
      rt.firstProbeDone = true;
      return;
    }
    const round = async (): Promise<void> => {
      await Promise.all(rt.stacks.map((s) => this.probe(rt, s.name)));
      rt.firstProbeDone = true;
    };
    const tick = (): void => {
      if (rt.stopped) return;
      void round().finally(() => this.after(rt, interval, tick));
    };
    if (rt.firstProbeDone) this.after(rt, interval, tick);
    else tick();
  }

  /**
   * One canary probe. A failure is confirmed by a second probe soon after (a fifth of the
   * interval), so a provider that went away is down within about one interval, not two.
   */
  private async probe(rt: Runtime, name: string, confirming = false): Promise<void> {
    if (rt.stopped) return;
    const ok = await rt.router.health.probe(name, rt.probeStores[name]!);
    this.metrics.probes.inc({ provider: name, result: ok ? 'ok' : 'failed' });
    if (!ok) {
      const last = rt.router.health.health(name)?.lastProbe;
      this.log.debug({ event: 'probe.failed', provider: name, reason: last?.error }, `${name}: canary probe failed`);
      if (!confirming && rt.router.health.state(name) !== 'down') {
        this.after(rt, Math.max(50, Math.round(rt.config.health.probeIntervalMs / 5)), () => void this.probe(rt, name, true));
      }
    }
  }

  private scheduleScan(rt: Runtime): void {
    const interval = rt.config.daemon.scan.intervalMs;
    if (interval <= 0) return;
    const tick = (): void => {
      if (rt.stopped) return;
      const p = rt.scanner.scanSlice(rt.scanAbort.signal).catch((e: unknown) => {
        if (!rt.scanAbort.signal.aborted) this.log.error({ event: 'scan.failed', err: e }, `anti-entropy slice failed: ${describeError(e)}`);
      });
      rt.scanning = p;
      void p.finally(() => this.after(rt, interval, tick));
    };
    this.after(rt, interval, tick);
  }

  /** A timer owned by the runtime (cleared when it stops); it never keeps the process alive on its own. */
  private after(rt: Runtime, ms: number, fn: () => void): void {
    if (rt.stopped) return;
    const t = setTimeout(() => {
      rt.timers.delete(t);
      fn();
    }, ms);
    t.unref();
    rt.timers.add(t);
  }

  /** Stops taking work: probes, scan, then the worker (in-flight copies get `graceMs`). */
  private async stopRuntime(rt: Runtime, graceMs: number): Promise<void> {
    rt.stopped = true;
    for (const t of rt.timers) clearTimeout(t);
    rt.timers.clear();
    rt.scanAbort.abort();
    // A copy that ignores its abort must not hold the stop forever; its entry stays leased and is retried after the lease.
    const bound = new Promise<void>((resolve) => setTimeout(resolve, graceMs + 5_000).unref());
    await Promise.race([rt.worker.stop(graceMs), bound]);
    await Promise.race([rt.scanning ?? Promise.resolve(), bound]);
    for (const c of rt.cleanup.splice(0)) c();
  }

  /** Closes the runtime's router and providers (not the shared state store). */
  private async disposeRuntime(rt: Runtime): Promise<void> {
    rt.stopped = true;
    await rt.router.close();
    await Promise.allSettled(rt.stacks.map((s) => s.store.close()));
  }

  private async reloadNow(given: CloudmuxConfig | undefined): Promise<{ ok: boolean; error?: string }> {
    if (this.stopping) return { ok: false, error: 'shutting down' };
    const refuse = (why: string): { ok: false; error: string } => {
      this.metrics.reloads.inc({ result: 'invalid' });
      this.lastReload = { at: new Date(), ok: false, error: why };
      this.log.error({ event: 'config.reload_failed', config: this.configFile, reason: why }, `config reload refused, keeping the running config: ${why}`);
      this.emit('reload', { ok: false, error: why });
      return { ok: false, error: why };
    };
    let config: CloudmuxConfig;
    try {
      if (given) config = given;
      else if (this.configFile) config = await loadConfig(this.configFile, { env: this.env });
      else return refuse('no config file to reload from');
    } catch (e) {
      return refuse(describeError(e));
    }
    const old = this.rt;
    const stateChanged = JSON.stringify(config.state ?? null) !== JSON.stringify(old.config.state ?? null);
    const oldListen = this.listenAddress(old.config);
    const newListen = this.listenAddress(config);
    const listenChanged = oldListen.host !== newListen.host || oldListen.port !== newListen.port;
    let state: StateStore | undefined;
    let next: Runtime | undefined;
    let http: DaemonHttpServer | undefined;
    const previousState = this.state;
    try {
      if (stateChanged) {
        state = await openStateStore(config.state);
        this.state = state;
      }
      next = await this.buildRuntime(config);
      if (listenChanged) http = await DaemonHttpServer.listen(newListen.host, newListen.port, this.handlers());
      this.wireRuntime(next);
      // Probe the new providers before they take over, so readiness does not start from "no data".
      await Promise.race([
        Promise.all(next.stacks.map((s) => this.probe(next!, s.name, true))),
        new Promise((resolve) => setTimeout(resolve, config.daemon.probeTimeoutMs).unref()),
      ]);
      next.firstProbeDone = true;
    } catch (e) {
      this.state = previousState;
      if (next) {
        for (const c of next.cleanup.splice(0)) c();
        await this.disposeRuntime(next);
      }
      await http?.close();
      await state?.close();
      return refuse(describeError(e));
    }
    await this.stopRuntime(old, old.config.daemon.shutdownGraceMs);
    await this.disposeRuntime(old);
    if (stateChanged) await previousState.close();
    else next.scanner.cursor = old.scanner.cursor;
    next.scanner.passes = old.scanner.passes;
    if (http) {
      const oldHttp = this.http;
      this.http = http;
      await oldHttp?.close();
    }
    this.rt = next;
    this.configLoadedAt = new Date();
    this.runRuntime(next);
    this.metrics.reloads.inc({ result: 'ok' });
    this.lastReload = { at: new Date(), ok: true };
    const before = new Set(old.stacks.map((s) => s.name));
    const after = new Set(next.stacks.map((s) => s.name));
    this.log.info({
      event: 'config.reloaded', config: this.configFile,
      added: [...after].filter((n) => !before.has(n)), removed: [...before].filter((n) => !after.has(n)), stateChanged, listenChanged,
    }, 'config reloaded');
    this.emit('reload', { ok: true });
    return { ok: true };
  }

  private async stopNow(opts: { graceMs?: number; reason?: string }): Promise<void> {
    const rt = this.rt;
    const graceMs = opts.graceMs ?? rt.config.daemon.shutdownGraceMs;
    this.log.info({ event: 'daemon.stopping', reason: opts.reason ?? 'stop()', graceMs }, `stopping: no new work; in-flight copies get ${graceMs} ms`);
    try {
      await this.stopRuntime(rt, graceMs);
      const backlog = await this.state.backlog().catch(() => undefined);
      await this.disposeRuntime(rt);
      await this.http?.close();
      await this.state.close();
      this.log.info({ event: 'daemon.stopped', backlog: backlog ? { count: backlog.count, bytes: backlog.bytes, dead: backlog.dead } : undefined },
        'stopped; state store closed');
    } catch (e) {
      this.log.error({ event: 'daemon.stop_failed', err: e }, `stop failed: ${describeError(e)}`);
      throw e;
    } finally {
      this.resolveStopped();
      this.emit('stopped');
    }
  }
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.') || host === '::ffff:127.0.0.1';
}
