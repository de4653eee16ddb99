import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { parseLocation, storeFor } from '../locations.js';

export function register(program: Command): void {
  program
    .command('rm')
    .description('delete objects (deleting a missing key is not an error)')
    .argument('<urls...>', 'object URLs, or prefixes with --recursive')
    .option('-r, --recursive', 'delete every object under each URL taken as a prefix')
    .option('--dry-run', 'print what would be deleted, delete nothing')
    .option('--json', 'one JSON object per deleted key')
    .action(async (args: string[], opts: { recursive?: boolean; dryRun?: boolean; json?: boolean }) => {
      let failed = 0;
      for (const arg of args) {
        const loc = parseLocation(arg);
        if (loc.kind !== 'object') throw new UsageError(`rm takes store URLs; ${arg} is a local path (use your shell's rm)`);
        const store = await storeFor(loc);
        const report = (key: string, error?: Error): void => {
          if (error) failed++;
          if (opts.json) process.stdout.write(`${JSON.stringify({ key, deleted: !error && !opts.dryRun, dryRun: !!opts.dryRun, error: error?.message })}\n`);
          else process.stdout.write(`${error ? `failed ${key}: ${error.message}` : `${opts.dryRun ? 'would delete' : 'deleted'} ${key}`}\n`);
        };
        if (opts.recursive) {
          const { removeAllUnder } = await import('../../core/remove.js');
          await removeAllUnder(store, loc.key, { dryRun: opts.dryRun, onResult: report });
        } else if (opts.dryRun) {
          report(loc.key);
        } else {
          await store.delete(loc.key);
          report(loc.key);
        }
      }
      if (failed > 0) process.exitCode = 1;
    });
}
