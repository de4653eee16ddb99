import type { Command } from 'commander';
import { copyFile, mkdir } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Body } from '../../core/types.js';
import { UsageError } from '../errors.js';
import { addEncryptionOptions, decryptingObjectStore, encryptingStore, type EncryptionFlags } from '../encryption-flags.js';
import { localSize, openLocalRead, parseLocation, storeFor, writeLocal, type Location } from '../locations.js';

type ObjectLocation = Extract<Location, { kind: 'object' }>;

function targetKey(dst: ObjectLocation, srcName: string): string {
  if (dst.key === '' || dst.key.endsWith('/')) {
    if (!srcName) throw new UsageError(`${dst.display} names a prefix; give the destination key when copying from stdin`);
    return dst.key + srcName;
  }
  return dst.key;
}

/**
 * Copies one object or file. Whole-object reads are SHA-256 verified while they stream.
 * `encryptWith` encrypts what is written to a store object, `decrypt` decrypts a store object read.
 */
export async function copyOne(srcArg: string, dstArg: string, opts: { contentType?: string } & EncryptionFlags = {}): Promise<{ bytes: number; sha256?: string; target: string }> {
  const src = parseLocation(srcArg);
  const dst = parseLocation(dstArg);
  if (opts.encryptWith !== undefined && dst.kind !== 'object') throw new UsageError('--encrypt-with applies to a store destination, not a local file or -');
  if (opts.decrypt && src.kind !== 'object') throw new UsageError('--decrypt applies to a store source, not a local file or -');
  // Keys are checked before anything is read or written.
  const dstStore = dst.kind === 'object' ? await encryptingStore(await storeFor(dst), opts) : undefined;
  const srcStore = src.kind === 'object' ? await decryptingObjectStore(await storeFor(src), src.key, src.display, opts) : undefined;
  if (dst.kind === 'object') {
    let body: Body;
    let size: number | undefined;
    let name = '';
    if (src.kind === 'stdio') {
      body = process.stdin;
    } else if (src.kind === 'local') {
      size = await localSize(src.path);
      if (size === undefined) throw new UsageError(`${src.path} is not a readable file`);
      body = openLocalRead(src.path);
      name = basename(src.path);
    } else {
      // Store to store: the copier copies server-side where it can, else streams with the
      // digest checked on both ends.
      const { copyObject } = await import('../../replication/copier.js');
      const res = await copyObject(srcStore!, src.key, dstStore!, targetKey(dst, basename(src.key)), opts.contentType ? { contentType: opts.contentType } : {});
      return { bytes: res.bytes, sha256: res.sha256 ?? res.meta.checksums.sha256, target: res.meta.key };
    }
    const key = targetKey(dst, name);
    const put = await dstStore!.put(key, body, { size, contentType: opts.contentType });
    return { bytes: put.size, sha256: put.checksums.sha256, target: key };
  }
  if (src.kind === 'object') {
    const { body, meta } = await srcStore!.get(src.key, { verify: true });
    if (dst.kind === 'stdio') {
      await pipeline(body, process.stdout, { end: false });
      return { bytes: meta.size, sha256: meta.checksums.sha256, target: '-' };
    }
    const target = await writeLocal(dst.path, body, src.key);
    return { bytes: meta.size, sha256: meta.checksums.sha256, target };
  }
  if (src.kind === 'local' && dst.kind === 'local') {
    await mkdir(dirname(dst.path), { recursive: true });
    await copyFile(src.path, dst.path);
    return { bytes: (await localSize(dst.path)) ?? 0, target: dst.path };
  }
  if (src.kind === 'stdio' && dst.kind === 'local') {
    const target = await writeLocal(dst.path, process.stdin, 'stdin');
    return { bytes: (await localSize(target)) ?? 0, target };
  }
  if (src.kind === 'local' && dst.kind === 'stdio') {
    await pipeline(openLocalRead(src.path), process.stdout, { end: false });
    return { bytes: (await localSize(src.path)) ?? 0, target: '-' };
  }
  throw new UsageError('cp from - to - is cat');
}

export function register(program: Command): void {
  const cmd = program
    .command('cp')
    .description('copy one object or file: store URLs, local paths, or - for stdin/stdout (use `migrate` for trees)')
    .argument('<src>', 'source: s3://bucket/key, gs://…, az://acct/container/key, memory://name/key, a local path, or -')
    .argument('<dst>', 'destination, same forms; a trailing / keeps the source name')
    .option('--content-type <type>', 'content type to store')
    .option('--json', 'print the result as JSON');
  addEncryptionOptions(cmd, {
    encrypt: 'encrypt client-side under this key id before writing to the store (the provider sees only ciphertext)',
    decrypt: 'decrypt the source object (written with --encrypt-with); fails if it is not encrypted',
  });
  cmd.action(async (srcArg: string, dstArg: string, opts: { contentType?: string; json?: boolean } & EncryptionFlags) => {
    const res = await copyOne(srcArg, dstArg, opts);
    if (dstArg === '-') return;
    if (opts.json) process.stdout.write(`${JSON.stringify(res)}\n`);
    else process.stderr.write(`copied ${res.bytes} bytes to ${res.target}${res.sha256 ? ` (sha256 ${res.sha256})` : ''}\n`);
  });
}
