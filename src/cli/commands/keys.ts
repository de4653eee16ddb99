import type { Command } from 'commander';
import { openStore, parseStoreUrl, splitObjectUrl } from '../../registry.js';
import { generateKey, loadKeyring } from '../../layers/encryption/keyring.js';
import type { RotateProgress, RotateReport } from '../../layers/encryption/index.js';
import { cliProgress } from '../cli-progress.js';
import { EXIT, UsageError } from '../errors.js';
import { formatDuration } from '../progress.js';
import { openVaultFor, registerDeviceCommands } from './keys-devices.js';

interface RotateFlags {
  to?: string;
  /** Rotate onto the current epoch of the vault this identity belongs to. */
  identity?: string;
  passphraseFile?: string;
  vault?: string;
  keyring?: string;
  concurrency: string;
  json?: boolean;
}

/**
 * Re-wraps every object under a store URL onto key `to` (metadata only). Re-running it after an
 * interruption finishes the rest: objects already on `to` are skipped.
 */
export async function rotateCommand(urlArg: string, flags: RotateFlags, io: { out?: NodeJS.WritableStream; err?: NodeJS.WritableStream; tty?: boolean } = {}): Promise<RotateReport> {
  const out = io.out ?? process.stdout;
  const err = io.err ?? process.stderr;
  const concurrency = Number(flags.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) throw new UsageError(`--concurrency must be an integer in [1, 256], got ${flags.concurrency}`);
  const url = parseStoreUrl(urlArg);
  let storeUrl = url;
  let prefix = '';
  if (url.protocol !== 'file:') ({ store: storeUrl, key: prefix } = splitObjectUrl(url));
  if ((flags.to === undefined) === (flags.identity === undefined)) throw new UsageError('give either --to <key-id> (a keyring key) or --identity <file> (the vault\'s current epoch)');
  const keyring = await loadKeyring({ file: flags.keyring });
  const { EncryptedStore, ChainKeyring, rotateAll } = await import('../../layers/encryption/index.js');
  const inner = await openStore(storeUrl);
  let store: InstanceType<typeof EncryptedStore>;
  if (flags.identity) {
    const vault = await openVaultFor(storeUrl.toString(), { identity: flags.identity, passphraseFile: flags.passphraseFile, vault: flags.vault ?? 'default' });
    flags.to = vault.writeKeyIdNow;
    store = new EncryptedStore(inner, { keyring: new ChainKeyring([vault, keyring]), keyId: flags.to });
  } else {
    store = new EncryptedStore(inner, { keyring, keyId: flags.to! });
  }
  const to = flags.to!;
  const started = Date.now();
  const display = createDisplay(io.tty ?? (err as NodeJS.WriteStream).isTTY === true, flags.json === true, err);
  try {
    const report = await rotateAll(store, to, { prefix: prefix || undefined, concurrency, onProgress: display.update });
    display.stop();
    const seconds = (Date.now() - started) / 1000;
    if (flags.json) {
      out.write(`${JSON.stringify({ event: 'summary', to: flags.to, ...report, durationSec: Math.round(seconds * 10) / 10 })}\n`);
    } else {
      out.write([
        `listed:   ${report.listed} objects`,
        `rotated:  ${report.rotated} (to ${flags.to})`,
        `skipped:  ${report.skipped} (already on ${flags.to})`,
        `failed:   ${report.failed}`,
        `duration: ${formatDuration(seconds)}`,
        ...report.failures.map((f) => `  failed ${f.key}: ${f.error}`),
      ].join('\n') + '\n');
    }
    if (report.failed > 0) process.exitCode = EXIT.failed;
    return report;
  } finally {
    display.stop();
    await store.close();
  }
}

/** A live bar on a TTY, a stats line every ten seconds otherwise, nothing with --json. */
function createDisplay(tty: boolean, json: boolean, err: NodeJS.WritableStream): { update(p: RotateProgress): void; stop(): void } {
  let last: RotateProgress = { listed: 0, rotated: 0, skipped: 0, failed: 0 };
  if (json) return { update: () => {}, stop: () => {} };
  if (tty) {
    const bar = new (cliProgress().SingleBar)({
      stream: err as NodeJS.WriteStream,
      format: '{value} objects | rotated {rotated} | skipped {skipped} | failed {failed}',
      hideCursor: true,
      fps: 5,
    });
    bar.start(0, 0, last);
    let stopped = false;
    return {
      update(p) {
        last = p;
        bar.setTotal(p.listed);
        bar.update(p.rotated + p.skipped + p.failed, { ...p });
      },
      stop() {
        if (stopped) return;
        stopped = true;
        bar.stop();
      },
    };
  }
  const timer = setInterval(() => {
    err.write(`progress: ${last.rotated + last.skipped + last.failed}/${last.listed} objects, rotated ${last.rotated}, skipped ${last.skipped}, failed ${last.failed}\n`);
  }, 10_000);
  timer.unref();
  return {
    update(p) {
      last = p;
    },
    stop() {
      clearInterval(timer);
    },
  };
}

export function register(program: Command): void {
  const keys = program.command('keys').description('client-side encryption keys: generate new ones, rotate objects onto one; device identities and vaults');
  keys
    .command('generate')
    .description('print a new 256-bit key with its id, in key-file form (JSON: id → base64); save it, e.g. `> keys.json`')
    .option('--id <id>', 'key id ([A-Za-z0-9_], up to 64); default k<yyyymmdd>_<random>')
    .action((opts: { id?: string }) => {
      const k = generateKey(opts.id);
      process.stdout.write(`${JSON.stringify({ [k.id]: k.key }, null, 2)}\n`);
    });
  keys
    .command('rotate')
    .description('re-wrap the data key of every object under a URL onto another key: metadata only, no data rewritten; re-run to resume')
    .argument('<url>', 'store URL with an optional prefix: s3://bucket/dir/, gs://…, az://acct/container/…, memory://name/…')
    .option('--to <key-id>', 'the key id objects should end up on')
    .option('--identity <file>', 'instead of --to: this device\'s identity; objects end up on its vault\'s current epoch (after a revocation)')
    .option('--passphrase-file <file>', 'file whose first line is the identity\'s passphrase (default $CLOUDMUX_PASSPHRASE)')
    .option('--vault <name>', 'vault name within the store', 'default')
    .option('--keyring <file>', 'key file (JSON of id → base64 key); CLOUDMUX_KEY_<ID> variables are read as well')
    .option('--concurrency <n>', 'objects in flight', '8')
    .option('--json', 'print the summary as one JSON line')
    .action(async (url: string, flags: RotateFlags) => {
      await rotateCommand(url, flags);
    });
  registerDeviceCommands(keys);
}
