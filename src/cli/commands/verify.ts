import type { Command } from 'commander';
import type { VerifyOutcome } from '../../replication/verify.js';
import { EXIT } from '../errors.js';
import { addEncryptionOptions, decryptingSide, type TreeSide } from '../encryption-flags.js';
import { addChunkedOption, chunkedStore, holdsChunks, type ChunkedFlags } from '../chunked-flags.js';
import { formatDuration } from '../progress.js';
import { CHECKSUM_MODES, openSide, parseChecksumMode, parsePositiveInt } from './migrate.js';
import { collect } from '../repeatable.js';

/** rclone check's --combined markers, so scripts written for it read ours. */
const MARK: Record<VerifyOutcome, string> = { match: '=', 'only-in-a': '-', 'only-in-b': '+', differ: '*', error: '!' };

interface VerifyFlags extends ChunkedFlags {
  decryptB?: boolean;
  include: string[];
  exclude: string[];
  checksum: string;
  download?: boolean;
  concurrency?: string;
  json?: boolean;
  matching?: boolean;
  config?: string;
}


export function register(program: Command): void {
  const cmd = program
    .command('verify')
    .description('compare two trees by size and content digest, like rclone check; exit 1 on any difference')
    .argument('<a>', 'first tree: store URL or a provider name from --config')
    .argument('<b>', 'second tree')
    .option('--include <glob>', 'only keys matching this glob (repeatable)', collect, [])
    .option('--exclude <glob>', 'never keys matching this glob (repeatable)', collect, [])
    .option('--checksum <mode>', `how contents are compared: ${CHECKSUM_MODES.join('|')}`, 'auto')
    .option('--download', 'read and hash both sides of every object (also catches bytes rotted behind a recorded digest)')
    .option('--concurrency <n>', 'comparisons in flight', '16')
    .option('--matching', 'also print matching keys')
    .option('--config <file>', 'cloudmux.yaml whose provider names may stand for <a>/<b>')
    .option('--json', 'JSON lines: one per difference (and match with --matching), then a summary')
    .option('--decrypt-b', 'read <b> through decryption (a tree written with --encrypt-with): compares plaintext with plaintext');
  addEncryptionOptions(cmd, { decrypt: 'read <a> through decryption (a tree written with --encrypt-with): compares plaintext with plaintext' });
  addChunkedOption(cmd);
  cmd.option('--no-chunked', 'compare the stored objects of a chunked tree (manifests and chunks) as they are');
  cmd.action(async (aArg: string, bArg: string, flags: VerifyFlags) => {
    const checksum = parseChecksumMode(flags.checksum);
    const concurrency = parsePositiveInt(flags.concurrency ?? '16', '--concurrency');
    const rawA = await openSide(aArg, '<a>', flags.config, {}, true, true);
    const rawB = await openSide(bArg, '<b>', flags.config, {}, true, true);
    let a: TreeSide;
    let b: TreeSide;
    try {
      a = await decryptingSide(rawA, '<a>', flags);
      b = await decryptingSide(rawB, '<b>', { ...flags, decrypt: flags.decryptB });
      // Chunked trees compare as the objects their manifests describe; without --chunked or
      // --no-chunked, a side holding chunks (.cmx-chunks/) is read as one, and the user is told.
      const chunked = async (side: TreeSide, label: string): Promise<boolean> => {
        if (flags.chunked !== undefined) return flags.chunked;
        if (!(await holdsChunks(side.store))) return false;
        process.stderr.write(`${label} ${side.name} holds a chunked tree (.cmx-chunks/): comparing the objects its manifests describe (--no-chunked compares the stored objects)\n`);
        return true;
      };
      a = { ...a, store: await chunkedStore(a.store, { ...flags, chunked: await chunked(a, '<a>') }) };
      b = { ...b, store: await chunkedStore(b.store, { ...flags, chunked: await chunked(b, '<b>'), decrypt: flags.decryptB }) };
    } catch (e) {
      await Promise.allSettled([rawA.store.close(), rawB.store.close()]);
      throw e;
    }
    try {
      const { treesMatch, verifyTrees } = await import('../../replication/verify.js');
      const report = await verifyTrees(a.store, b.store, {
        include: flags.include, exclude: flags.exclude, checksum, download: flags.download, concurrency,
        onEvent: (e) => {
          if (e.outcome === 'match' && !flags.matching) return;
          if (flags.json) process.stdout.write(`${JSON.stringify({ event: 'object', ...e })}\n`);
          else process.stdout.write(`${MARK[e.outcome]} ${e.key}${e.reason ? `  (${e.reason})` : ''}\n`);
        },
      });
      const ok = treesMatch(report);
      if (flags.json) {
        const { problems: _p, ...counts } = report;
        process.stdout.write(`${JSON.stringify({ event: 'summary', ok, ...counts })}\n`);
      } else {
        const by = Object.entries(report.matchedBy).map(([k, v]) => `${v} by ${k}`).join(', ');
        process.stderr.write(`${ok ? 'no differences' : 'DIFFERENCES FOUND'}: ${report.matching} matching${by ? ` (${by})` : ''}, `
          + `${report.differing} differing, ${report.onlyInA} only in ${a.name}, ${report.onlyInB} only in ${b.name}, `
          + `${report.errors} errors, ${formatDuration(report.durationMs / 1000)}\n`);
      }
      process.exitCode = ok ? EXIT.ok : EXIT.failed;
    } finally {
      await Promise.allSettled([a.store.close(), b.store.close()]);
    }
  });
}
