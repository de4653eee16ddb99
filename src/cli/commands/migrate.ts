import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { BYTE_SIZE_EXAMPLES, parseByteSize } from '../../core/byte-size.js';
import { isCloudmuxError } from '../../core/errors.js';
import type { BlobStore } from '../../core/types.js';
import { openStore, parseStoreUrl, redactUrl } from '../../registry.js';
import type { ChecksumMode } from '../../replication/copier.js';
import { EXIT, UsageError, describeError } from '../errors.js';
import { BandwidthTimetable } from '../../layers/bandwidth-timetable.js';
import type { PriorityClass, PriorityRule } from '../../core/priority.js';
import { createProgressReporter } from '../progress.js';
import { addChunkedOption, chunkedStore, chunkedTotals, type ChunkedFlags } from '../chunked-flags.js';
import { addEncryptionOptions, decryptingSide, encryptingSide, type TreeSide } from '../encryption-flags.js';
import { addJobOptions, checkJobFlags, registerStatus, runJobMigration, type JobFlags } from './migrate-job.js';
import { abortOnInterrupt } from '../interrupt.js';
import { collect } from '../repeatable.js';

/** `50M` → 52428800: core/byte-size.ts's reading (binary multiples, as --bwlimit and the config read them). */
export function parseSize(value: string, flag: string): number {
  const n = parseByteSize(value);
  if (n === undefined) throw new UsageError(`${flag}: expected ${BYTE_SIZE_EXAMPLES}, got ${JSON.stringify(value)}`);
  if (!(n > 0)) throw new UsageError(`${flag}: must be positive, got ${JSON.stringify(value)}`);
  return n;
}

/**
 * `--bwlimit`: one rate (`50M`: source bytes per second, as before), `off`, `UP:DOWN`, or a
 * timetable `"08:00,1M 19:00,off"` (see BandwidthTimetable). Bad input is a usage error naming the entry.
 */
export function parseBwlimit(value: string, flag = '--bwlimit'): { bytesPerSecond?: number; bwlimit?: BandwidthTimetable } {
  let table: BandwidthTimetable;
  try {
    table = BandwidthTimetable.parse(value);
  } catch (e) {
    throw new UsageError(`${flag}: ${describeError(e)}`);
  }
  if (table.unlimited) return {};
  const same = table.constantSymmetric;
  return same !== undefined ? { bytesPerSecond: same } : { bwlimit: table };
}

export function parsePositiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`${flag}: expected a positive integer, got ${JSON.stringify(value)}`);
  return n;
}

/**
 * The copier's modes (replication/copier.ts CHECKSUM_MODES), listed here so that defining the
 * command does not load the copier; the Record type makes the compiler check that none is missing.
 */
const checksumModes: Record<ChecksumMode, true> = { auto: true, sha256: true, native: true, 'size-only': true };
export const CHECKSUM_MODES = Object.keys(checksumModes) as readonly ChecksumMode[];

export function parseChecksumMode(value: string, flag = '--checksum'): ChecksumMode {
  if (!(CHECKSUM_MODES as readonly string[]).includes(value)) throw new UsageError(`${flag}: expected one of ${CHECKSUM_MODES.join('|')}, got ${JSON.stringify(value)}`);
  return value as ChecksumMode;
}

/**
 * `--concurrency`: a positive integer, or `auto` (adaptive, AIMD per side, between 1 and 64) or
 * `auto:MIN-MAX` with its bounds.
 */
export function parseConcurrency(value: string, flag = '--concurrency'): { concurrency: number | 'auto'; adaptive?: { min: number; max: number } } {
  const m = /^auto(?::(\d+)-(\d+))?$/.exec(value.trim());
  if (!m) return { concurrency: parsePositiveInt(value, flag) };
  if (m[1] === undefined) return { concurrency: 'auto' };
  const min = Number(m[1]);
  const max = Number(m[2]);
  if (!(min >= 1 && max >= min && Number.isSafeInteger(max))) throw new UsageError(`${flag}: expected auto:MIN-MAX with 1 ≤ MIN ≤ MAX, got ${JSON.stringify(value)}`);
  return { concurrency: 'auto', adaptive: { min, max } };
}


