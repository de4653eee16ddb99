import type { Command } from 'commander';
import { readFile, writeFile } from 'node:fs/promises';
import { openStore, parseStoreUrl } from '../../registry.js';
import type { DeviceIdentity as DeviceIdentityClass, DeviceKind, Vault as VaultClass } from '../../layers/encryption/index.js';
import { UsageError } from '../errors.js';
import { PASSPHRASE_ENV, identityFor, passphraseFor } from '../encryption-flags.js';

/**
 * `cloudmux keys device new|list|approve|revoke` and `cloudmux keys vault init|members`: device
 * identities and the vault membership kept in the store. Thin: parse, load, call the library.
 */


interface CommonFlags {
  identity?: string;
  /** Refuse any vault but this id (printed by `keys vault init`): trust from the first contact. */
  vaultId?: string;
  passphraseFile?: string;
  vault: string;
  json?: boolean;
}

type Out = NodeJS.WritableStream;

async function lib(): Promise<typeof import('../../layers/encryption/index.js')> {
  return import('../../layers/encryption/index.js');
}

async function loadIdentity(flags: CommonFlags, env: NodeJS.ProcessEnv): Promise<DeviceIdentityClass> {
  return identityFor(flags, env);
}

async function openVault(url: string, flags: CommonFlags, env: NodeJS.ProcessEnv, needIdentity: boolean): Promise<VaultClass> {
  const { Vault, FileVaultPins } = await lib();
  const identity = needIdentity || flags.identity ? await loadIdentity(flags, env) : undefined;
  const store = await openStore(parseStoreUrl(url));
  return Vault.open(store, { name: flags.vault, identity, vaultId: flags.vaultId, pins: flags.identity ? new FileVaultPins(`${flags.identity}.pins.json`) : undefined, refreshMs: 0 });
}

/** The vault of the store at `url` as this identity sees it (for `keys rotate --identity`). */
export async function openVaultFor(url: string, flags: { identity: string; passphraseFile?: string; vault: string }, env: NodeJS.ProcessEnv = process.env): Promise<VaultClass> {
  return openVault(url, flags, env, true);
}

function print(out: Out, json: boolean | undefined, value: Record<string, unknown>, lines: string[]): void {
  out.write(json ? `${JSON.stringify(value)}\n` : `${lines.join('\n')}\n`);
}

