import type { Command } from 'commander';
import type { CloudmuxConfig } from '../../config/schema.js';
import { isCloudmuxError } from '../../core/errors.js';
import { openStore } from '../../registry.js';
import { EXIT } from '../errors.js';

export interface ConfigProblem {
  /** Where in the file: `providers[1].prices.storageGbMonth`, `line 3, column 7`, or `(file)`. */
  path: string;
  message: string;
}

/**
 * Validates a config file as the daemon would load it: YAML/JSON syntax, the schema, `${ENV}` and
 * `${file:…}` references, prices, and each provider's driver options (the store is constructed,
 * no request is sent). Returns every problem found, each with its path.
 */
export async function checkConfigFile(file: string, env?: Record<string, string | undefined>): Promise<{ config?: CloudmuxConfig; problems: ConfigProblem[] }> {
  let config: CloudmuxConfig;
  try {
    // yaml and zod are loaded only by the commands that read a config file.
    const { loadConfig } = await import('../../config/load.js');
    config = await loadConfig(file, { env });
  } catch (e) {
    if (!isCloudmuxError(e, 'InvalidConfig')) throw e;
    return { problems: splitProblems(e.message) };
  }
  const problems: ConfigProblem[] = [];
  for (const [i, p] of config.providers.entries()) {
    try {
      const store = await openStore(p.url, p.options);
      await store.close();
    } catch (e) {
      problems.push({ path: `providers[${i}]`, message: `${p.name}: ${isCloudmuxError(e) ? e.message : e instanceof Error ? e.message : String(e)}` });
    }
  }
  return problems.length > 0 ? { problems } : { config, problems };
}

/** loadConfig's message is a title line and one `  path: problem` line per problem. */
function splitProblems(message: string): ConfigProblem[] {
  const [title, ...lines] = message.split('\n');
  const out = lines.filter((l) => l.trim()).map((l): ConfigProblem => {
    const t = l.trim();
    const yamlPos = /^(line \d+, column \d+): (.*)$/.exec(t);
    if (yamlPos) return { path: yamlPos[1]!, message: yamlPos[2]!.replace(/ at line \d+, column \d+:?$/, '') };
    const i = t.indexOf(': ');
    return i > 0 ? { path: t.slice(0, i), message: t.slice(i + 2) } : { path: '(file)', message: t };
  });
  return out.length > 0 ? out : [{ path: '(file)', message: title ?? message }];
}

export function register(program: Command): void {
  const config = program.command('config').description('work with cloudmux.yaml');
  config
    .command('check')
    .description('validate a config file; prints every problem with its path and exits 2 if there is any')
    .argument('<file>', 'cloudmux.yaml (or .json)')
    .option('--json', 'print {"ok", "errors": [{path, message}]} on stdout')
    .action(async (file: string, flags: { json?: boolean }) => {
      const { config: cfg, problems } = await checkConfigFile(file);
      if (flags.json) {
        process.stdout.write(`${JSON.stringify({ ok: problems.length === 0, file, errors: problems })}\n`);
      } else if (problems.length > 0) {
        process.stderr.write(`${file}: ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n${problems.map((p) => `  ${p.path}: ${p.message}\n`).join('')}`);
      } else if (cfg) {
        const d = cfg.daemon;
        process.stdout.write(`${file}: ok: ${cfg.providers.length} providers (${cfg.providers.map((p) => p.name).join(', ')}), `
          + `${cfg.policies.length} ${cfg.policies.length === 1 ? 'policy' : 'policies'}, state ${cfg.state && 'postgres' in cfg.state ? 'postgres' : `sqlite ${cfg.state?.sqlite.path ?? '.cloudmux/state.db'}`}, `
          + `daemon on ${d.listen.host}:${d.listen.port}\n`);
      }
      process.exitCode = problems.length > 0 ? EXIT.usage : EXIT.ok;
    });
}
