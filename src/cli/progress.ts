import { cliProgress } from './cli-progress.js';
import type { MigrationEvent, MigrationSummary } from '../replication/migrate.js';

/** `1536` → `1.5 KiB`. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** Seconds → `1h02m03s` / `4m05s` / `6s`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m${String(sec).padStart(2, '0')}s`;
  if (m > 0) return `${m}m${String(sec).padStart(2, '0')}s`;
  return `${sec}s`;
}

/** Live counters of a migration, fed by its events. */
export class MigrationStats {
  listedObjects = 0;
  listedBytes = 0;
  listingDone = false;
  doneObjects = 0;
  /** Bytes streamed plus the sizes of objects settled without streaming (identical, failed). */
  doneBytes = 0;
  copied = 0;
  identical = 0;
  errors = 0;
  retries = 0;
  private readonly started = Date.now();
  private readonly samples: { t: number; bytes: number }[] = [];

  /** Feeds one event; returns true when it settled an object. */
  add(e: MigrationEvent): boolean {
    switch (e.type) {
      case 'listed':
        this.listedObjects++;
        this.listedBytes += e.size;
        return false;
      case 'listing-done':
        this.listingDone = true;
        return false;
      case 'progress':
        this.doneBytes += e.bytes;
        return false;
      case 'retry':
        this.retries++;
        return false;
      case 'object':
        this.doneObjects++;
        if (e.outcome === 'copied') {
          this.copied++;
          this.doneBytes += Math.max(0, e.size - e.bytes); // server-side copies report no stream
        } else {
          if (e.outcome === 'identical') this.identical++;
          if (e.outcome === 'failed') this.errors++;
          this.doneBytes += e.size;
        }
        return true;
      default:
        return false;
    }
  }

  /** Bytes per second over the last five seconds. */
  rate(now = Date.now()): number {
    this.samples.push({ t: now, bytes: this.doneBytes });
    while (this.samples.length > 2 && now - this.samples[0]!.t > 5000) this.samples.shift();
    const first = this.samples[0]!;
    const dt = (now - first.t) / 1000;
    if (dt < 0.5) {
      const total = (now - this.started) / 1000;
      return total > 0 ? this.doneBytes / total : 0;
    }
    return (this.doneBytes - first.bytes) / dt;
  }

  /** Seconds left, or Infinity while the listing is still growing the total or nothing moves. */
  eta(rate: number): number {
    if (!this.listingDone || rate <= 0) return Infinity;
    return (this.listedBytes - this.doneBytes) / rate;
  }

  snapshot(): Record<string, number | boolean> {
    const rate = this.rate();
    return {
      objects: this.doneObjects, totalObjects: this.listedObjects, bytes: this.doneBytes, totalBytes: this.listedBytes,
      bytesPerSec: Math.round(rate), etaSec: Math.round(this.eta(rate)), listingDone: this.listingDone,
      copied: this.copied, identical: this.identical, errors: this.errors, retries: this.retries,
      elapsedSec: Math.round((Date.now() - this.started) / 1000),
    };
  }
}

export interface ProgressReporter {
  onEvent(e: MigrationEvent): void;
  /** Stops the display and prints the final summary. */
  finish(summary: MigrationSummary): void;
  /** Stops the display without a summary (on a fatal error). */
  stop(): void;
}

/**
 * The migrate command's output: a live bar on stderr when it is a TTY (objects, bytes, bytes/s,
 * ETA, errors), JSON lines on stdout with `json` (one per settled object, a `stats` line a second
 * and a final `summary`), otherwise a plain stats line on stderr every ten seconds. The final
 * summary always goes to stdout.
 */
