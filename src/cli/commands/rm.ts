import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { enclosingStoreRoot, localAsObject, localKind, parseLocation, storeFor, type Location } from '../locations.js';
import { removeLocalTree } from '../remove-local.js';

export function register(program: Command): void {
  program
    .command('rm')
    .description('delete objects or local files (deleting a missing key is not an error)')
    .argument('<urls...>', 'object URLs or local paths, or prefixes and directories with --recursive')
    .option('-r, --recursive', 'delete every object under each URL taken as a prefix')
    .option('--dry-run', 'print what would be deleted, delete nothing')
    .option('--json', 'one JSON object per deleted key')
    .action(async (args: string[], opts: { recursive?: boolean; dryRun?: boolean; json?: boolean }) => {
      let failed = 0;
      for (const arg of args) {
        let loc: Location = parseLocation(arg);
        if (loc.kind === 'stdio') throw new UsageError('rm takes store URLs or local paths, not -');
        const report = (key: string, error?: Error): void => {
          if (error) failed++;
          if (opts.json) process.stdout.write(`${JSON.stringify({ key, deleted: !error && !opts.dryRun, dryRun: !!opts.dryRun, error: error?.message })}\n`);
          else process.stdout.write(`${error ? `failed ${key}: ${error.message}` : `${opts.dryRun ? 'would delete' : 'deleted'} ${key}`}\n`);
        };
        if (loc.kind === 'local') {
          // A file inside an fs store goes through the store (its metadata goes with it); a plain
          // directory tree is removed file by file, reported as keys relative to the argument.
          if ((await enclosingStoreRoot(loc.path)) === undefined) {
            await removeLocalTree(loc.path, { recursive: opts.recursive, dryRun: opts.dryRun, onResult: report });
            continue;
          }
          const isDir = (await localKind(loc.path)) === 'dir';
          loc = await localAsObject(loc.path, loc.display);
          if (isDir && loc.key !== '') loc = { ...loc, key: `${loc.key}/` };
        }
        const store = await storeFor(loc);
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
