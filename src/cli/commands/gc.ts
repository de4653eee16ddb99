import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { openStore, parseStoreUrl, redactUrl } from '../../registry.js';
import { EXIT, UsageError } from '../errors.js';
import { addEncryptionOptions, decryptingStore, type EncryptionFlags } from '../encryption-flags.js';
import { formatDuration } from '../progress.js';

interface GcFlags extends EncryptionFlags {
  dryRun?: boolean;
  grace: string;
  json?: boolean;
  chunkPrefix?: string;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `90s`, `30m`, `24h`, `7d`, `500ms` → milliseconds; UsageError otherwise. */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim());
  if (!m) throw new UsageError(`${flag} ${JSON.stringify(text)}: a duration like 90s, 30m, 24h or 7d`);
  return Math.round(Number(m[1]) * UNITS[m[2]!]!);
}

export function register(program: Command): void {
  const cmd = program
    .command('gc')
    .description('delete chunks of a chunked store (cp/migrate --chunked) that no object uses any more and that are older than the grace period')
    .argument('<store>', 'store URL (s3://bucket/prefix, file:///dir, ...)')
    .option('--dry-run', 'report what would be deleted, delete nothing')
    .option('--grace <duration>', 'keep unreferenced chunks younger than this (a put may be writing them); never shorter than the writers\' grace', '24h')
    .option('--chunk-prefix <prefix>', 'where the chunks are (default .cmx-chunks/)')
    .option('--json', 'print the report as one JSON object');
  addEncryptionOptions(cmd, { decrypt: 'the store was written with --encrypt-with: read manifests through decryption' });
  cmd.action(async (arg: string, flags: GcFlags) => {
    const graceMs = parseDuration(flags.grace, '--grace');
    if (graceMs < 3_600_000 && !flags.dryRun) {
      process.stderr.write(`cloudmux gc: --grace ${flags.grace} is shorter than an hour: safe only if no chunked put is running on any machine\n`);
    }
    let url: URL;
    try {
      url = parseStoreUrl(arg);
    } catch (e) {
      throw new UsageError(`<store>: ${(e as Error).message}`);
    }
    if (url.protocol === 'file:' && !existsSync(fileURLToPath(url))) throw new UsageError(`<store> ${fileURLToPath(url)}: no such directory`);
    const raw = await openStore(url);
    try {
      const inner = await decryptingStore(raw, flags);
      const { collectGarbage } = await import('../../layers/chunked/gc.js');
      const { DEFAULT_CHUNK_PREFIX } = await import('../../layers/chunked/manifest.js');
      const report = await collectGarbage({ inner, chunkPrefix: flags.chunkPrefix ?? DEFAULT_CHUNK_PREFIX, graceMs }, { dryRun: flags.dryRun });
      if (flags.json) {
        process.stdout.write(`${JSON.stringify({ store: redactUrl(url.href), ...report, missing: report.missing.length, missingIds: report.missing.slice(0, 100) })}\n`);
      } else {
        const verb = report.dryRun ? 'would delete' : 'deleted';
        process.stdout.write([
          `${redactUrl(url.href)}: ${report.manifests} manifests name ${report.referenced} chunks; ${report.chunks} chunks stored`,
          `${verb} ${report.deleted} unreferenced chunks (${report.deletedBytes} bytes); kept ${report.keptYoung} younger than ${flags.grace}, ${report.keptChanged} changed meanwhile`,
          ...(report.stoppedEarly ? ['stopped early: the sweep ran past a quarter of the grace period; run gc again'] : []),
          ...(report.missing.length > 0 ? [`DAMAGED: ${report.missing.length} chunks named by manifests are missing (first: ${report.missing[0]})`] : []),
          `duration: ${formatDuration(report.durationMs / 1000)}`,
        ].join('\n') + '\n');
      }
      if (report.missing.length > 0) process.exitCode = EXIT.failed;
    } finally {
      await raw.close();
    }
  });
}
