import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { isCloudmuxError } from '../../core/errors.js';
import type { BlobStore } from '../../core/types.js';
import { openStore, parseStoreUrl, redactUrl } from '../../registry.js';
import type { ChecksumMode } from '../../replication/copier.js';
import { EXIT, UsageError, describeError } from '../errors.js';
import { createProgressReporter } from '../progress.js';
import { addEncryptionOptions, decryptingSide, encryptingSide, type EncryptionFlags, type TreeSide } from '../encryption-flags.js';

/** `50M` → 52428800 (binary multiples, like rclone's --bwlimit); plain numbers are bytes. */
export function parseSize(value: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(value.trim());
  if (!m) throw new UsageError(`${flag}: expected a size such as 512K, 50M or 1G, got ${JSON.stringify(value)}`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const n = Math.floor(Number(m[1]) * mult);
  if (!(n > 0)) throw new UsageError(`${flag}: must be positive, got ${JSON.stringify(value)}`);
  return n;
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

const collect = (v: string, prev: string[]): string[] => [...prev, v];

/**
 * A side of a migration: a store URL (or plain path), or with `--config` the name of a configured
 * provider. Returns the opened store and a printable (credential-free) name.
 */
export async function openSide(arg: string, flag: string, configFile: string | undefined, extra: Record<string, unknown> = {}, mustExist = true): Promise<{ store: BlobStore; name: string }> {
  if (configFile && /^[a-z][a-z0-9_-]*$/.test(arg)) {
    const { loadConfig } = await import('../../config/load.js');
    const config = await loadConfig(configFile);
    const p = config.providers.find((x) => x.name === arg);
    if (p) return { store: await openStore(p.url, { ...p.options, ...extra }), name: redactUrl(p.url) };
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
    return { store: await openStore(url, Object.keys(extra).length > 0 ? extra : undefined), name: redactUrl(url.href) };
  } catch (e) {
    if (isCloudmuxError(e) && (e.code === 'InvalidConfig' || e.code === 'NotSupported' || e.code === 'InvalidArgument')) throw new UsageError(`${flag} ${redactUrl(arg)}: ${e.message}`);
    throw e;
  }
}

interface MigrateFlags extends EncryptionFlags {
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
}

export function register(program: Command): void {
  const cmd = program
    .command('migrate')
    .description('copy every object from <src> to <dst> that is missing or differs there, verify each copy, resumably')
    .argument('<src>', 'source: store URL (s3://bucket/prefix, gs://…, az://account/container/prefix, file:///dir, memory://name) or a provider name from --config')
    .argument('<dst>', 'destination, same forms as <src>')
    .option('--include <glob>', 'only keys matching this glob (repeatable; ** crosses /)', collect, [])
    .option('--exclude <glob>', 'never keys matching this glob (repeatable; wins over --include)', collect, [])
    .option('--concurrency <n>', 'objects in flight at once (memory ≈ n × part size × the driver queue)', '16')
    .option('--part-size <size>', 'multipart part / block size at the destination, e.g. 16M (s3 partSize, azure blockSize)')
    .option('--bwlimit <rate>', 'source bytes per second, e.g. 50M')
    .option('--tpslimit <n>', 'requests per second to both stores together')
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
  cmd.action(async (srcArg: string, dstArg: string, flags: MigrateFlags) => {
    const concurrency = parsePositiveInt(flags.concurrency ?? '16', '--concurrency');
    const retries = Number(flags.retries ?? '8');
    if (!Number.isSafeInteger(retries) || retries < 0) throw new UsageError(`--retries: expected a non-negative integer, got ${JSON.stringify(flags.retries)}`);
    const checksum = parseChecksumMode(flags.checksum);
    const bytesPerSecond = flags.bwlimit !== undefined ? parseSize(flags.bwlimit, '--bwlimit') : undefined;
    const opsPerSecond = flags.tpslimit !== undefined ? parsePositiveInt(flags.tpslimit, '--tpslimit') : undefined;
    const partSize = flags.partSize !== undefined ? parseSize(flags.partSize, '--part-size') : undefined;
    const preflightTimeoutMs = parsePositiveInt(flags.preflightTimeout ?? '30', '--preflight-timeout') * 1000;
    if (flags.dryRun && flags.deleteSource) throw new UsageError('--delete-source cannot be combined with --dry-run');

    const dstExtra: Record<string, unknown> = {};
    if (partSize !== undefined) {
      const scheme = parseStoreUrl(dstArg).protocol;
      // Each driver names its upload unit differently; all bound memory the same way.
      if (scheme === 'az:') dstExtra.blockSize = partSize;
      else if (scheme === 'gs:') dstExtra.chunkSize = partSize;
      else if (scheme === 's3:') dstExtra.partSize = partSize;
      else throw new UsageError(`--part-size applies to s3://, gs:// and az:// destinations, not ${scheme}//`);
    }
    const rawSrc = await openSide(srcArg, '<src>', flags.config);
    const rawDst = await openSide(dstArg, '<dst>', flags.config, dstExtra, false);
    let src: TreeSide;
    let dst: TreeSide;
    try {
      dst = await encryptingSide(rawDst, flags);
      src = await decryptingSide(rawSrc, '<src>', flags, { timeoutMs: preflightTimeoutMs });
    } catch (e) {
      await Promise.allSettled([rawSrc.store.close(), rawDst.store.close()]);
      throw e;
    }
    const [{ migrate }, { MigrationJournal }] = await Promise.all([import('../../replication/migrate.js'), import('../../replication/journal.js')]);
    const journalPath = flags.journal === false ? undefined : flags.journal ?? MigrationJournal.defaultPath(src.name, dst.name);
    const reporter = createProgressReporter({ json: flags.json, tty: process.stderr.isTTY === true, dryRun: flags.dryRun });
    const ctl = new AbortController();
    const onSignal = (): void => ctl.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      const summary = await migrate(src.store, dst.store, {
        include: flags.include, exclude: flags.exclude, concurrency, checksum, retries,
        dryRun: flags.dryRun, deleteSource: flags.deleteSource, journal: journalPath,
        bytesPerSecond, opsPerSecond, preflightTimeoutMs, signal: ctl.signal, names: { src: src.name, dst: dst.name },
        onEvent: (e) => reporter.onEvent(e),
      });
      reporter.finish(summary);
      process.exitCode = summary.failed > 0 || summary.incomplete ? EXIT.failed : EXIT.ok;
    } catch (e) {
      reporter.stop();
      // Preflight and journal problems are bad input: one line, exit 2, nothing written.
      if (isCloudmuxError(e) && (e.message.startsWith('cannot use the ') || e.code === 'InvalidConfig')) throw new UsageError(e.message);
      throw e;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await Promise.allSettled([src.store.close(), dst.store.close()]);
    }
  });
}
