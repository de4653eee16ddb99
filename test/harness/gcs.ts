import type { Emulator } from './emulator.js';

/** Placeholder until the gcs provider issue lands its emulator. */
export async function startGcs(): Promise<Emulator | undefined> {
  return undefined;
}
