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
import { EXIT, describeError, exitCodeFor } from './errors.js';
import { closeStores } from './locations.js';

/** Builds the `cloudmux` command. Each command lives in commands/<name>.ts and registers itself. */
export function buildProgram(): Command {
  const program = new Command('cloudmux')
    .description('one blob interface over S3, GCS and Azure Blob: copy, migrate, verify, route')
    .version('0.1.0')
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