export function createProgressReporter(opts: { json?: boolean; tty?: boolean; out?: NodeJS.WritableStream; err?: NodeJS.WritableStream; dryRun?: boolean }): ProgressReporter {
  const out = opts.out ?? process.stdout;
  const err = opts.err ?? process.stderr;
  const stats = new MigrationStats();
  const line = (o: unknown): void => {
    out.write(`${JSON.stringify(o)}\n`);
  };

  if (opts.json) {
    const timer = setInterval(() => line({ event: 'stats', ...stats.snapshot() }), 1000);
    timer.unref();
    return {
      onEvent(e) {
        if (stats.add(e) && e.type === 'object') line({ event: 'object', key: e.key, outcome: e.outcome, size: e.size, verifiedBy: e.verifiedBy, reason: e.reason });
        else if (e.type === 'extra' || e.type === 'source-deleted') line({ event: e.type, key: e.key });
      },
      finish(summary) {
        clearInterval(timer);
        line({ event: 'summary', ...summary });
      },
      stop() {
        clearInterval(timer);
      },
    };
  }

  const text = (e: MigrationEvent): void => {
    if (e.type === 'object' && e.outcome === 'failed') err.write(`failed: ${e.key}: ${e.reason ?? ''}\n`);
    if (e.type === 'object' && e.outcome === 'would-copy') out.write(`would copy (${e.reason}): ${e.key} (${formatBytes(e.size)})\n`);
  };

  if (opts.tty) {
    const { SingleBar, Presets } = cliProgress();
    const bar = new SingleBar({
      stream: err as NodeJS.WriteStream,
      // cli-progress fills {total}, {eta}, {value} itself, over any payload field of that name.
      format: '{bar} {percentage}% | {objects}/{totalObjects} objects | {doneBytes}/{totalBytes} | {rate}/s | ETA {etaText} | errors {errors}',
      hideCursor: true,
      barsize: 24,
      etaBuffer: 1,
      fps: 5,
      noTTYOutput: false,
    }, Presets.shades_classic);
    const payload = (): Record<string, string | number> => {
      const rate = stats.rate();
      return {
        objects: stats.doneObjects, totalObjects: `${stats.listedObjects}${stats.listingDone ? '' : '+'}`,
        doneBytes: formatBytes(stats.doneBytes), totalBytes: formatBytes(stats.listedBytes), rate: formatBytes(Math.round(rate)),
        etaText: formatDuration(stats.eta(rate)), errors: stats.errors,
      };
    };
    bar.start(1, 0, payload());
    const timer = setInterval(() => {
      bar.setTotal(Math.max(1, stats.listedBytes));
      bar.update(stats.doneBytes, payload());
    }, 200);
    timer.unref();
    const stop = (): void => {
      clearInterval(timer);
      bar.setTotal(Math.max(1, stats.listedBytes));
      bar.update(stats.doneBytes, payload());
      bar.stop();
    };
    return {
      onEvent(e) {
        // Failures are counted on the bar and listed in the summary; a line here would tear the bar.
        stats.add(e);
        if (e.type === 'object' && e.outcome === 'would-copy') text(e);
      },
      finish(summary) {
        stop();
        out.write(formatSummary(summary, opts.dryRun));
      },
      stop,
    };
  }

  const timer = setInterval(() => {
    const s = stats.snapshot();
    err.write(`progress: ${s.objects}/${s.totalObjects}${s.listingDone ? '' : '+'} objects, ${formatBytes(s.bytes as number)}/${formatBytes(s.totalBytes as number)}, ${formatBytes(s.bytesPerSec as number)}/s, ETA ${formatDuration(stats.eta(s.bytesPerSec as number))}, errors ${s.errors}\n`);
  }, 10_000);
  timer.unref();
  return {
    onEvent(e) {
      stats.add(e);
      text(e);
    },
    finish(summary) {
      clearInterval(timer);
      out.write(formatSummary(summary, opts.dryRun));
    },
    stop() {
      clearInterval(timer);
    },
  };
}

/** The human summary printed at the end of a migration. */
export function formatSummary(s: MigrationSummary, dryRun = false): string {
  const lines = [
    `listed:      ${s.listed} objects, ${formatBytes(s.listedBytes)}`,
    `identical:   ${s.identical} (skipped)`,
    dryRun ? `would copy:  ${s.wouldCopy}` : `copied:      ${s.copied} objects, ${formatBytes(s.bytes)}`,
    `verified:    ${s.verified}`,
    `failed:      ${s.failed}`,
  ];
  if (s.vanished) lines.push(`vanished:    ${s.vanished} (deleted from the source during the run)`);
  if (s.deferred) lines.push(`deferred:    ${s.deferred} (not critical: metered link; run again without --metered)`);
  if (s.extraAtDestination) lines.push(`extra:       ${s.extraAtDestination} only at the destination (left alone)`);
  if (s.sourceDeleted) lines.push(`deleted:     ${s.sourceDeleted} from the source after verification`);
  if (s.resumedAfter !== undefined) lines.push(`resumed:     after ${JSON.stringify(s.resumedAfter)}`);
  lines.push(`duration:    ${formatDuration(s.durationMs / 1000)} (${formatBytes(Math.round(s.bytes / Math.max(0.001, s.durationMs / 1000)))}/s)`);
  for (const f of s.failures) lines.push(`  failed ${f.key}: ${f.reason}`);
  if (s.incomplete) lines.push(`INCOMPLETE: ${s.incomplete}`);
  return `${lines.join('\n')}\n`;
}
