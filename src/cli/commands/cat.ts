import type { Command } from 'commander';
import { pipeline } from 'node:stream/promises';
import type { ByteRange } from '../../core/types.js';
import { UsageError } from '../errors.js';
import { addEncryptionOptions, decryptingObjectStore, type EncryptionFlags } from '../encryption-flags.js';
import { localEncryptedSource, openLocalRead, parseLocation, readableLocalFile, storeFor } from '../locations.js';

function intOption(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return n;
}

export function register(program: Command): void {
  const cmd = program
    .command('cat')
    .description('write an object to stdout')
    .argument('<url>', 'object URL (s3://bucket/key, …) or local path')
    .option('--offset <n>', 'start at this byte')
    .option('--count <n>', 'read at most this many bytes')
    .option('--tail <n>', 'only the last n bytes')
    .option('--no-verify', 'do not check the SHA-256 while streaming (whole-object reads)');
  addEncryptionOptions(cmd, { decrypt: 'decrypt the object (written with --encrypt-with); ranges decrypt only the segments they cover' });
  cmd.action(async (arg: string, opts: { offset?: string; count?: string; tail?: string; verify: boolean } & EncryptionFlags) => {
    let loc = parseLocation(arg);
    const offset = intOption('--offset', opts.offset);
    const count = intOption('--count', opts.count);
    const tail = intOption('--tail', opts.tail);
    if (tail !== undefined && (offset !== undefined || count !== undefined)) throw new UsageError('--tail cannot be combined with --offset/--count');
    if (loc.kind === 'stdio') throw new UsageError('cat reads an object or a file, not -');
    // An encrypted local file is an object of its fs store, whose metadata holds the header.
    if (opts.decrypt && loc.kind === 'local') loc = await localEncryptedSource(loc, 'cat');
    if (loc.kind === 'local') {
      const size = await readableLocalFile(loc, 'cat');
      const start = tail !== undefined ? Math.max(0, size - tail) : offset ?? 0;
      const end = count !== undefined ? start + count - 1 : undefined;
      if (count === 0) return;
      await pipeline(openLocalRead(loc.path, start, end), process.stdout, { end: false });
      return;
    }
    const range: ByteRange | undefined = tail !== undefined ? { suffix: tail }
      : offset !== undefined || count !== undefined ? { offset: offset ?? 0, ...(count !== undefined ? { length: count } : {}) } : undefined;
    const store = await decryptingObjectStore(await storeFor(loc), loc.key, loc.display, opts);
    const { body } = await store.get(loc.key, { range, verify: opts.verify });
    await pipeline(body, process.stdout, { end: false });
  });
}
