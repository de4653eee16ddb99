import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { isCloudmuxError } from '../../core/errors.js';
import type { BlobStore } from '../../core/types.js';
import { parseStoreUrl, redactUrl } from '../../registry.js';
import type { RoundReport, SyncEngine, SyncEvent } from '../../sync/index.js';
import type { SyncProfile, SyncProfileSpec } from '../../sync/profiles.js';
import type { CloudmuxConfig } from '../../config/schema.js';
import { EXIT, UsageError } from '../errors.js';
import { addEncryptionOptions, encryptingStore, type EncryptionFlags } from '../encryption-flags.js';
import { createSyncReporter } from '../sync-progress.js';
import { openSide, parsePositiveInt } from './migrate.js';
import { abortOnInterrupt } from '../interrupt.js';
import { collect } from '../repeatable.js';

interface SyncFlags extends EncryptionFlags {
  fsync: boolean;
  device?: string;
  state?: string;
  conflict: string[];
  watch?: boolean;
  interval?: string;
  dryRun?: boolean;
  json?: boolean;
  config?: string;
  profile?: string;
  metered?: boolean;
}


export function register(program: Command): void {
  const cmd = program
    .command('sync')
    .description('two-way sync of a local directory with a store: three-way reconciliation against the last sync, conflicts by policy, offline queue')
    .argument('<local>', 'local directory (path or file:///dir)')
    .argument('<remote>', 'store URL (s3://bucket/prefix, gs://…, az://account/container/prefix, file:///dir) or a provider name from --config')
    .option('--device <name>', 'this device\'s id in conflict copy names and object metadata (letters, digits, _); default: recorded, else the host name')
    .option('--state <file>', 'sync state (SQLite); default <local>/.cloudmux-sync/state.db')
    .option('--conflict <policy>', 'keep-both (default) | newest | local | remote | merge:<merger>, or GLOB=POLICY per path (repeatable, first match wins)', collect, [])
    .option('--watch', 'keep syncing: a round once a changed file has settled, and every --interval (remote changes); backs off and probes while the remote is unreachable')
    .option('--interval <seconds>', 'with --watch: longest wait between rounds', '30')
    .option('--dry-run', 'scan both sides and print the plan; write nothing')
    .option('--json', 'JSON lines on stdout: one per action, a summary per round')
    .option('--no-fsync', 'do not fsync local writes (faster; a power cut may then lose the last files written, kill -9 cannot)')
    .option('--profile <name>', 'device profile: mobile | desktop | server, or a profile of --config (sync.profiles): which paths sync, a size cap, conflict rules')
    .option('--metered', 'a metered link: only the critical priority class moves (the rest waits, reported); default: the profile\'s, else transfers.metered of --config')
    .option('--no-metered', 'not a metered link, whatever the profile says')
    .option('--config <file>', 'cloudmux.yaml whose provider names may stand for <remote> and whose sync.profiles --profile may name');
  addEncryptionOptions(cmd, { encrypt: 'encrypt every object client-side under this key id (the remote sees only ciphertext; reads decrypt)' });
  cmd.action((localArg: string, remoteArg: string, flags: SyncFlags) => runSync(localArg, remoteArg, flags));

  const status = cmd
    .command('status')
    .description('what the sync of a local directory has pending, its recent conflicts and kept versions')
    .argument('[local]', 'local directory', '.')
    .option('--state <file>', 'sync state file (default <local>/.cloudmux-sync/state.db)')
    .option('--json', 'one JSON object on stdout');
  status.action((localArg: string) => runStatus(localArg, status.optsWithGlobals()));

  const restore = cmd
    .command('restore')
    .description('put a kept version of a path back (on the remote, then on this device)')
    .argument('<path>', 'the path, relative to the synced directory')
    .option('--version <id>', 'the version id `--list` shows (default: the newest kept)')
    .option('--list', 'list the kept versions of <path> (every device\'s) and restore nothing');
  addSyncedDirOptions(restore).option('--json', 'one JSON object on stdout');
  addEncryptionOptions(restore, { encrypt: 'the key id the remote is encrypted under' });
  restore.action((path: string) => runRestore(path, restore.optsWithGlobals()));

  const fetch = cmd
    .command('fetch')
    .description('download list-only paths (profile listOnly) now; they then sync as usual until the local copy is deleted')
    .argument('<paths...>', 'paths relative to the synced directory');
  addSyncedDirOptions(fetch).option('--json', 'JSON lines on stdout: one per action, a summary');
  addEncryptionOptions(fetch, { encrypt: 'the key id the remote is encrypted under' });
  fetch.action((paths: string[]) => runFetch(paths, fetch.optsWithGlobals()));
}

