import type { ActionOutcome, RoundReport, SyncEvent } from '../sync/index.js';
import { cliProgress } from './cli-progress.js';
import { formatBytes } from './progress.js';

/** What each action kind is called in output lines. */
const VERB: Record<ActionOutcome['action']['kind'], string> = {
  none: 'refreshed', record: 'recorded', forget: 'forgot', upload: 'uploaded', download: 'downloaded',
  'delete-remote': 'deleted remotely', 'delete-local': 'deleted locally', 'keep-both': 'conflict, kept both',
  'local-wins': 'conflict, local kept', 'remote-wins': 'conflict, remote kept', merge: 'conflict, merged',
  'rename-remote': 'renamed remotely', 'rename-local': 'renamed locally',
};

export interface SyncReporter {
  onEvent(e: SyncEvent): void;
  /** After each round: the summary (a JSON line, or text). */
  round(r: RoundReport): void;
  stop(): void;
}

function actionLine(o: ActionOutcome): Record<string, unknown> {
  const a = o.action;
  return {
    event: 'action', path: a.path, ...('from' in a ? { from: a.from } : {}), action: a.kind, case: a.case, result: o.result,
    ...(o.detail ? { detail: o.detail } : {}), ...(o.conflictCopy ? { conflictCopy: o.conflictCopy } : {}), ...(o.kept ? { kept: o.kept } : {}), bytes: o.bytes,
  };
}

function summaryOf(r: RoundReport): Record<string, unknown> {
  return {
    event: 'summary', online: r.online, ...(r.offlineReason ? { offlineReason: r.offlineReason } : {}), dryRun: r.dryRun,
    planned: r.planned.length, ...r.counts, pending: r.pending, skipped: r.skipped.length, localFiles: r.localFiles, remoteObjects: r.remoteObjects,
    hashed: r.hashed, examined: r.examined,
  };
}

/**
 * The sync command's output, like migrate's: JSON lines on stdout with `json` (one per action, one
 * summary per round), else a bar on a TTY stderr over the round's planned actions, else one line
 * per action. Failures and skipped paths always get a line on stderr (text modes).
 */
export function createSyncReporter(opts: { json?: boolean; tty?: boolean; out?: NodeJS.WritableStream; err?: NodeJS.WritableStream }): SyncReporter {
  const out = opts.out ?? process.stdout;
  const err = opts.err ?? process.stderr;
  if (opts.json) {
    const line = (o: unknown): void => void out.write(`${JSON.stringify(o)}\n`);
    return {
      onEvent(e) {
        if (e.type === 'action') line(actionLine(e.outcome));
        else if (e.type === 'scanned') line({ event: 'scanned', side: e.side, files: e.files, examined: e.examined });
        else if (e.type === 'offline') line({ event: 'offline', reason: e.reason });
        else line({ event: 'planned', actions: e.actions });
      },
      round(r) {
        for (const s of r.skipped) line({ event: 'skipped', path: s.path, reason: s.reason, ...(s.detail ? { detail: s.detail } : {}) });
        line(summaryOf(r));
      },
      stop() {},
    };
  }
  let bar: { start(t: number, v: number): void; increment(): void; stop(): void } | undefined;
  const text = (o: ActionOutcome): string => {
    const a = o.action;
    const what = `${VERB[a.kind]}: ${'from' in a ? `${a.from} → ` : ''}${a.path}`;
    if (o.result === 'failed') return `failed (${VERB[a.kind]}): ${a.path}: ${o.detail ?? ''}`;
    if (o.result !== 'done') return `${o.result} (${VERB[a.kind]}): ${a.path}${o.detail ? `: ${o.detail}` : ''}`;
    return `${what}${o.conflictCopy ? ` (local version kept as ${o.conflictCopy})` : ''}${o.kept ? ` (previous version kept as ${o.kept})` : ''}`;
  };
  return {
    onEvent(e) {
      if (e.type === 'planned' && opts.tty && e.actions > 0) {
        const { SingleBar, Presets } = cliProgress();
        bar = new SingleBar({ stream: err as NodeJS.WriteStream, format: '{bar} {value}/{total} paths', hideCursor: true, barsize: 24, fps: 5 }, Presets.shades_classic);
        bar.start(e.actions, 0);
      } else if (e.type === 'action') {
        if (bar) bar.increment();
        else if (e.outcome.result === 'failed') err.write(`${text(e.outcome)}\n`);
        else out.write(`${text(e.outcome)}\n`);
      } else if (e.type === 'offline' && !bar) err.write(`remote unreachable (${e.reason}); local changes are queued\n`);
    },
    round(r) {
      bar?.stop();
      bar = undefined;
      for (const s of r.skipped) err.write(`skipped (${s.reason}${s.detail ? `: ${s.detail}` : ''}): ${s.path}\n`);
      const bytes = r.outcomes.reduce((n, o) => n + o.bytes, 0);
      const state = r.online ? (r.dryRun ? 'dry run' : 'synced') : `offline (${r.offlineReason ?? ''})`;
      out.write(`${state}: ${r.dryRun ? `${r.planned.length} planned` : `${r.counts.done} done, ${r.counts.failed} failed, ${r.counts.deferred + r.counts.raced} again next round`}, ` +
        `${r.pending} pending, ${formatBytes(bytes)} moved; ${r.localFiles} local files, ${r.remoteObjects} remote objects\n`);
    },
    stop() {
      bar?.stop();
    },
  };
}
