import type { Emulator } from './emulator.js';

/** Placeholder until the azure provider issue lands its emulator. */
export async function startAzure(): Promise<Emulator | undefined> {
  return undefined;
}