/**
 * A side of a migration: a store URL (or plain path), or with `--config` the name of a configured
 * provider. Returns the opened store and a printable (credential-free) name. `readOnly`: a local
 * directory is opened so that nothing in it is created or changed (sources, verify, dry runs).
 */
export async function openSide(arg: string, flag: string, configFile: string | undefined, extra: Record<string, unknown> = {}, mustExist = true, readOnly = false): Promise<{ store: BlobStore; name: string }> {
  const withMode = (u: URL): Record<string, unknown> => (readOnly && u.protocol === 'file:' ? { ...extra, readOnly: true } : extra);
  if (configFile && /^[a-z][a-z0-9_-]*$/.test(arg)) {
    const { loadConfig } = await import('../../config/load.js');
    const config = await loadConfig(configFile);
    const p = config.providers.find((x) => x.name === arg);
    if (p) return { store: await openStore(p.url, { ...p.options, ...withMode(parseStoreUrl(p.url)) }), name: redactUrl(p.url) };
  }
  let url: URL;
  try {
    url = parseStoreUrl(arg);
  } catch (e) {
    throw new UsageError(`${flag}: ${describeError(e)}`);
  }
  // A missing source directory would otherwise list as empty and "succeed" with nothing copied.
  if (url.protocol === 'file:' && mustExist && !existsSync(fileURLToPath(url))) throw new UsageError(`${flag} ${fileURLToPath(url)}: no such directory`);
  try {
    const options = withMode(url);
    return { store: await openStore(url, Object.keys(options).length > 0 ? options : undefined), name: redactUrl(url.href) };
  } catch (e) {
    if (isCloudmuxError(e) && (e.code === 'InvalidConfig' || e.code === 'NotSupported' || e.code === 'InvalidArgument')) throw new UsageError(`${flag} ${redactUrl(arg)}: ${e.message}`);
    throw e;
  }
}

/**
 * `--priority CLASS=SPEC` (repeatable, first match wins): SPEC is a key glob (`db/**`), or
 * `size>N` / `size<N` with a size such as 100M.
 */
export function parsePriorityFlags(values: string[], flag = '--priority'): PriorityRule[] {
  return values.map((v) => {
    const m = /^(critical|normal|bulk)=(.+)$/.exec(v);
    if (!m) throw new UsageError(`${flag}: expected CLASS=SPEC with CLASS one of critical|normal|bulk, got ${JSON.stringify(v)}`);
    const cls = m[1] as PriorityClass;
    const spec = m[2]!;
    const size = /^size\s*([<>])\s*(.+)$/.exec(spec);
    if (size) return size[1] === '>' ? { class: cls, minSize: parseSize(size[2]!, flag) + 1 } : { class: cls, maxSize: parseSize(size[2]!, flag) - 1 };
    return { class: cls, match: spec };
  });
}

export interface MigrateFlags extends ChunkedFlags, JobFlags {
  include: string[];
  exclude: string[];
  concurrency?: string;
  partSize?: string;
  bwlimit?: string;
  tpslimit?: string;
  checksum: string;
  dryRun?: boolean;
  deleteSource?: boolean;
  journal?: string | false;
  json?: boolean;
  config?: string;
  retries?: string;
  preflightTimeout?: string;
  priority?: string[];
  metered?: boolean;
}

