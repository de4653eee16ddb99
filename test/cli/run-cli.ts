import { Readable } from 'node:stream';
import { main } from '../../src/cli/main.js';

export interface CliRun {
  code: number;
  out: Buffer;
  err: string;
}

/**
 * Runs the `cloudmux` command in this process (much faster than spawning), with optional extra
 * environment variables and stdin, capturing stdout and stderr; restores everything after.
 */
export async function runCli(args: string[], opts: { env?: Record<string, string | undefined>; stdin?: Buffer } = {}): Promise<CliRun> {
  const out: Buffer[] = [];
  let err = '';
  const w1 = process.stdout.write.bind(process.stdout);
  const w2 = process.stderr.write.bind(process.stderr);
  const stdinDesc = Object.getOwnPropertyDescriptor(process, 'stdin');
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    saved[k] = process.env[k];
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  process.stdout.write = ((c: string | Uint8Array) => {
    out.push(Buffer.from(c));
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((c: string | Uint8Array) => {
    err += Buffer.from(c).toString();
    return true;
  }) as typeof process.stderr.write;
  if (opts.stdin) Object.defineProperty(process, 'stdin', { value: Readable.from([opts.stdin]), configurable: true });
  const prevExit = process.exitCode;
  process.exitCode = undefined;
  try {
    const code = await main(['node', 'cloudmux', ...args]);
    return { code, out: Buffer.concat(out), err };
  } finally {
    process.stdout.write = w1;
    process.stderr.write = w2;
    if (stdinDesc) Object.defineProperty(process, 'stdin', stdinDesc);
    process.exitCode = prevExit;
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}
