/**
 * Migration jobs in PostgreSQL (issue 17):
 *
 * 1. Throughput of `cloudmux migrate … --state … --job` with 1, 2 and 4 worker processes (CLI
 *    children, fs → fs, `objects` objects of `size` bytes), against the baseline in the same run:
 *    one local `cloudmux migrate --journal` (SQLite). Prints objects/s, the ratio to the baseline,
 *    the workers' CPU seconds and PostgreSQL's (all `postgres` processes on the box, so an upper
 *    bound on a shared box): where the limit is.
 * 2. Listing a bucket of `listed` objects with 1 vs 4 listers (workers with copy off, in one
 *    process), over a store whose listing pages cost `pageMs` (S3's ListObjectsV2 takes tens of ms
 *    per 1000 keys): the job's range splitting against one lister.
 *
 *   npx tsx bench/jobs.ts [objects=1500] [size=16384] [listed=100000] [--page-ms=100] [--workers=1,2,4] [--listing] [--split-min=1000]
 *
 * `--listing` runs only part 2 (part 1 otherwise). Idle listers split a range where the source's
 * keys are (range-probe.ts): both halves must hold `--split-min` keys (default 1000).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { MemoryStore } from '../providers/memory/index.js';
import { compareKeys, type ListOptions, type ListItem } from '../src/core/index.js';
import { runJobWorker } from '../src/jobs/job-worker.js';
import { readJobStatus } from '../src/jobs/job-report.js';
import { PostgresStateStore } from '../src/state/postgres.js';

const args = process.argv.slice(2);
const positional = args.filter((a) => !a.startsWith('--'));
const objects = Number(positional[0] ?? 1500);
const size = Number(positional[1] ?? 16384);
const listed = Number(positional[2] ?? 100_000);
const pageMs = Number(args.find((a) => a.startsWith('--page-ms='))?.split('=')[1] ?? 100);
const splitMin = Number(args.find((a) => a.startsWith('--split-min='))?.split('=')[1] ?? 1000);
const counts = (args.find((a) => a.startsWith('--workers='))?.split('=')[1] ?? '1,2,4').split(',').map(Number);
const PG_URL = process.env.CLOUDMUX_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const BIN = resolve(import.meta.dirname, '../src/cli/bin.ts');
const schema = `cmx_bench_jobs_${process.pid}`;

/** CPU seconds of this process's reaped children (cutime + cstime), from /proc. */
function childrenCpu(): number {
  const f = readFileSync('/proc/self/stat', 'utf8').slice(readFileSync('/proc/self/stat', 'utf8').lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) / 100;
}

/** CPU seconds of each postgres process on the box now (utime + stime), by pid. */
function postgresCpuByPid(): Map<string, number> {
  const out = new Map<string, number>();
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (!stat.includes('(postgres)')) continue;
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(pid, (Number(f[11]) + Number(f[12])) / 100);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * PostgreSQL's CPU over a run: sampled every 100 ms so that backends which exit during the run (a
 * worker's connections) are counted up to their last sample. Every postgres process on the box is
 * counted, so on a shared box this is an upper bound for the job's share.
 */
function postgresCpuMeter(): { stop(): number } {
  const first = postgresCpuByPid();
  const last = new Map(first);
  const sample = (): void => {
    for (const [pid, t] of postgresCpuByPid()) last.set(pid, t);
  };
  const timer = setInterval(sample, 100);
  return {
    stop() {
      clearInterval(timer);
      sample();
      let total = 0;
      for (const [pid, t] of last) total += t - (first.get(pid) ?? 0);
      return total;
    },
  };
}

function cli(argv: string[]): Promise<number | null> {
  return new Promise((ok) => {
    const c = spawn(process.execPath, ['--import', 'tsx', BIN, ...argv], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, NODE_NO_WARNINGS: '1' } });
    c.on('exit', (code) => ok(code));
  });
}

