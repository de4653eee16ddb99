import { createRequire } from 'node:module';
import type CliProgress from 'cli-progress';

let loaded: typeof CliProgress | undefined;

/**
 * cli-progress, loaded on the first call: only a TTY shows a bar, so scripted runs and commands
 * without progress never load it.
 */
export function cliProgress(): typeof CliProgress {
  loaded ??= createRequire(import.meta.url)('cli-progress') as typeof CliProgress;
  return loaded;
}