export function register(program: Command): void {
  const cmd = program
    .command('migrate')
    .description('copy every object from <src> to <dst> that is missing or differs there, verify each copy, resumably')
    .argument('<src>', 'source: store URL (s3://bucket/prefix, gs://…, az://account/container/prefix, file:///dir, memory://name) or a provider name from --config')
    .argument('<dst>', 'destination, same forms as <src>')
    .option('--include <glob>', 'only keys matching this glob (repeatable; ** crosses /)', collect, [])
    .option('--exclude <glob>', 'never keys matching this glob (repeatable; wins over --include)', collect, [])
    .option('--concurrency <n>', 'objects in flight at once (memory ≈ n × part size × the driver queue); auto or auto:MIN-MAX adapts to the providers (AIMD)', '16')
    .option('--part-size <size>', 'multipart part / block size at the destination, e.g. 16M (s3 partSize, azure blockSize)')
    .option('--bwlimit <rate>', 'bytes per second, e.g. 50M; UP:DOWN (10M:1M); off; or a timetable "08:00,1M 19:00,off" (local time)')
    .option('--tpslimit <n>', 'requests per second to both stores together')
    .option('--priority <class=spec>', 'priority class by glob or size, e.g. critical=db/** or bulk=size>100M (repeatable; critical first, small before large)', collect, [])
    .option('--metered', 'metered link: copy only critical objects (see --priority); the rest are deferred')
    .option('--checksum <mode>', `how identity is proven: ${CHECKSUM_MODES.join('|')}`, 'auto')
    .option('--dry-run', 'list and compare, print what would be copied, write nothing')
    .option('--delete-source', 'delete each source object once its copy is verified')
    .option('--journal <file>', 'resume journal (SQLite); default under $XDG_STATE_HOME/cloudmux')
    .option('--no-journal', 'run without a journal (no resume)')
    .option('--retries <n>', 'attempts per object after the first on transient errors', '8')
    .option('--preflight-timeout <seconds>', 'how long each store may take to answer before anything is written', '30')
    .option('--config <file>', 'cloudmux.yaml whose provider names may stand for <src>/<dst>')
    .option('--json', 'JSON lines on stdout: one per object, stats each second, a final summary');
  addEncryptionOptions(cmd, {
    encrypt: 'encrypt every object client-side under this key id before it reaches <dst> (the provider sees only ciphertext)',
    decrypt: 'read <src> through decryption (a tree written with --encrypt-with); checked on its first object before anything is written',
  });
  addChunkedOption(cmd);
  addJobOptions(cmd);
  cmd.action((srcArg: string, dstArg: string, flags: MigrateFlags) => runMigration(srcArg, dstArg, flags));
  registerStatus(cmd);
}

/**
 * `migrate <src> <dst>` with its flags: opens both sides, applies the encryption flags, runs the
 * migration with the progress reporter, sets the exit code. `cp -r` runs it too (without a journal).
 */
