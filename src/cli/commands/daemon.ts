import type { Command } from 'commander';
import { UsageError } from '../errors.js';

/** Once stopped, the process should end by itself; this bounds the wait if a socket lingers. */
const EXIT_AFTER_STOP_MS = 3_000;

export function register(program: Command): void {
  program
    .command('daemon')
    .description('run probes, breakers, the replication worker and the anti-entropy scan, with /healthz /readyz /metrics /status; SIGHUP reloads, SIGTERM drains')
    .requiredOption('--config <file>', 'cloudmux.yaml (see docs/daemon.md)')
    .option('--listen <host:port>', 'override daemon.listen of the config')
    .action(async (flags: { config: string; listen?: string }) => {
      const listen = flags.listen === undefined ? undefined : parseListen(flags.listen);
      // Loaded here so that other commands do not pay for pino, prom-client and the router.
      const { Daemon } = await import('../../daemon/daemon.js');
      const daemon = await Daemon.start({ configFile: flags.config, ...(listen ? { listen } : {}) });
      const removeHandlers = daemon.handleSignals();
      await daemon.stopped;
      removeHandlers();
      process.exitCode = 0;
      setTimeout(() => process.exit(0), EXIT_AFTER_STOP_MS).unref();
    });
}

function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65_535) throw new UsageError(`--listen ${value}: expected host:port, e.g. 127.0.0.1:9464`);
  return { host: (m[1] ?? m[2])!, port };
}