/** Where a subcommand that runs no round finds the synced directory, its state and its remote. */
function addSyncedDirOptions(sub: Command): Command {
  return sub
    .option('--local <dir>', 'the synced directory', '.')
    .option('--state <file>', 'sync state file (default <local>/.cloudmux-sync/state.db)')
    .option('--remote <url>', 'the remote, when the state does not record it (URLs with credentials are not recorded)');
}

function localDir(arg: string, flag: string): string {
  let dir = arg;
  if (/^[a-z][a-z0-9+.-]*:/i.test(arg)) {
    const url = parseStoreUrl(arg);
    if (url.protocol !== 'file:') throw new UsageError(`${flag}: must be a local directory, not ${redactUrl(arg)}`);
    dir = fileURLToPath(url);
  }
  dir = resolve(dir);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`${flag} ${dir}: no such directory`);
  return dir;
}

interface EngineFlags {
  fsync?: boolean;
  device?: string;
  state?: string;
  conflict?: string[];
  profile?: SyncProfile;
  meteredLink?: boolean;
  /** Record the profile in the state (a sync run does; restore and fetch reuse the recorded one). */
  recordProfile?: boolean;
  remoteUrl?: string;
  encryptWith?: string;
  onEvent?: (e: SyncEvent) => void;
}

async function openEngine(local: string, remote: BlobStore, remoteName: string, opts: EngineFlags): Promise<SyncEngine> {
  const { SyncEngine } = await import('../../sync/sync-engine.js');
  let engine: SyncEngine;
  try {
    engine = SyncEngine.open({ local, remote, pair: remoteName, statePath: opts.state, device: opts.device, conflict: opts.conflict, profile: opts.profile, metered: opts.meteredLink, fsync: opts.fsync, onEvent: opts.onEvent });
  } catch (e) {
    if (isCloudmuxError(e) && (e.code === 'InvalidArgument' || e.code === 'InvalidConfig')) throw new UsageError(e.message);
    throw e;
  }
  // What status and restore need to open the remote again (never a URL carrying credentials).
  if (opts.remoteUrl !== undefined && redactUrl(opts.remoteUrl) === opts.remoteUrl) engine.state.setMeta('remote_url', opts.remoteUrl);
  if (opts.encryptWith !== undefined) engine.state.setMeta('encrypt_with', opts.encryptWith);
  // What restore and fetch reopen the directory with (their rounds must keep to the same profile).
  if (opts.recordProfile) engine.state.setMeta('profile', opts.profile ? JSON.stringify({ name: opts.profile.name, spec: opts.profile.spec, metered: opts.meteredLink }) : undefined);
  return engine;
}

/** Exit code of a finished run: 1 when a path failed or the remote was unreachable. */
function exitOf(r: RoundReport): number {
  return r.online && r.counts.failed === 0 ? EXIT.ok : EXIT.failed;
}

async function runSync(localArg: string, remoteArg: string, flags: SyncFlags): Promise<void> {
  const local = localDir(localArg, '<local>');
  const interval = parsePositiveInt(flags.interval ?? '30', '--interval') * 1000;
  if (flags.watch && flags.dryRun) throw new UsageError('--watch cannot be combined with --dry-run');
  // Before anything is opened: a bad profile changes nothing.
  const { profile, metered } = await loadProfile(flags);
  const side = await openSide(remoteArg, '<remote>', flags.config, {}, false, flags.dryRun === true);
  let remote = side.store;
  let engine: SyncEngine | undefined;
  const reporter = createSyncReporter({ json: flags.json, tty: process.stderr.isTTY === true });
  const ctl = abortOnInterrupt();
  try {
    if (flags.encryptWith !== undefined) remote = await encryptingStore(remote, flags);
    engine = await openEngine(local, remote, side.name, { ...flags, profile, meteredLink: metered, recordProfile: true, remoteUrl: remoteArg, onEvent: (ev) => reporter.onEvent(ev) });
    const e = engine;
    if (flags.watch) {
      const { syncLoop } = await import('../../sync/sync-loop.js');
      await syncLoop(e, { signal: ctl.signal, intervalMs: interval, watch: true, onRound: (r) => reporter.round(r) });
      process.exitCode = EXIT.ok;
      return;
    }
    // One run: rounds until nothing is left for a next round (deferred or raced paths), at most 3.
    let r: RoundReport;
    for (let i = 0; ; i++) {
      r = await e.round({ dryRun: flags.dryRun, signal: ctl.signal });
      reporter.round(r);
      if (!r.online || r.dryRun || r.counts.deferred + r.counts.raced === 0 || i >= 2) break;
    }
    process.exitCode = exitOf(r);
  } catch (err) {
    reporter.stop();
    throw err;
  } finally {
    ctl.release();
    engine?.close();
    await remote.close().catch(() => undefined);
  }
}

