import type { Command } from 'commander';
import type { BlobStore } from '../../core/types.js';
import type { ChecksumMode } from '../../replication/copier.js';
import type { BandwidthTimetable } from '../../layers/bandwidth-timetable.js';
import type { PriorityOptions } from '../../core/priority.js';
import type { JobStatus } from '../../jobs/job-report.js';
import type { PostgresStateStore } from '../../state/postgres.js';
import { EXIT, UsageError } from '../errors.js';
import { createProgressReporter, formatBytes, formatDuration } from '../progress.js';
import { abortOnInterrupt } from '../interrupt.js';

/** The flags of a migration that runs as a worker of a job in PostgreSQL. */
export interface JobFlags {
  state?: string;
  stateSchema?: string;
  job?: string;
  lease?: string;
  sharedTpslimit?: string;
}

/** Adds `--state`, `--state-schema`, `--job`, `--lease` to a command. */
export function addJobOptions(cmd: Command): Command {
  return cmd
    .option('--state <url>', 'postgres://… : run as a worker of a migration job kept there (with --job); any number of processes may join')
    .option('--state-schema <name>', 'PostgreSQL schema of the state store', 'cloudmux')
    .option('--job <name>', 'the migration job to create or join (with --state)')
    .option('--lease <seconds>', 'how long a worker holds an object or key range without renewing; a killed worker\'s work is taken over after it', '30')
    .option('--shared-tpslimit <n>', 'requests per second to each store for all processes using it through this --state together (a token bucket per store in PostgreSQL)');
}

/** Checks the job flags against the others before anything is opened: exit 2 on a mistake. */
export function checkJobFlags(flags: JobFlags & { dryRun?: boolean; journal?: string | false }): { leaseMs: number; sharedOpsPerSecond?: number } | undefined {
  if (flags.state === undefined && flags.job === undefined) {
    if (flags.sharedTpslimit !== undefined) throw new UsageError('--shared-tpslimit needs --state postgres://… and --job NAME (the limit is kept there)');
    return undefined;
  }
  if (flags.state === undefined) throw new UsageError('--job needs --state postgres://… (where the job is kept)');
  if (flags.job === undefined) throw new UsageError('--state needs --job NAME (the job to create or join)');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(flags.job)) throw new UsageError(`--job: expected letters, digits, '.', '_' or '-' (at most 128), got ${JSON.stringify(flags.job)}`);
  if (!/^postgres(ql)?:\/\//.test(flags.state)) throw new UsageError('--state: expected a postgres:// URL');
  if (flags.dryRun) throw new UsageError('--dry-run cannot be combined with --state (a job records what it copies); run it without --state');
  if (typeof flags.journal === 'string') throw new UsageError('--journal cannot be combined with --state: the job is the journal');
  const lease = Number(flags.lease ?? '30');
  if (!(lease > 0) || !Number.isFinite(lease)) throw new UsageError(`--lease: expected a positive number of seconds, got ${JSON.stringify(flags.lease)}`);
  const shared = flags.sharedTpslimit === undefined ? undefined : Number(flags.sharedTpslimit);
  if (shared !== undefined && !(shared > 0 && Number.isFinite(shared))) throw new UsageError(`--shared-tpslimit: expected a positive number, got ${JSON.stringify(flags.sharedTpslimit)}`);
  return { leaseMs: Math.round(lease * 1000), ...(shared !== undefined ? { sharedOpsPerSecond: shared } : {}) };
}

async function openState(flags: JobFlags): Promise<PostgresStateStore> {
  const { PostgresStateStore } = await import('../../state/postgres.js');
  // One worker needs few connections: its lister, its claims and renewals (see docs/deploy.md).
  return PostgresStateStore.open({ url: flags.state!, schema: flags.stateSchema ?? 'cloudmux', maxConnections: 4 });
}

/**
 * Runs this process as a worker of the job until the job is complete (or SIGINT/SIGTERM), with
 * the same progress output as a local run; the final summary is the job's, whoever prints it.
 */
