import { describe, expect, it } from 'vitest';
import { collect } from '../../src/core/body.js';
import { isCloudmuxError } from '../../src/core/errors.js';
import { MemoryStore } from '../../providers/memory/index.js';
import { DeviceIdentity, MemoryVaultPins, Vault, rotateAll, type MemberRole } from '../../src/layers/encryption/index.js';
import { seededRandom } from '../faults/random.js';
import { device, recordKey, type Device } from './vault-helpers.js';

/**
 * Seeded random histories of approvals, revocations, writes, reads and rotations by several
 * devices, checked against a model: a device reads an object iff it is a full member now (then it
 * gets exactly what was written); it writes iff it is a member. Then every record of the final
 * chain is tampered with in turn (a byte flipped in the signed text, records swapped, the newest
 * deleted): each must be refused. Replay a failure with its seed.
 */
const SEEDS = [11, 23, 47];

interface Model {
  roles: Map<string, MemberRole>;
  objects: Map<string, string>;
}

async function history(seed: number): Promise<{ inner: MemoryStore; devices: Device[] }> {
  const rand = seededRandom(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const inner = new MemoryStore();
  const ids = Array.from({ length: 5 }, (_, i) => DeviceIdentity.generate(`dev${i}`));
  await Vault.init(inner, ids[0]!);
  const devices: Device[] = [];
  for (const id of ids) devices.push(await device(inner, id, new MemoryVaultPins()));
  const model: Model = { roles: new Map([[ids[0]!.id, 'full']]), objects: new Map() };
  const fulls = (): Device[] => devices.filter((d) => model.roles.get(d.identity.id) === 'full');
  let n = 0;
  for (let step = 0; step < 40; step++) {
    const r = rand();
    const where = `seed ${seed} step ${step}`;
    if (r < 0.2) {
      const outsiders = devices.filter((d) => !model.roles.has(d.identity.id));
      if (!outsiders.length) continue;
      const who = pick(outsiders);
      const role: MemberRole = rand() < 0.5 ? 'full' : 'write-only';
      await pick(fulls()).vault.approve(who.identity.public, { role, fingerprint: who.identity.fingerprint });
      model.roles.set(who.identity.id, role);
    } else if (r < 0.3) {
      const members = devices.filter((d) => model.roles.has(d.identity.id));
      const victim = pick(members);
      if (fulls().length === 1 && model.roles.get(victim.identity.id) === 'full') continue;
      const by = pick(fulls().filter((d) => d !== victim).concat(fulls().length > 1 ? [] : fulls()));
      await by.vault.revoke(victim.identity.fingerprint);
      model.roles.delete(victim.identity.id);
      if (rand() < 0.7) {
        const rot = await rotateAll(by.store, by.vault.writeKeyIdNow);
        expect(rot.failed, where).toBe(0);
      }
    } else if (r < 0.65) {
      const writer = pick(devices);
      const key = `k/${n++}`;
      const body = `${where} by ${writer.identity.public.name}`;
      try {
        await writer.store.put(key, body);
        model.objects.set(key, body);
        expect(model.roles.has(writer.identity.id), `${where}: a non-member wrote`).toBe(true);
      } catch (e) {
        expect(isCloudmuxError(e, 'AccessDenied'), `${where}: ${String(e)}`).toBe(true);
        expect(model.roles.has(writer.identity.id), `${where}: a member could not write`).toBe(false);
        expect((await inner.head(key).catch(() => undefined)), `${where}: a refused write left an object`).toBeUndefined();
      }
    } else {
      if (!model.objects.size) continue;
      const reader = pick(devices);
      const key = pick([...model.objects.keys()]);
      const canRead = model.roles.get(reader.identity.id) === 'full';
      try {
        const got = (await collect((await reader.store.get(key)).body)).toString('utf8');
        expect(canRead, `${where}: ${reader.identity.public.name} (${model.roles.get(reader.identity.id) ?? 'not a member'}) read ${key}`).toBe(true);
        expect(got, where).toBe(model.objects.get(key));
      } catch (e) {
        if (canRead) throw e;
        expect(isCloudmuxError(e, 'AccessDenied'), `${where}: ${String(e)}`).toBe(true);
      }
    }
  }
  return { inner, devices };
}

describe('vault adversary: seeded histories and tampering', () => {
  for (const seed of SEEDS) {
    it(`seed ${seed}: reads and writes follow membership; every tampered record is refused`, async () => {
      const rand = seededRandom(seed * 7919);
      const { inner, devices } = await history(seed);
      const founder = devices[0]!;
      const fresh = (): Promise<Vault> => Vault.open(inner, { identity: founder.identity, pins: new MemoryVaultPins() });
      // Seeds 11/23/47 end at 5/8/11 records and epochs 0/2/3 (approvals, revocations, rotations).
      const length = (await fresh()).records.length;
      for (let seq = 0; seq < length; seq++) {
        const original = (await collect((await inner.get(recordKey(seq))).body)).toString('utf8');
        const env = JSON.parse(original) as { record: string; ed25519: string };
        // A byte flipped in the signed text (kept valid UTF-8 and JSON-string-safe: a digit or letter changed).
        const positions = [...env.record].map((c, i) => (/[0-9a-zA-Z]/.test(c) ? i : -1)).filter((i) => i >= 0);
        const at = positions[Math.floor(rand() * positions.length)]!;
        const c = env.record[at]!;
        const flipped = env.record.slice(0, at) + (c === 'a' ? 'b' : c === '0' ? '1' : /[0-9]/.test(c) ? '0' : 'a') + env.record.slice(at + 1);
        await inner.put(recordKey(seq), JSON.stringify({ ...env, record: flipped }));
        await expect(fresh(), `seed ${seed}: record ${seq} flipped at ${at}`).rejects.toMatchObject({ code: 'IntegrityError' });
        await inner.put(recordKey(seq), original);
      }
      if (length > 2) {
        const i = 1 + Math.floor(rand() * (length - 2));
        const a = (await collect((await inner.get(recordKey(i))).body)).toString('utf8');
        const b = (await collect((await inner.get(recordKey(i + 1))).body)).toString('utf8');
        await inner.put(recordKey(i), b);
        await inner.put(recordKey(i + 1), a);
        await expect(fresh(), `seed ${seed}: records ${i} and ${i + 1} swapped`).rejects.toMatchObject({ code: 'IntegrityError' });
        await inner.put(recordKey(i), a);
        await inner.put(recordKey(i + 1), b);
        // The newest deleted: the founder has pinned it.
        await founder.vault.refresh();
        const last = (await collect((await inner.get(recordKey(length - 1))).body)).toString('utf8');
        await inner.delete(recordKey(length - 1));
        await expect(Vault.open(inner, { identity: founder.identity, pins: founder.pins }), `seed ${seed}: newest deleted`).rejects.toMatchObject({ code: 'IntegrityError' });
        await inner.put(recordKey(length - 1), last);
      }
      expect((await fresh()).records.length).toBe(length);
    }, 300_000);
  }
});