async function throughput(work: string): Promise<void> {
  const src = join(work, 'src');
  for (let i = 0; i < objects; i++) {
    const dir = join(src, `d${i % 10}`);
    if (i < 10) mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `o${i}`), Buffer.alloc(size, i % 251));
  }
  const measure = async (label: string, run: () => Promise<unknown>): Promise<number> => {
    const cpu0 = childrenCpu();
    const pgMeter = postgresCpuMeter();
    const t0 = performance.now();
    await run();
    const s = (performance.now() - t0) / 1000;
    const cpu = childrenCpu() - cpu0;
    const pgCpu = pgMeter.stop();
    console.log(`${label.padEnd(22)} ${s.toFixed(1).padStart(6)} s  ${(objects / s).toFixed(0).padStart(5)} objects/s  workers CPU ${cpu.toFixed(1)} s  postgres CPU ${pgCpu.toFixed(1)} s`);
    return s;
  };
  console.log(`throughput: ${objects} objects of ${size} B, fs -> fs, CLI processes (${cpus().length} cores, load ${loadavg()[0]!.toFixed(1)})`);
  const base = await measure('local (SQLite journal)', () => cli(['migrate', src, join(work, 'dst-local'), '--journal', join(work, 'local.sqlite'), '--json']));
  for (const n of counts) {
    const job = `w${n}`;
    const s = await measure(`job, ${n} worker${n > 1 ? 's' : ' '}`, () => Promise.all(Array.from({ length: n }, () =>
      cli(['migrate', src, join(work, `dst-${job}`), '--state', PG_URL, '--state-schema', schema, '--job', job, '--json']))));
    console.log(`${''.padEnd(22)} time ratio to local: ${(s / base).toFixed(2)}`);
  }
}

/**
 * A memory store whose every listing page costs `pageMs` (a cloud listing's round trip), and
 * nothing else: its keys are sorted once (they do not change while it is listed), so the
 * bench measures the job's listing, not the memory store's sort.
 */
class SlowListing extends MemoryStore {
  lists = 0;
  probes = 0;
  private sorted: ListItem[] | undefined;

  override async *list(opts: ListOptions = {}): AsyncGenerator<ListItem> {
    this.lists++;
    if ((opts.pageSize ?? 1000) < 1000) this.probes++;
    if (!this.sorted) {
      this.sorted = [];
      for await (const item of super.list({})) this.sorted.push(item);
    }
    const all = this.sorted;
    let i = 0;
    if (opts.startAfter !== undefined) {
      let hi = all.length;
      while (i < hi) {
        const mid = (i + hi) >> 1;
        if (compareKeys((all[mid] as { key: string }).key, opts.startAfter) <= 0) i = mid + 1;
        else hi = mid;
      }
    }
    for (let n = 0; i < all.length; i++, n++) {
      if (n % 1000 === 0) await new Promise((ok) => setTimeout(ok, pageMs));
      yield all[i]!;
    }
  }
}

async function listing(state: PostgresStateStore): Promise<void> {
  const src = new SlowListing();
  const dst = new SlowListing();
  for (let i = 0; i < listed; i++) await src.put(`data/${String(i).padStart(7, '0')}.bin`, 'x');
  console.log(`listing: ${listed} objects, ${pageMs} ms per 1000-key page, split at >= ${splitMin} keys per half (${cpus().length} cores, load ${loadavg().map((l) => l.toFixed(1)).join(' ')})`);
  let base = 0;
  for (const n of [1, 4]) {
    const job = `list-${n}`;
    const lists0 = src.lists;
    const probes0 = src.probes;
    const cpu0 = process.cpuUsage();
    const pgMeter = postgresCpuMeter();
    const t0 = performance.now();
    await Promise.all(Array.from({ length: n }, (_, w) => runJobWorker(src, dst, {
      state, job, worker: `l${w}`, names: { src: 'slow://src', dst: 'slow://dst' }, preflight: false, copy: false, pollMs: 20, listBatch: 1000, splitMinKeys: splitMin,
    })));
    const s = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const pgCpu = pgMeter.stop();
    const st = await readJobStatus(state, job);
    if (n === 1) base = s;
    console.log(`${n} lister${n > 1 ? 's' : ' '}: ${s.toFixed(1)} s, ${st.summary.listed} listed in ${st.ranges.total} ranges, ${src.lists - lists0} source listing requests (${src.probes - probes0} of them split probes)`
      + `${n > 1 ? `, ${(base / s).toFixed(2)}x faster than 1` : ''}; bench process CPU ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s, postgres CPU ${pgCpu.toFixed(1)} s, load ${loadavg()[0]!.toFixed(1)}`);
  }
}

const work = mkdtempSync(join(tmpdir(), 'cloudmux-bench-jobs-'));
const state = await PostgresStateStore.open({ url: PG_URL, schema, maxConnections: 8 });
try {
  if (args.includes('--listing')) await listing(state);
  else await throughput(work);
} finally {
  await state.close();
  spawnSync('psql', [PG_URL, '-qc', `DROP SCHEMA IF EXISTS ${schema} CASCADE`], { stdio: 'ignore' });
  rmSync(work, { recursive: true, force: true });
}
