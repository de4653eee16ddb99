import type { Emulator } from './emulator.js';

/** Placeholder until the s3 provider issue lands its emulator. */
export async function startS3(): Promise<Emulator | undefined> {
  return undefined;
}
