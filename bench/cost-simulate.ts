/**
 * The trace simulator on a 1-million-request trace: the time `cloudmux cost simulate` takes, with
 * every policy (it drives the router's placement and cost code, so this is also a placement-
 * overhead benchmark). The trace is generated to a temporary file first (not timed), then parsed
 * from the file while it is simulated, as the command does. Baseline: the budget of one
 * minute; the ratio is the budget over the time taken (> 1 is within it). Wall and CPU time are
 * both printed: on a shared box the CPU figure is the steadier one.
 *
 *   npx tsx bench/cost-simulate.ts [requests=1000000] [shape=zipf]
 */
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config/load.js';
import { generateTrace, type TraceShape } from '../src/cost/generators.js';
import { simulate } from '../src/cost/simulator.js';
import { formatTraceEvent, parseTrace, TRACE_HEADER } from '../src/cost/trace.js';
import { SimWorld } from '../src/cost/world.js';

const requests = Number(process.argv[2] ?? 1_000_000);
const shape = (process.argv[3] ?? 'zipf') as TraceShape;
const dir = mkdtempSync(join(tmpdir(), 'cloudmux-cost-bench-'));
const file = join(dir, 'trace.csv');
try {
  const out = createWriteStream(file);
  let buf = `${TRACE_HEADER}\n`;
  for (const e of generateTrace({ shape, seed: 1, requests, objects: Math.max(1, Math.floor(requests / 10)), days: 30,
    locations: ['aws:us-east-1', 'aws:eu-west-1', 'gcp:us-central1', 'gcp:europe-west1', 'azure:eastus'] })) {
    buf += `${formatTraceEvent(e)}\n`;
    if (buf.length > 1 << 20) {
      if (!out.write(buf)) await once(out, 'drain');
      buf = '';
    }
  }
  out.end(buf);
  await once(out, 'finish');
  const world = SimWorld.fromConfig(await loadConfig(new URL('../config/cost-sim.yaml', import.meta.url).pathname));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const report = await simulate(world, parseTrace(createReadStream(file)));
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuS = (cpu.user + cpu.system) / 1e6;
  console.log(`${report.requests} requests (${shape}), ${report.policies.length} policies: ${wall.toFixed(1)} s wall, ${cpuS.toFixed(1)} s CPU; ${(requests / wall / 1000).toFixed(0)}k requests/s`);
  console.log(`baseline: 60 s budget; ratio budget/wall ${(60 / wall).toFixed(2)}×, budget/CPU ${(60 / cpuS).toFixed(2)}× (load average ${(await import('node:os')).loadavg()[0]!.toFixed(1)})`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
