import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { InvalidConfigError } from '../../core/errors.js';
import type { VaultPin } from './membership-record.js';

/**
 * Where a device remembers the newest membership record it has verified for each vault, so that a
 * store serving an older chain (a stale record replayed, records deleted) or another chain is
 * refused. Pins only move forward.
 */
export interface VaultPins {
  get(vault: string): Promise<VaultPin | undefined>;
  set(pin: VaultPin): Promise<void>;
}

export class MemoryVaultPins implements VaultPins {
  readonly #pins = new Map<string, VaultPin>();
  async get(vault: string): Promise<VaultPin | undefined> {
    return this.#pins.get(vault);
  }
  async set(pin: VaultPin): Promise<void> {
    const old = this.#pins.get(pin.vault);
    if (!old || old.seq <= pin.seq) this.#pins.set(pin.vault, { ...pin });
  }
}

/** Pins in a small JSON file (the CLI keeps it beside the identity: `<identity>.pins.json`), replaced atomically. */
export class FileVaultPins implements VaultPins {
  constructor(readonly path: string) {}

  async get(vault: string): Promise<VaultPin | undefined> {
    return (await this.read())[vault];
  }

  async set(pin: VaultPin): Promise<void> {
    const all = await this.read();
    const old = all[pin.vault];
    if (old && old.seq > pin.seq) return;
    all[pin.vault] = { ...pin };
    await mkdir(dirname(this.path), { recursive: true });
    const tmp = `${this.path}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, `${JSON.stringify(all, null, 2)}\n`, { mode: 0o600 });
    await rename(tmp, this.path);
  }

  private async read(): Promise<Record<string, VaultPin>> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw new InvalidConfigError(`cannot read vault pins ${this.path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    try {
      const parsed = JSON.parse(text) as Record<string, VaultPin>;
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('shape');
      return parsed;
    } catch {
      throw new InvalidConfigError(`vault pins ${this.path} is not a JSON object`);
    }
  }
}
