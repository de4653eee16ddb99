import type { Emulator } from './emulator.js';

/**
 * Starts the emulators the suite needs, once for the whole run, and stops them after. Each
 * emulator module leaves a running instance alone when its env var already points at one
 * (S3_ENDPOINT, GCS_EMULATOR_HOST, AZURE_STORAGE_CONNECTION_STRING), e.g. docker-compose.test.yml.
 * CLOUDMUX_EMULATORS=s3,gcs,azure (default: all) chooses which to start; `none` starts nothing.
 *
 * The env vars each sets are inherited by the test workers.
 */
type Starter = () => Promise<Emulator | undefined>;

const starters: Record<string, () => Promise<Starter>> = {
  s3: async () => (await import('./s3.js')).startS3,
  gcs: async () => (await import('./gcs.js')).startGcs,
  azure: async () => (await import('./azure.js')).startAzure,
};

const running: Emulator[] = [];

export async function setup(): Promise<void> {
  // The AWS SDK warns on Node 20 that its 2027 releases need Node 22; we pin one that supports 20.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const wanted = (process.env.CLOUDMUX_EMULATORS ?? 's3,gcs,azure').split(',').map((s) => s.trim()).filter((s) => s && s !== 'none');
  const started = await Promise.all(wanted.map(async (name) => {
    const load = starters[name];
    if (!load) throw new Error(`CLOUDMUX_EMULATORS names unknown emulator ${name}; known: ${Object.keys(starters).join(', ')}`);
    return (await load())();
  }));
  for (const emu of started) {
    if (!emu) continue;
    running.push(emu);
    Object.assign(process.env, emu.env);
  }
}

export async function teardown(): Promise<void> {
  await Promise.allSettled(running.splice(0).map((e) => e.stop()));
}
