/**
 * Shared machinery of the *-upload-rss benches: each variant uploads in a child process of its own
 * (so the peak RSS it reports is its own, not the parent's or a previous variant's), RSS is sampled
 * every 20 ms around the timed upload, and the parent prints MiB/s, peak RSS and throughput against
 * the raw-SDK baseline. Not run by bench/run.ts (the name starts with `lib`).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const MiB = 1024 * 1024;
/** Peak RSS a cloudmux streamed upload must stay under, whatever the body size. */
export const RSS_TARGET_MIB = 200;
const SAMPLE_MS = 20;

/** What one child reports: the timed upload only, RSS over the whole sampled run. */
export interface UploadMeasurement {
  bytes: number;
  seconds: number;
  peakRssMiB: number;
  /** RSS before the variant built its clients and streams. */
  baseRssMiB: number;
}

export interface UploadResult<V extends string = string> extends UploadMeasurement {
  variant: V;
}

/**
 * Samples this process's RSS from now until `run` settles and times the one upload `run` passes to
 * `timed`. Setup before `timed` (clients, pre-hashing) counts toward peak RSS but not toward the
 * time; cleanup after it (verify, delete, close) counts toward neither.
 */
export async function measureInChild(
  bytes: number,
  run: (timed: (upload: () => Promise<unknown>) => Promise<void>) => Promise<void>,
): Promise<UploadMeasurement> {
  const base = process.memoryUsage().rss;
  let peak = 0;
  let seconds = Number.NaN;
  const sample = (): void => {
    peak = Math.max(peak, process.memoryUsage().rss);
  };
  const timer = setInterval(sample, SAMPLE_MS);
  try {
    await run(async (upload) => {
      const t0 = process.hrtime.bigint();
      await upload();
      seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      clearInterval(timer);
      sample();
    });
  } finally {
    clearInterval(timer);
  }
  if (Number.isNaN(seconds)) throw new Error('the bench variant never ran its timed upload');
  return { bytes, seconds, peakRssMiB: peak / MiB, baseRssMiB: base / MiB };
}

/**
 * Entry point of a bench file. Run as `--child variant:bytes` (by runVariants) it measures that
 * one variant and prints the measurement as JSON; otherwise it runs `parent` with the body size
 * given in MiB as the first argument (default 1 GiB), converted to bytes.
 */
export async function uploadRssMain<V extends string>(opts: {
  child(variant: V, bytes: number): Promise<UploadMeasurement>;
  parent(bytes: number): Promise<void>;
}): Promise<void> {
  const [mode, arg] = process.argv.slice(2);
  if (mode === '--child') {
    const [variant, bytes] = (arg ?? '').split(':');
    console.log(JSON.stringify(await opts.child(variant as V, Number(bytes))));
    return;
  }
  await opts.parent(Number(mode ?? 1024) * MiB);
}

/**
 * Runs each variant in order, each in a fresh `node --import tsx <selfUrl> --child variant:bytes`
 * inheriting process.env (emulator endpoints go there). Throws with the child's stderr on failure.
 */
export function runVariants<V extends string>(
  selfUrl: string,
  variants: readonly V[],
  bytes: number,
  onResult?: (result: UploadResult<V>) => void,
): UploadResult<V>[] {
  const results: UploadResult<V>[] = [];
  for (const variant of variants) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(selfUrl), '--child', `${variant}:${bytes}`], {
      env: process.env,
      encoding: 'utf8',
      maxBuffer: MiB,
    });
    if (r.status !== 0) throw new Error(`${variant} failed: ${r.stderr}`);
    const line = r.stdout.trim().split('\n').pop()!;
    const result: UploadResult<V> = { variant, ...(JSON.parse(line) as UploadMeasurement) };
    results.push(result);
    onResult?.(result);
  }
  return results;
}

/**
 * Prints `title`, one line per result (time, MiB/s, peak and start RSS, throughput ratio against
 * `baselineVariant`) and the verdict on the worst peak RSS among the non-baseline variants.
 * Returns whether that peak is within RSS_TARGET_MIB.
 */
export function printUploadTable<V extends string>(
  title: string,
  results: readonly UploadResult<V>[],
  baselineVariant: V,
  opts: { nameWidth?: number } = {},
): boolean {
  const baseline = results.find((r) => r.variant === baselineVariant);
  if (!baseline) throw new Error(`no result for the baseline variant ${baselineVariant}`);
  const nameWidth = opts.nameWidth ?? Math.max(...results.map((r) => r.variant.length)) + 1;
  console.log(title);
  for (const r of results) {
    const mibs = r.bytes / MiB / r.seconds;
    console.log(`${r.variant.padEnd(nameWidth)} ${r.seconds.toFixed(1).padStart(6)} s ${mibs.toFixed(1).padStart(7)} MiB/s  peak RSS ${r.peakRssMiB.toFixed(0)} MiB (start ${r.baseRssMiB.toFixed(0)})  throughput ratio vs ${baselineVariant} ${(baseline.seconds / r.seconds).toFixed(2)}`);
  }
  const worst = Math.max(...results.filter((r) => r.variant !== baselineVariant).map((r) => r.peakRssMiB));
  const within = worst < RSS_TARGET_MIB;
  console.log(`cloudmux peak RSS ${worst.toFixed(0)} MiB: ${within ? 'within' : 'OVER'} the ${RSS_TARGET_MIB} MiB target`);
  return within;
}
