import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DeviceIdentity, MemoryVaultPins, Vault, vaultStore } from '../../src/layers/encryption/index.js';
import { openStore, parseStoreUrl } from '../../src/registry.js';
import { runCli } from '../cli/run-cli.js';
import { text } from './vault-helpers.js';

const dir = await mkdtemp(join(tmpdir(), 'cloudmux-vault-cli-'));
afterAll(() => rm(dir, { recursive: true, force: true }));
const env = { CLOUDMUX_PASSPHRASE: 'open sesame' };
const URL = 'memory://vault-cli';

async function cli(args: string[], e: Record<string, string | undefined> = env): Promise<{ code: number; out: string; err: string; json: () => Record<string, unknown> }> {
  const r = await runCli(args, { env: e });
  const out = r.out.toString('utf8');
  return { code: r.code, out, err: r.err, json: () => JSON.parse(out) as Record<string, unknown> };
}

async function recordCount(): Promise<number> {
  let n = 0;
  for await (const i of (await openStore(parseStoreUrl(URL))).list({ prefix: '.cloudmux_vault/' })) if (i.type === 'object') n++;
  return n;
}

describe('cloudmux keys device / keys vault', () => {
  it('creates devices, founds a vault, approves by fingerprint, lists, revokes with rotation', async () => {
    const made: Record<string, { fingerprint: string; identity: string; public: string }> = {};
    for (const name of ['laptop', 'phone', 'backup']) {
      const r = await cli(['keys', 'device', 'new', '--name', name, '--out', join(dir, `${name}.json`), '--scrypt-log-n', '12', '--json']);
      expect(r.code, r.err).toBe(0);
      made[name] = r.json() as (typeof made)[string];
      expect(made[name]!.fingerprint).toMatch(/^[0-9A-Z]{4}(-[0-9A-Z]{4}){3}$/);
      expect(await readFile(join(dir, `${name}.json`), 'utf8')).not.toContain('open sesame');
    }
    expect(JSON.parse(await readFile(join(dir, 'laptop.json'), 'utf8'))).toMatchObject({ protection: { type: 'scrypt', N: 4096, r: 8, p: 1 } });
    expect((await cli(['keys', 'device', 'new', '--name', 'x', '--out', join(dir, 'x.json'), '--scrypt-log-n', '30'])).code).toBe(2);
    // Never overwritten.
    expect((await cli(['keys', 'device', 'new', '--name', 'laptop', '--out', join(dir, 'laptop.json')])).code).toBe(2);

    const laptop = ['--identity', made.laptop!.identity];
    const init = await cli(['keys', 'vault', 'init', URL, ...laptop, '--json']);
    expect(init.code, init.err).toBe(0);
    expect(init.json()).toMatchObject({ vault: 'default', founder: made.laptop!.fingerprint });

    // A fingerprint that does not match: exit 2, nothing written.
    const wrong = await cli(['keys', 'device', 'approve', URL, ...laptop, '--device', made.phone!.public, '--fingerprint', made.backup!.fingerprint]);
    expect(wrong.code).toBe(2);
    expect(wrong.err).toContain('does not match');
    expect(await recordCount()).toBe(1);

    expect((await cli(['keys', 'device', 'approve', URL, ...laptop, '--device', made.phone!.public, '--fingerprint', made.phone!.fingerprint.toLowerCase()])).code).toBe(0);
    const w = await cli(['keys', 'device', 'approve', URL, ...laptop, '--device', made.backup!.public, '--fingerprint', made.backup!.fingerprint, '--write-only', '--json']);
    expect(w.json()).toMatchObject({ role: 'write-only', record: 2, fingerprint: made.backup!.fingerprint });

    const vaultId = init.json().id as string;
    expect((await cli(['keys', 'vault', 'members', URL, '--vault-id', vaultId])).code).toBe(0);
    const other = await cli(['keys', 'vault', 'members', URL, '--vault-id', '0'.repeat(32)]);
    expect(other.code).toBe(1);
    expect(other.err).toContain('not the expected');
    const members = await cli(['keys', 'vault', 'members', URL, '--json']);
    expect((members.json().members as { fingerprint: string; role: string }[]).map((m) => [m.fingerprint, m.role])).toEqual([
      [made.laptop!.fingerprint, 'full'], [made.phone!.fingerprint, 'full'], [made.backup!.fingerprint, 'write-only'],
    ]);
    const human = await cli(['keys', 'vault', 'members', URL]);
    expect(human.out).toContain(made.phone!.fingerprint);

    // Objects written by the phone through the library, then the phone is revoked from the CLI.
    const store = await openStore(parseStoreUrl(URL));
    const phone = await DeviceIdentity.load(made.phone!.identity, { passphrase: 'open sesame' });
    const pv = await Vault.open(store, { identity: phone, pins: new MemoryVaultPins(), refreshMs: 0 });
    for (let i = 0; i < 5; i++) await vaultStore(store, pv).put(`doc/${i}`, `doc ${i}`);
    const revoke = await cli(['keys', 'device', 'revoke', URL, ...laptop, '--device', made.phone!.fingerprint, '--json']);
    expect(revoke.code, revoke.err).toBe(0);
    expect(revoke.json()).toMatchObject({ epoch: 1, rotation: { listed: 5, rotated: 5, failed: 0 } });
    await expect(vaultStore(store, pv).get('doc/0')).rejects.toMatchObject({ code: 'AccessDenied' });
    const lv = await Vault.open(store, { identity: await DeviceIdentity.load(made.laptop!.identity, { passphrase: 'open sesame' }) });
    expect(await text(vaultStore(store, lv), 'doc/4')).toBe('doc 4');

    const list = await cli(['keys', 'device', 'list', URL, '--json']);
    expect((list.json().revoked as { fingerprint: string }[]).map((r) => r.fingerprint)).toEqual([made.phone!.fingerprint]);
    // rotate --identity is a no-op now: everything is on the new epoch.
    const rot = await cli(['keys', 'rotate', URL, ...laptop, '--json']);
    expect(rot.json()).toMatchObject({ rotated: 0, skipped: 5, failed: 0 });
  }, 300_000);

  it('cp --encrypt-with vault and cat --decrypt with --identity: members read, a write-only device writes but cannot read', async () => {
    const url = 'memory://vault-cli-cp';
    const ids: Record<string, { identity: string; public: string; fingerprint: string }> = {};
    for (const name of ['owner', 'ingest']) {
      ids[name] = (await cli(['keys', 'device', 'new', '--name', name, '--out', join(dir, `cp-${name}.json`), '--scrypt-log-n', '12', '--json'])).json() as (typeof ids)[string];
    }
    expect((await cli(['keys', 'vault', 'init', url, '--identity', ids.owner!.identity])).code).toBe(0);
    expect((await cli(['keys', 'device', 'approve', url, '--identity', ids.owner!.identity, '--device', ids.ingest!.public, '--fingerprint', ids.ingest!.fingerprint, '--write-only'])).code).toBe(0);
    const src = join(dir, 'report.txt');
    await writeFile(src, 'quarterly numbers');
    const put = await cli(['cp', src, `${url}/in/report.txt`, '--encrypt-with', 'vault', '--identity', ids.ingest!.identity]);
    expect(put.code, put.err).toBe(0);
    const cat = await cli(['cat', `${url}/in/report.txt`, '--decrypt', '--identity', ids.owner!.identity]);
    expect(cat.code, cat.err).toBe(0);
    expect(cat.out).toBe('quarterly numbers');
    const denied = await cli(['cat', `${url}/in/report.txt`, '--decrypt', '--identity', ids.ingest!.identity]);
    expect(denied.code).toBe(1);
    expect(denied.err).toContain('write-only');
    expect(denied.out).toBe('');
    // Without the identity the v2 object is not decryptable from a keyring: exit 2, nothing printed.
    expect((await cli(['cat', `${url}/in/report.txt`, '--decrypt'])).code).toBe(2);
  }, 300_000);

  it('wrong passphrase, missing passphrase, missing identity: typed errors, exit codes, nothing written', async () => {
    const id = join(dir, 'solo.json');
    expect((await cli(['keys', 'device', 'new', '--name', 'solo', '--out', id, '--scrypt-log-n', '12'])).code).toBe(0);
    const url = 'memory://vault-cli-errors';
    const bad = await cli(['keys', 'vault', 'init', url, '--identity', id], { CLOUDMUX_PASSPHRASE: 'nope' });
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/AuthFailed|wrong passphrase/);
    expect(bad.err).not.toContain('nope');
    expect((await cli(['keys', 'vault', 'init', url, '--identity', id], { CLOUDMUX_PASSPHRASE: undefined })).code).toBe(2);
    const missing = await cli(['keys', 'vault', 'init', url, '--identity', join(dir, 'absent.json')]);
    expect(missing.code).toBe(2);
    expect(missing.err).toContain('does not exist');
    const pf = join(dir, 'pass.txt');
    await writeFile(pf, 'open sesame\n');
    let n = 0;
    for await (const _ of (await openStore(parseStoreUrl(url))).list()) n++;
    expect(n).toBe(0);
    expect((await cli(['keys', 'vault', 'init', url, '--identity', id, '--passphrase-file', pf], {})).code).toBe(0);
    expect((await cli(['keys', 'vault', 'init', url, '--identity', id, '--passphrase-file', pf], {})).code).toBe(1);
  }, 300_000);
});