export async function deviceNew(flags: { name: string; kind: string; out: string; public?: string; passphraseFile?: string; scryptLogN: string; json?: boolean }, io: { out?: Out; env?: NodeJS.ProcessEnv } = {}): Promise<void> {
  const out = io.out ?? process.stdout;
  const env = io.env ?? process.env;
  const { DeviceIdentity, DEVICE_KINDS, publicToJson } = await lib();
  if (!DEVICE_KINDS.includes(flags.kind as DeviceKind)) throw new UsageError(`--kind must be one of ${DEVICE_KINDS.join(', ')}`);
  const logN = Number(flags.scryptLogN);
  if (!Number.isInteger(logN) || logN < 10 || logN > 20) throw new UsageError(`--scrypt-log-n must be an integer in [10, 20], got ${flags.scryptLogN}`);
  const pass = await passphraseFor(flags, env);
  const identity = DeviceIdentity.generate(flags.name, flags.kind as DeviceKind);
  const publicPath = flags.public ?? flags.out.replace(/(\.json)?$/, '.pub.json');
  try {
    // Create-only: an identity is never overwritten (its loss would lock its device out).
    await writeFile(flags.out, await identity.seal({ passphrase: pass, scrypt: { N: 2 ** logN, r: 8, p: 1 } }), { flag: 'wx', mode: 0o600 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new UsageError(`--out ${flags.out} exists; an identity is never overwritten`);
    throw new UsageError(`--out ${flags.out}: cannot write it (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  await writeFile(publicPath, `${JSON.stringify(publicToJson(identity.public), null, 2)}\n`);
  print(out, flags.json, { event: 'device', name: identity.public.name, kind: identity.public.kind, fingerprint: identity.fingerprint, id: identity.id, identity: flags.out, public: publicPath }, [
    `device:      ${identity.public.name} (${identity.public.kind})`,
    `fingerprint: ${identity.fingerprint}`,
    `identity:    ${flags.out} (private, passphrase-protected: keep it on this device)`,
    `public:      ${publicPath} (give it to a vault member, and read them the fingerprint)`,
  ]);
}

export async function vaultInit(url: string, flags: CommonFlags, io: { out?: Out; env?: NodeJS.ProcessEnv } = {}): Promise<void> {
  const out = io.out ?? process.stdout;
  const env = io.env ?? process.env;
  const { Vault, FileVaultPins } = await lib();
  const identity = await loadIdentity(flags, env);
  const vault = await Vault.init(await openStore(parseStoreUrl(url)), identity, { name: flags.vault, pins: new FileVaultPins(`${flags.identity}.pins.json`) });
  print(out, flags.json, { event: 'vault', vault: vault.name, id: vault.id, epoch: vault.epoch, founder: identity.fingerprint }, [
    `vault:   ${vault.name} (${vault.id})`,
    `founder: ${identity.public.name} ${identity.fingerprint}`,
  ]);
}

export async function vaultMembers(url: string, flags: CommonFlags & { all?: boolean }, io: { out?: Out; env?: NodeJS.ProcessEnv } = {}): Promise<void> {
  const out = io.out ?? process.stdout;
  const vault = await openVault(url, flags, io.env ?? process.env, false);
  const { shortFingerprint } = await lib();
  const members = vault.members();
  const current = new Set(members.map((m) => m.id));
  const revoked = vault.records
    .filter((r) => r.record.change.op === 'revoke' && !current.has(r.record.change.device))
    .map((r) => ({
      id: r.record.change.device,
      fingerprint: shortFingerprint(r.record.change.device),
      name: vault.records[r.record.seq - 1]!.record.members.find((m) => m.device === r.record.change.device)?.name ?? '?',
      revokedAt: r.record.seq,
      epoch: r.record.epoch,
    }));
  const rows = members.map((m) => `${m.fingerprint}  ${m.role.padEnd(10)}  ${m.name.padEnd(20)}  ${m.kind.padEnd(13)}  added at record ${m.addedAt} by ${m.addedBy}`);
  if (flags.all) for (const r of revoked) rows.push(`${r.fingerprint}  revoked     ${r.name.padEnd(20)}  at record ${r.revokedAt} (new epoch ${r.epoch})`);
  print(out, flags.json, { event: 'members', vault: vault.name, id: vault.id, epoch: vault.epoch, records: vault.records.length, members, ...(flags.all ? { revoked } : {}) }, [
    `vault ${vault.name} (${vault.id}), epoch ${vault.epoch}, ${vault.records.length} records verified`,
    ...rows,
  ]);
}

export async function deviceApprove(url: string, flags: CommonFlags & { device: string; fingerprint: string; writeOnly?: boolean }, io: { out?: Out; env?: NodeJS.ProcessEnv } = {}): Promise<void> {
  const out = io.out ?? process.stdout;
  const { publicFromJson, shortFingerprint, deviceId } = await lib();
  let pubText: string;
  try {
    pubText = await readFile(flags.device, 'utf8');
  } catch (e) {
    throw new UsageError(`--device ${flags.device}: cannot read it (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(pubText);
  } catch {
    throw new UsageError(`--device ${flags.device} is not JSON (expected a device's .pub.json)`);
  }
  const pub = publicFromJson(parsed, `--device ${flags.device}`);
  const vault = await openVault(url, flags, io.env ?? process.env, true);
  const rec = await vault.approve(pub, { role: flags.writeOnly ? 'write-only' : 'full', fingerprint: flags.fingerprint });
  const fp = shortFingerprint(deviceId(pub));
  print(out, flags.json, { event: 'approved', vault: vault.name, device: pub.name, fingerprint: fp, role: flags.writeOnly ? 'write-only' : 'full', record: rec.record.seq, epoch: rec.record.epoch }, [
    `approved: ${pub.name} ${fp} as ${flags.writeOnly ? 'write-only (can encrypt new objects, cannot decrypt)' : 'full member'}`,
    `record:   ${rec.record.seq} of vault ${vault.name}, epoch ${rec.record.epoch}`,
  ]);
}

export async function deviceRevoke(url: string, flags: CommonFlags & { device: string; rotate: boolean; concurrency: string }, io: { out?: Out; err?: Out; env?: NodeJS.ProcessEnv } = {}): Promise<void> {
  const out = io.out ?? process.stdout;
  const vault = await openVault(url, flags, io.env ?? process.env, true);
  const { shortFingerprint, rotateAll, vaultStore } = await lib();
  const rec = await vault.revoke(flags.device);
  const fp = shortFingerprint(rec.record.change.device);
  let report: Awaited<ReturnType<typeof rotateAll>> | undefined;
  if (flags.rotate) {
    const concurrency = Number(flags.concurrency);
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) throw new UsageError(`--concurrency must be an integer in [1, 256], got ${flags.concurrency}`);
    report = await rotateAll(vaultStore(vault.store, vault), vault.writeKeyIdNow, { concurrency });
    if (report.failed > 0) process.exitCode = 1;
  }
  print(out, flags.json, { event: 'revoked', vault: vault.name, fingerprint: fp, record: rec.record.seq, epoch: rec.record.epoch, ...(report ? { rotation: report } : {}) }, [
    `revoked:  ${fp} from vault ${vault.name}; new epoch ${rec.record.epoch} (record ${rec.record.seq})`,
    report
      ? `rotated:  ${report.rotated} objects re-wrapped (metadata only), ${report.skipped} already current, ${report.failed} failed${report.failed ? ': run `cloudmux keys rotate --identity …` to finish' : ''}`
      : 'rotation skipped (--no-rotate): objects written before still open with the old epoch key until re-wrapped',
    ...(report?.failures ?? []).map((f) => `  failed ${f.key}: ${f.error}`),
  ]);
}

export function registerDeviceCommands(keys: Command): void {
  const common = (c: Command, identityRequired: boolean): Command => c
    .option('--identity <file>', `this device's identity file${identityRequired ? '' : ' (optional: pins what this device has seen)'}`)
    .option('--passphrase-file <file>', `file whose first line is the identity's passphrase (default $${PASSPHRASE_ENV})`)
    .option('--vault <name>', 'vault name within the store', 'default')
    .option('--vault-id <id>', 'refuse any vault but this id (as `keys vault init` printed it): no trust on first use')
    .option('--json', 'print one JSON line');
  const device = keys.command('device').description('device identities: create one, list, approve or revoke devices of a vault (named by fingerprint)');
  device.command('new')
    .description('create this device\'s key pair: a passphrase-protected identity file and a public file to hand to a vault member')
    .requiredOption('--name <name>', 'device name ([A-Za-z0-9._@-], up to 64)')
    .requiredOption('--out <file>', 'identity file to create (never overwritten); the public half goes to <file>.pub.json')
    .option('--kind <kind>', 'x25519 (default) or rsa-oaep-4096', 'x25519')
    .option('--public <file>', 'where to write the public half')
    .option('--scrypt-log-n <n>', 'scrypt cost: N = 2^n with r=8, p=1 (memory 128·N·r bytes: 17 → 128 MiB); stored in the file', '17')
    .option('--passphrase-file <file>', `file whose first line is the passphrase (default $${PASSPHRASE_ENV})`)
    .option('--json', 'print one JSON line')
    .action(async (flags: Parameters<typeof deviceNew>[0]) => deviceNew(flags));
  common(device.command('list').description('devices of the vault: members with role and fingerprint, and revoked ones').argument('<url>', 'store URL'), false)
    .action(async (url: string, flags: CommonFlags) => vaultMembers(url, { ...flags, all: true }));
  common(device.command('approve').description('add a device to the vault after comparing its fingerprint with its owner').argument('<url>', 'store URL'), true)
    .requiredOption('--device <file>', 'the new device\'s public file (<name>.pub.json)')
    .requiredOption('--fingerprint <fp>', 'the fingerprint the device\'s owner reads out; must match')
    .option('--write-only', 'the device may encrypt new objects but decrypt nothing (backup, ingest)')
    .action(async (url: string, flags: Parameters<typeof deviceApprove>[1]) => deviceApprove(url, flags));
  common(device.command('revoke').description('remove a device: new vault key epoch, then re-wrap existing objects (metadata only)').argument('<url>', 'store URL'), true)
    .requiredOption('--device <fingerprint>', 'fingerprint (or id) of the device to remove')
    .option('--no-rotate', 'do not re-wrap existing objects now (run `cloudmux keys rotate` later)')
    .option('--concurrency <n>', 'objects re-wrapped at once', '8')
    .action(async (url: string, flags: Parameters<typeof deviceRevoke>[1]) => deviceRevoke(url, flags));
  const vault = keys.command('vault').description('vaults: keys shared by devices, membership kept signed in the store');
  common(vault.command('init').description('found a vault in the store with this device as its first member').argument('<url>', 'store URL'), true)
    .action(async (url: string, flags: CommonFlags) => vaultInit(url, flags));
  common(vault.command('members').description('current members, verified from the signed records').argument('<url>', 'store URL'), false)
    .action(async (url: string, flags: CommonFlags) => vaultMembers(url, flags));
}
