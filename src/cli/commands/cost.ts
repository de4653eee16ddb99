import type { Command } from 'commander';
import { createReadStream } from 'node:fs';
import type { SimulationReport } from '../../cost/simulator.js';
import { EXIT, UsageError } from '../errors.js';

interface SimulateFlags {
  trace: string;
  config: string;
  json?: boolean;
  policies?: string;
  fixedTtl: string;
  single?: string;
}

interface GenerateFlags {
  shape: string;
  seed: string;
  requests: string;
  objects: string;
  days: string;
  locations: string;
  zipf?: string;
  readRatio?: string;
  medianSize?: string;
  locality?: string;
  hotHours?: string;
}

const DEFAULT_LOCATIONS = 'aws:us-east-1,aws:eu-west-1,gcp:us-central1,gcp:europe-west1,azure:eastus';

export function register(program: Command): void {
  const cost = program.command('cost').description('model what placement policies cost: replay workload traces, generate them');
  cost
    .command('simulate')
    .description('replay a trace (CSV: time,op,key,size,location) against every placement policy on a simulated clock; print each one\'s dollars')
    .requiredOption('--trace <file>', 'trace file (- for stdin)')
    .requiredOption('--config <file>', 'cloudmux.yaml: providers (each with a location), prices, policies')
    .option('--policies <list>', 'comma-separated policies to run (default: all)')
    .option('--fixed-ttl <duration>', 'TTL of the fixed-ttl baseline: 90s, 30m, 12h, 1d', '1d')
    .option('--single <provider>', 'provider of the single-provider baseline (default: the first configured)')
    .option('--json', 'print the whole report as JSON')
    .action(async (flags: SimulateFlags) => {
      const [{ loadConfig }, { SimWorld }, { simulate, POLICY_NAMES }, { parseTrace }] = await Promise.all([
        import('../../config/load.js'), import('../../cost/world.js'), import('../../cost/simulator.js'), import('../../cost/trace.js'),
      ]);
      const policies = flags.policies?.split(',').map((s) => s.trim()).filter(Boolean);
      for (const p of policies ?? []) {
        if (!(POLICY_NAMES as readonly string[]).includes(p)) throw new UsageError(`--policies: unknown policy "${p}"; expected some of: ${POLICY_NAMES.join(', ')}`);
      }
      const fixedTtlSeconds = parseDuration(flags.fixedTtl, '--fixed-ttl');
      const world = SimWorld.fromConfig(await loadConfig(flags.config));
      const input = flags.trace === '-' ? process.stdin : createReadStream(flags.trace);
      const opened = new Promise<void>((resolve, reject) => {
        if (flags.trace === '-') return resolve();
        input.once('open', () => resolve());
        input.once('error', (e: NodeJS.ErrnoException) => reject(new UsageError(`--trace: cannot read ${flags.trace}: ${e.code ?? e.message}`)));
      });
      await opened;
      const report = await simulate(world, parseTrace(input as AsyncIterable<Uint8Array>), {
        policies: policies as typeof POLICY_NAMES[number][] | undefined, fixedTtlSeconds, singleProvider: flags.single,
      });
      process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
      process.exitCode = EXIT.ok;
    });
  cost
    .command('generate')
    .description('write a seeded synthetic trace to stdout (shapes: zipf, diurnal, regional, worm, hot-then-cold, sessions; see docs/cost.md)')
    .requiredOption('--shape <shape>', 'workload shape')
    .option('--seed <n>', 'PRNG seed: the same flags give the same trace', '1')
    .option('--requests <n>', 'lines in the trace, puts included', '100000')
    .option('--objects <n>', 'distinct objects', '10000')
    .option('--days <n>', 'simulated days', '30')
    .option('--locations <list>', 'comma-separated cloud:region locations of readers and writers', DEFAULT_LOCATIONS)
    .option('--zipf <s>', 'Zipf exponent of popularity (default 1.1)')
    .option('--read-ratio <f>', 'fraction of reads among later requests (zipf, diurnal, regional; default 0.95)')
    .option('--median-size <bytes>', 'median object size (log-normal; default 1048576)')
    .option('--locality <f>', 'fraction of an object\'s reads from its home location')
    .option('--hot-hours <h>', 'hot-then-cold: mean age of a read in hours (default 6)')
    .action(async (flags: GenerateFlags) => {
      const [{ generateTrace }, { formatTraceEvent, TRACE_HEADER }] = await Promise.all([import('../../cost/generators.js'), import('../../cost/trace.js')]);
      const num = (v: string | undefined, flag: string): number | undefined => {
        if (v === undefined) return undefined;
        const n = Number(v);
        if (v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`${flag}: expected a number, got ${JSON.stringify(v)}`);
        return n;
      };
      const events = generateTrace({
        shape: flags.shape as never,
        seed: num(flags.seed, '--seed')!, requests: num(flags.requests, '--requests')!, objects: num(flags.objects, '--objects')!,
        days: num(flags.days, '--days')!, locations: flags.locations.split(',').map((s) => s.trim()).filter(Boolean),
        zipf: num(flags.zipf, '--zipf'), readRatio: num(flags.readRatio, '--read-ratio'), medianSize: num(flags.medianSize, '--median-size'),
        locality: num(flags.locality, '--locality'), hotHours: num(flags.hotHours, '--hot-hours'),
      });
      let buf = `${TRACE_HEADER}\n`;
      for (const e of events) {
        buf += `${formatTraceEvent(e)}\n`;
        if (buf.length > 1 << 16) {
          if (!process.stdout.write(buf)) await new Promise((r) => process.stdout.once('drain', r));
          buf = '';
        }
      }
      process.stdout.write(buf);
      process.exitCode = EXIT.ok;
    });
}

/** `90s`, `30m`, `12h`, `1d`, or a number of seconds. */
export function parseDuration(value: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(s|m|h|d)?$/.exec(value.trim());
  if (!m) throw new UsageError(`${flag}: expected a duration like 90s, 30m, 12h or 1d, got ${JSON.stringify(value)}`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86_400 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
}

/** The side-by-side table: dollars per policy, and each total against the optimum. */
export function formatReport(r: SimulationReport): string {
  const opt = r.policies.find((p) => p.name === 'optimum')?.cost.total;
  const money = (v: number): string => `$${v.toFixed(v >= 100 ? 2 : 4)}`;
  const rows = r.policies.map((p) => [
    p.name, money(p.cost.storage), money(p.cost.egress), money(p.cost.requests), money(p.cost.retrieval), money(p.cost.total),
    opt ? `${(p.cost.total / opt).toFixed(3)}×` : '-',
    p.counters.gets ? `${((100 * p.counters.localReads) / p.counters.gets).toFixed(1)}%` : '-',
    String(p.counters.copiesCreated),
  ]);
  const head = ['policy', 'storage', 'egress', 'requests', 'retrieval', 'total', 'vs optimum', 'local reads', 'copies'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const days = (r.durationSeconds / 86_400).toFixed(1);
  return [
    `${r.requests} requests over ${days} days, simulated in ${(r.elapsedMs / 1000).toFixed(1)} s`,
    line(head),
    ...rows.map(line),
    ...r.policies.map((p) => `  ${p.name}: ${p.description}`),
    '',
  ].join('\n');
}
