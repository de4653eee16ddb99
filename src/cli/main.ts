import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { register as registerCat } from './commands/cat.js';
import { register as registerCp } from './commands/cp.js';
import { register as registerLs } from './commands/ls.js';
import { register as registerMigrate } from './commands/migrate.js';
import { register as registerRm } from './commands/rm.js';
import { register as registerVerify } from './commands/verify.js';
import { register as registerKeys } from './commands/keys.js';
import { register as registerConfig } from './commands/config.js';
import { register as registerDaemon } from './commands/daemon.js';
import { register as registerSync } from './commands/sync.js';
import { register as registerGc } from './commands/gc.js';
import { register as registerCost } from './commands/cost.js';
import { EXIT, describeError, exitCodeFor } from './errors.js';
import { closeStores } from './locations.js';

/**
 * The version in cloudmux's own package.json: the nearest one above this file named `cloudmux`
 * (src/cli in a checkout, dist/src/cli in the package).
 */
export function packageVersion(): string {
  for (let url = new URL('../../package.json', import.meta.url), i = 0; i < 3; i++, url = new URL('../package.json', url)) {
    try {
      const pkg = JSON.parse(readFileSync(url, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'cloudmux' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not there: one level up
    }
  }
  return 'unknown';
}

/** Builds the `cloudmux` command. Each command lives in commands/<name>.ts and registers itself. */
export function buildProgram(): Command {
  const program = new Command('cloudmux')
    .description('one blob interface over S3, GCS and Azure Blob: copy, migrate, verify, route')
    .version(packageVersion())
    .showSuggestionAfterError()
    .exitOverride();
  registerLs(program);
  registerCat(program);
  registerCp(program);
  registerRm(program);
  registerMigrate(program);
  registerVerify(program);
  registerKeys(program);
  registerConfig(program);
  registerDaemon(program);
  registerSync(program);
  registerGc(program);
  registerCost(program);
  return program;
}

export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    process.stderr.write(`cloudmux: ${describeError(e)}\n`);
    return exitCodeFor(e);
  } finally {
    await closeStores();
  }
}