export async function runJobMigration(src: BlobStore, dst: BlobStore, names: { src: string; dst: string }, o: {
  flags: JobFlags & { json?: boolean }; leaseMs: number; include: string[]; exclude: string[]; concurrency: number | 'auto'; adaptive?: { min: number; max: number };
  checksum: ChecksumMode; retries: number; deleteSource?: boolean; bytesPerSecond?: number; bwlimit?: BandwidthTimetable; opsPerSecond?: number; sharedOpsPerSecond?: number;
  preflightTimeoutMs: number; priority?: PriorityOptions; metered?: boolean;
}): Promise<void> {
  const state = await openState(o.flags);
  const { runJobWorker } = await import('../../jobs/job-worker.js');
  const reporter = createProgressReporter({ json: o.flags.json, tty: process.stderr.isTTY === true });
  const ctl = abortOnInterrupt();
  try {
    const r = await runJobWorker(src, dst, {
      state, job: o.flags.job!, names, include: o.include, exclude: o.exclude, checksum: o.checksum, deleteSource: o.deleteSource,
      concurrency: o.concurrency, adaptive: o.adaptive, retries: o.retries, bytesPerSecond: o.bytesPerSecond, bwlimit: o.bwlimit, opsPerSecond: o.opsPerSecond,
      sharedOpsPerSecond: o.sharedOpsPerSecond, leaseMs: o.leaseMs, priority: o.priority, metered: o.metered,
      preflightTimeoutMs: o.preflightTimeoutMs, signal: ctl.signal, onEvent: (e) => reporter.onEvent(e),
    });
    reporter.finish(r.summary);
    process.exitCode = r.summary.failed > 0 || r.summary.incomplete ? EXIT.failed : EXIT.ok;
  } catch (e) {
    reporter.stop();
    throw e;
  } finally {
    ctl.release();
    await state.close();
  }
}

/** `cloudmux migrate status --state … --job NAME [--json]`. */
export function registerStatus(migrate: Command): void {
  migrate
    .command('status')
    .description('progress of a migration job kept in PostgreSQL: objects, bytes, rate, workers, errors (from any machine)')
    .option('--state <url>', 'postgres://… where the job is kept (required)')
    .option('--state-schema <name>', 'PostgreSQL schema of the state store', 'cloudmux')
    .option('--job <name>', 'the job (required)')
    .option('--json', 'one JSON object')
    .action(async (_opts: unknown, cmd: Command) => {
      // `migrate` declares the same flags, and commander gives them to whichever command knows them first.
      const flags = cmd.optsWithGlobals<JobFlags & { json?: boolean }>();
      if (flags.state === undefined || flags.job === undefined) throw new UsageError('migrate status needs --state postgres://… and --job NAME');
      if (!/^postgres(ql)?:\/\//.test(flags.state)) throw new UsageError('--state: expected a postgres:// URL');
      const state = await openState(flags);
      try {
        const { readJobStatus } = await import('../../jobs/job-report.js');
        const status = await readJobStatus(state, flags.job!);
        process.stdout.write(flags.json ? `${JSON.stringify(status)}\n` : formatStatus(status));
      } finally {
        await state.close();
      }
    });
}

/** The status for people: one block, workers one a line. */
export function formatStatus(s: JobStatus): string {
  const m = s.summary;
  const lines = [
    `job ${s.job}: ${s.state} — ${s.spec.src} -> ${s.spec.dst} (checksum ${s.spec.checksum}${s.spec.deleteSource ? ', delete-source' : ''})`,
    `objects: ${m.listed} listed (${formatBytes(m.listedBytes)}), ${m.copied} copied, ${m.identical} identical, ${m.failed} failed, ${m.vanished} vanished, `
      + `${s.objects.pending ?? 0} waiting, ${s.objects.claimed ?? 0} in flight; ${m.extraAtDestination} only at the destination`,
    `bytes: ${formatBytes(m.bytes)} copied in ${formatDuration(m.durationMs / 1000)} (${formatBytes(s.bytesPerSecond)}/s)`,
    `listing: ${s.ranges.done} of ${s.ranges.total} key ranges done, ${s.ranges.listing} being listed`,
    'workers:',
    ...s.workers.map((w) => `  ${w.worker} (${w.host} pid ${w.pid}) ${w.state}: ${w.objects} objects, ${formatBytes(w.bytes)}, ${w.errors} errors, holding ${w.holding}, seen ${formatDuration(w.lastSeenMsAgo / 1000)} ago`),
    ...(m.failures.length > 0 ? ['failures:', ...m.failures.slice(0, 20).map((f) => `  ${f.key}: ${f.reason}`)] : []),
  ];
  return `${lines.join('\n')}\n`;
}