export async function runMigration(srcArg: string, dstArg: string, flags: MigrateFlags): Promise<void> {
  const { concurrency, adaptive } = parseConcurrency(flags.concurrency ?? '16');
  const retries = Number(flags.retries ?? '8');
  if (!Number.isSafeInteger(retries) || retries < 0) throw new UsageError(`--retries: expected a non-negative integer, got ${JSON.stringify(flags.retries)}`);
  const checksum = parseChecksumMode(flags.checksum);
  const bw = flags.bwlimit !== undefined ? parseBwlimit(flags.bwlimit) : {};
  const opsPerSecond = flags.tpslimit !== undefined ? parsePositiveInt(flags.tpslimit, '--tpslimit') : undefined;
  const partSize = flags.partSize !== undefined ? parseSize(flags.partSize, '--part-size') : undefined;
  const preflightTimeoutMs = parsePositiveInt(flags.preflightTimeout ?? '30', '--preflight-timeout') * 1000;
  if (flags.dryRun && flags.deleteSource) throw new UsageError('--delete-source cannot be combined with --dry-run');
  const job = checkJobFlags(flags);
  const transfers = flags.config ? (await import('../../config/load.js').then((m) => m.loadConfig(flags.config!)).catch(() => undefined))?.transfers : undefined;
  const rules = parsePriorityFlags(flags.priority ?? []);
  const priority = rules.length > 0 ? { rules } : transfers?.priority;
  const metered = flags.metered ?? transfers?.metered ?? false;
  if (flags.bwlimit === undefined && transfers?.bwlimit !== undefined) Object.assign(bw, parseBwlimit(transfers.bwlimit, 'transfers.bwlimit'));
  const { bytesPerSecond, bwlimit } = bw;

  const dstExtra: Record<string, unknown> = {};
  if (partSize !== undefined) {
    const scheme = parseStoreUrl(dstArg).protocol;
    // Each driver names its upload unit differently; all bound memory the same way.
    if (scheme === 'az:') dstExtra.blockSize = partSize;
    else if (scheme === 'gs:') dstExtra.chunkSize = partSize;
    else if (scheme === 's3:') dstExtra.partSize = partSize;
    else throw new UsageError(`--part-size applies to s3://, gs:// and az:// destinations, not ${scheme}//`);
  }
  // Never write to a source (unless asked to delete from it), nor anywhere on a dry run.
  const rawSrc = await openSide(srcArg, '<src>', flags.config, {}, true, !flags.deleteSource);
  const rawDst = await openSide(dstArg, '<dst>', flags.config, dstExtra, false, flags.dryRun === true);
  let src: TreeSide;
  let dst: TreeSide;
  try {
    dst = await encryptingSide(rawDst, flags);
    src = await decryptingSide(rawSrc, '<src>', flags, { timeoutMs: preflightTimeoutMs });
    dst = { ...dst, store: await chunkedStore(dst.store, flags) };
    src = { ...src, store: await chunkedStore(src.store, flags) };
  } catch (e) {
    await Promise.allSettled([rawSrc.store.close(), rawDst.store.close()]);
    throw e;
  }
  if (job) {
    try {
      await runJobMigration(src.store, dst.store, { src: src.name, dst: dst.name }, {
        flags, leaseMs: job.leaseMs, include: flags.include, exclude: flags.exclude, concurrency, adaptive, checksum, retries, deleteSource: flags.deleteSource,
        bytesPerSecond, bwlimit, opsPerSecond, sharedOpsPerSecond: job.sharedOpsPerSecond, preflightTimeoutMs, priority, metered,
      });
    } catch (e) {
      // A joiner with another source, destination or options, and preflight failures: bad input, exit 2.
      if (isCloudmuxError(e) && (e.message.startsWith('cannot use the ') || e.code === 'InvalidConfig')) throw new UsageError(e.message);
      throw e;
    } finally {
      await Promise.allSettled([src.store.close(), dst.store.close()]);
    }
    return;
  }
  const [{ migrate }, { MigrationJournal }] = await Promise.all([import('../../replication/migrate.js'), import('../../replication/journal.js')]);
  const journalPath = flags.journal === false ? undefined : flags.journal ?? MigrationJournal.defaultPath(src.name, dst.name);
  const reporter = createProgressReporter({ json: flags.json, tty: process.stderr.isTTY === true, dryRun: flags.dryRun });
  const ctl = abortOnInterrupt();
  try {
    const summary = await migrate(src.store, dst.store, {
      include: flags.include, exclude: flags.exclude, concurrency, adaptive, checksum, retries,
      dryRun: flags.dryRun, deleteSource: flags.deleteSource, journal: journalPath,
      bytesPerSecond, bwlimit, opsPerSecond, preflightTimeoutMs, signal: ctl.signal, priority, metered, names: { src: src.name, dst: dst.name },
      onEvent: (e) => reporter.onEvent(e),
    });
    reporter.finish(summary);
    const chunked = chunkedTotals(dst.store);
    if (chunked) {
      if (flags.json) process.stdout.write(`${JSON.stringify({ event: 'chunked', ...chunked })}\n`);
      else process.stderr.write(`chunked: read ${chunked.bytesRead} bytes, sent ${chunked.bytesSent} (${chunked.chunksSent} of ${chunked.chunks} chunks), deduplicated ${chunked.bytesDeduplicated}\n`);
    }
    process.exitCode = summary.failed > 0 || summary.incomplete ? EXIT.failed : EXIT.ok;
  } catch (e) {
    reporter.stop();
    // Preflight and journal problems are bad input: one line, exit 2, nothing written.
    if (isCloudmuxError(e) && (e.message.startsWith('cannot use the ') || e.code === 'InvalidConfig')) throw new UsageError(e.message);
    throw e;
  } finally {
    ctl.release();
    await Promise.allSettled([src.store.close(), dst.store.close()]);
  }
}

