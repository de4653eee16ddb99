import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { loadConfig } from '../config/load.js';
import type { CloudmuxConfig } from '../config/schema.js';
import type { Router } from '../router/router.js';
import { openStateStore } from '../state/index.js';
import type { StateStore } from '../state/types.js';
import type { AntiEntropyScanner, ScanRepair, ScanReport } from '../replication/anti-entropy.js';
import { DaemonHttpServer, type HttpHandlers } from './http.js';
import { createDaemonLogger, describeError } from './logger.js';
import { DaemonMetrics } from './metrics.js';
import { SpendMeter } from '../cost/spend-meter.js';
import { observeRuntime, type ReplicationTotals } from './observe.js';
import { DaemonRuntime } from './runtime.js';
import { readinessOf, statusOf, type Readiness, type StatusSource } from './status.js';

export type { Readiness } from './status.js';
export type { ReplicationTotals } from './observe.js';

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

export interface DaemonEvents {
  /** A reload finished: applied, or refused with the reason (the old config keeps running). */
  reload: [{ ok: boolean; error?: string }];
  repair: [ScanRepair];
  scan: [ScanReport];
  /** The daemon has stopped and closed its state store. */
  stopped: [];
}

/**
 * The failover daemon's lifecycle: start, reload (SIGHUP), stop (SIGTERM). What one config runs
 * is in runtime.ts, how its events reach logs and metrics in observe.ts, /readyz and /status in
 * status.ts.
 *
 * The failover daemon runs what must keep running next to applications that use a Router with
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
 * - A provider goes down on its own failures, never on the daemon's: probe deadlines count the
 *   daemon's running time only, and a failed probe is confirmed by a second before it counts.
 * - One log event per state change (provider health, breaker, dead letter, repair, reload), with
 *   its reason. Config values are never logged; provider URLs only with credentials masked.
 */
export class Daemon extends EventEmitter<DaemonEvents> {
  readonly log: Logger;
  readonly metrics: DaemonMetrics;
  readonly startedAt = new Date();
  /** Modelled spend per provider and prefix (/status `spend`, metrics cloudmux_modelled_*). */
  readonly spend = new SpendMeter(() => this.rt.router);
  readonly totals: ReplicationTotals = { copied: 0, bytesCopied: 0, deleted: 0, obsolete: 0, retries: 0, deferred: 0, deadLettered: 0 };
  /** Resolves once stop() has finished. */
  readonly stopped: Promise<void>;
  private readonly configFile: string | undefined;
  private readonly env: Record<string, string | undefined> | undefined;
  private readonly listenOverride: { host?: string; port?: number } | undefined;
  private rt!: DaemonRuntime;
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
      adaptive: () => this.rt.worker.adaptiveStatus(),
      bandwidth: () => this.rt.worker.bandwidthStatus(),
      spend: () => this.spend.report(this.state),
    }, { processMetrics: opts.processMetrics });
  }

  /** Loads the config, opens the state store and providers, starts probes, worker, scan and HTTP. */
  static async start(opts: DaemonOptions): Promise<Daemon> {
    const config = opts.config ?? (opts.configFile ? await loadConfig(opts.configFile, { env: opts.env }) : undefined);
    if (!config) throw new TypeError('Daemon.start needs a config or a configFile');
    const d = new Daemon(opts, config);
    d.state = await openStateStore(config.state);
    try {
      d.rt = await DaemonRuntime.build(config, d.state);
    } catch (e) {
      await d.state.close();
      throw e;
    }
    const listen = d.listenAddress(config);
    try {
      d.http = await DaemonHttpServer.listen(listen.host, listen.port, d.handlers());
    } catch (e) {
      await d.rt.dispose();
      await d.state.close();
      throw e;
    }
    d.observe(d.rt);
    d.rt.start(d.log);
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
    return this.rt.scanNow();
  }

  readiness(): Promise<Readiness> {
    return readinessOf(this.statusSource());
  }

  status(): Promise<Record<string, unknown>> {
    return statusOf(this.statusSource());
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

  private statusSource(): StatusSource {
    return {
      runtime: this.rt, state: this.state, stopping: this.stopping, startedAt: this.startedAt, configFile: this.configFile,
      configLoadedAt: this.configLoadedAt, lastReload: this.lastReload, listen: this.http?.address(), totals: this.totals, spend: this.spend,
    };
  }

  private observe(rt: DaemonRuntime): void {
    observeRuntime(rt, {
      log: this.log, metrics: this.metrics, totals: this.totals, spend: this.spend,
      onRepair: (r) => this.emit('repair', r),
      onScan: (r) => {
        this.lastScanAt = r.finishedAt.getTime();
        this.emit('scan', r);
      },
    });
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
    let next: DaemonRuntime | undefined;
    let http: DaemonHttpServer | undefined;
    const previousState = this.state;
    try {
      if (stateChanged) {
        state = await openStateStore(config.state);
        this.state = state;
      }
      next = await DaemonRuntime.build(config, this.state);
      if (listenChanged) http = await DaemonHttpServer.listen(newListen.host, newListen.port, this.handlers());
      this.observe(next);
      await next.probeFirst();
    } catch (e) {
      this.state = previousState;
      if (next) {
        for (const c of next.cleanup.splice(0)) c();
        await next.dispose();
      }
      await http?.close();
      await state?.close();
      return refuse(describeError(e));
    }
    await old.stop(old.config.daemon.shutdownGraceMs);
    await old.dispose();
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
    next.start(this.log);
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
      await rt.stop(graceMs);
      const backlog = await this.state.backlog().catch(() => undefined);
      await rt.dispose();
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