/**
 * `--profile NAME` (a profile of the config's `sync.profiles`, else a preset) and whether the link
 * is metered: `--metered`/`--no-metered`, else the profile's, else the config's transfers.metered.
 */
async function loadProfile(flags: SyncFlags): Promise<{ profile?: SyncProfile; metered?: boolean }> {
  if (flags.profile === undefined && flags.metered !== undefined) return { metered: flags.metered };
  let config: CloudmuxConfig | undefined;
  if (flags.config !== undefined) {
    const { loadConfig } = await import('../../config/load.js');
    config = await loadConfig(flags.config);
  }
  if (flags.profile === undefined) return { metered: config?.transfers.metered };
  const { resolveProfile } = await import('../../sync/profiles.js');
  try {
    const profile = resolveProfile(flags.profile, config?.sync?.profiles ?? {});
    return { profile, metered: flags.metered };
  } catch (e) {
    if (isCloudmuxError(e, 'InvalidArgument')) throw new UsageError(`--profile: ${e.message}`);
    throw e;
  }
}

interface StatusFlags {
  state?: string;
  json?: boolean;
}

async function runStatus(localArg: string, flags: StatusFlags): Promise<void> {
  const local = localDir(localArg, '[local]');
  const { SyncState } = await import('../../sync/sync-state.js');
  const { LocalTree } = await import('../../sync/local-tree.js');
  const path = flags.state ?? LocalTree.defaultStatePath(local);
  if (!existsSync(path)) throw new UsageError(`no sync state at ${path}: run cloudmux sync ${local} REMOTE first (or give --state)`);
  const state = SyncState.open(path);
  try {
    const pending = [...state.queue().values()];
    const out = {
      pair: state.getMeta('pair'), device: state.getMeta('device'), files: state.baseCount(),
      pending: pending.map((q) => ({ path: q.path, change: q.sha256 === null ? 'deleted' : 'changed', seenAt: new Date(q.detectedAt).toISOString() })),
      conflicts: state.conflicts(20).map((c) => ({ ...c, at: new Date(c.at).toISOString() })),
      conflictCount: state.conflictCount(),
      versions: state.versions(),
      profile: (JSON.parse(state.getMeta('profile') ?? 'null') as { name: string } | null)?.name,
      listed: JSON.parse(state.getMeta('listed') ?? '[]') as { path: string; size: number }[],
    };
    if (flags.json) {
      process.stdout.write(`${JSON.stringify(out)}\n`);
      return;
    }
    const lines = [
      `pair: ${out.pair ?? '?'}  device: ${out.device ?? '?'}  files in sync: ${out.files}`,
      ...(out.profile !== undefined ? [`profile: ${out.profile}`] : []),
      `pending local changes: ${pending.length}`,
      ...out.pending.slice(0, 20).map((p) => `  ${p.change} ${p.path} (seen ${p.seenAt})`),
      ...(out.listed.length > 0 ? [`list-only, not on this device (cloudmux sync fetch PATH): ${out.listed.length}`, ...out.listed.slice(0, 20).map((l) => `  ${l.path} (${l.size} bytes)`)] : []),
      `conflicts: ${out.conflictCount}`,
      ...out.conflicts.slice(0, 10).map((c) => `  ${c.at} ${c.path} [${c.policy}] ${c.outcome}${c.copy ? `: ${c.copy}` : ''}`),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    state.close();
  }
}

/** The profile a sync run recorded in the state, for the rounds restore and fetch run. */
async function recordedProfile(json: string | undefined): Promise<{ profile?: SyncProfile; meteredLink?: boolean }> {
  if (json === undefined) return {};
  const { SyncProfile } = await import('../../sync/profiles.js');
  const r = JSON.parse(json) as { name: string; spec: SyncProfileSpec; metered?: boolean };
  return { profile: new SyncProfile(r.name, r.spec), meteredLink: r.metered };
}

interface RestoreFlags extends EncryptionFlags {
  version?: string;
  list?: boolean;
  local?: string;
  state?: string;
  remote?: string;
  json?: boolean;
}

/** What a synced directory's state records, read for a subcommand that runs no sync of its own flags. */
interface SyncedDir {
  local: string;
  /** `--remote`, else the recorded URL (not recorded when it carries credentials). */
  remoteArg: string | undefined;
  pair: string | undefined;
  /** `--encrypt-with`, else the recorded key id. */
  keyId: string | undefined;
  recorded: Awaited<ReturnType<typeof recordedProfile>>;
}

async function readSyncedDir(flags: RestoreFlags): Promise<SyncedDir> {
  const local = localDir(flags.local ?? '.', '--local');
  const { SyncState } = await import('../../sync/sync-state.js');
  const { LocalTree } = await import('../../sync/local-tree.js');
  const statePath = flags.state ?? LocalTree.defaultStatePath(local);
  if (!existsSync(statePath)) throw new UsageError(`no sync state at ${statePath}: give --local or --state of a synced directory`);
  const peek = SyncState.open(statePath);
  try {
    return {
      local,
      remoteArg: flags.remote ?? peek.getMeta('remote_url'),
      pair: peek.getMeta('pair'),
      keyId: flags.encryptWith ?? peek.getMeta('encrypt_with'),
      recorded: await recordedProfile(peek.getMeta('profile')),
    };
  } finally {
    peek.close();
  }
}

/** The synced directory's remote, decrypting under its key id when it has one. */
async function openSyncedRemote(dir: SyncedDir, flags: RestoreFlags): Promise<{ store: BlobStore; name: string }> {
  if (dir.remoteArg === undefined) throw new UsageError('the state does not record the remote (its URL carries credentials): give --remote');
  const side = await openSide(dir.remoteArg, '--remote', undefined, {}, false, false);
  if (dir.keyId === undefined) return side;
  try {
    return { store: await encryptingStore(side.store, { ...flags, encryptWith: dir.keyId }), name: side.name };
  } catch (e) {
    await side.store.close().catch(() => undefined);
    throw e;
  }
}

async function runRestore(path: string, flags: RestoreFlags): Promise<void> {
  const dir = await readSyncedDir(flags);
  const side = await openSyncedRemote(dir, flags);
  const remote = side.store;
  let engine: SyncEngine | undefined;
  try {
    engine = await openEngine(dir.local, remote, dir.pair ?? side.name, { state: flags.state, ...dir.recorded });
    if (flags.list) {
      const kept = await engine.versions.list(path);
      process.stdout.write(flags.json ? `${JSON.stringify(kept)}\n` : kept.map((v) => `${v.id}  ${v.size} bytes  kept ${v.keptAt.toISOString()}\n`).join('') || `no kept versions of ${path}\n`);
      return;
    }
    const { restored } = await engine.versions.restore(path, flags.version, engine.device, engine.clock.now());
    const r = await engine.round();
    const result = { restored: restored.path, version: restored.id, synced: r.online && r.counts.failed === 0 };
    process.stdout.write(flags.json ? `${JSON.stringify(result)}\n` : `restored ${restored.path} from version ${restored.id}${result.synced ? '' : ' on the remote (this device catches up on its next sync)'}\n`);
    process.exitCode = result.synced ? EXIT.ok : EXIT.failed;
  } finally {
    engine?.close();
    await remote.close().catch(() => undefined);
  }
}

async function runFetch(paths: string[], flags: RestoreFlags): Promise<void> {
  const dir = await readSyncedDir(flags);
  const notListOnly = paths.filter((p) => !dir.recorded.profile?.isListOnly(p));
  if (notListOnly.length > 0) throw new UsageError(`not a list-only path of this directory's profile: ${notListOnly.join(', ')} (paths are relative to the synced directory)`);
  const side = await openSyncedRemote(dir, flags);
  const remote = side.store;
  let engine: SyncEngine | undefined;
  const reporter = createSyncReporter({ json: flags.json, tty: process.stderr.isTTY === true });
  try {
    engine = await openEngine(dir.local, remote, dir.pair ?? side.name, { state: flags.state, ...dir.recorded, onEvent: (ev) => reporter.onEvent(ev) });
    engine.requestFetch(paths);
    let r: RoundReport;
    for (let i = 0; ; i++) {
      r = await engine.round();
      reporter.round(r);
      if (!r.online || r.counts.deferred + r.counts.raced === 0 || i >= 2) break;
    }
    const missing = paths.filter((p) => r.listed.some((l) => l.path === p));
    if (missing.length > 0) process.stderr.write(`not fetched: ${missing.join(', ')}\n`);
    process.exitCode = missing.length > 0 ? EXIT.failed : exitOf(r);
  } catch (err) {
    reporter.stop();
    throw err;
  } finally {
    engine?.close();
    await remote.close().catch(() => undefined);
  }
}
