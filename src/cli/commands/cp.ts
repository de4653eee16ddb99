import type { Command } from 'commander';
import { copyFile, mkdir } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Body } from '../../core/types.js';
import { reopenable } from '../../layers/reopenable-body.js';
import { UsageError } from '../errors.js';
import { addEncryptionOptions, decryptingObjectStore, encryptingStore } from '../encryption-flags.js';
import { addChunkedOption, chunkedStore, chunkedTotals, type ChunkedFlags } from '../chunked-flags.js';
import {
  enclosingStoreRoot, localAsObject, localEncryptedSource, localSize, localTarget, openLocalRead, parseLocation, readableLocalFile, storeFor, writeLocal, type Location, type ObjectLocation,
} from '../locations.js';

function targetKey(dst: ObjectLocation, srcName: string): string {
  if (dst.key === '' || dst.key.endsWith('/')) {
    if (!srcName) throw new UsageError(`${dst.display} names a prefix; give the destination key when copying from stdin`);
    return dst.key + srcName;
  }
  return dst.key;
}

/** The name a copy into a directory or prefix keeps: the source's last segment ('' for stdin). */
function sourceName(src: Location): string {
  if (src.kind === 'local') return basename(src.path);
  if (src.kind === 'object') return basename(src.key);
  return '';
}

/**
 * Copies one object or file. Whole-object reads are SHA-256 verified while they stream.
 * `encryptWith` encrypts what is written, `decrypt` decrypts what is read; a local file is then
 * taken as an object of its fs store (see localAsObject), whose metadata holds the encryption header.
 */
export async function copyOne(srcArg: string, dstArg: string, opts: { contentType?: string } & ChunkedFlags = {}): Promise<{ bytes: number; sha256?: string; target: string; chunked?: object }> {
  let src = parseLocation(srcArg);
  let dst = parseLocation(dstArg);
  if (opts.encryptWith !== undefined && dst.kind === 'stdio') throw new UsageError('--encrypt-with applies to a destination file or store object, not -');
  if (opts.decrypt && src.kind === 'stdio') throw new UsageError('--decrypt applies to a source file or store object, not -');
  if (src.kind === 'local') await readableLocalFile(src, 'cp');
  if (opts.decrypt && src.kind === 'local') src = await localEncryptedSource(src, 'cp');
  // --chunked: a file in an fs store may be a manifest (its mark is in the store's metadata); what is
  // written is chunked, except a download from a store to a plain local file.
  if (opts.chunked && src.kind === 'local' && (await enclosingStoreRoot(src.path)) !== undefined) src = await localAsObject(src.path, src.display);
  const chunkedWrite = opts.chunked === true && src.kind !== 'object';
  if ((opts.encryptWith !== undefined || chunkedWrite) && dst.kind === 'local') dst = await localAsObject(await localTarget(dst, sourceName(src)), dst.display);
  // Keys are checked before anything is read or written.
  const dstStore = dst.kind === 'object' ? await chunkedStore(await encryptingStore(await storeFor(dst), opts), opts) : undefined;
  const srcStore = src.kind === 'object' ? await chunkedStore(await decryptingObjectStore(await storeFor(src), src.key, src.display, opts), opts) : undefined;
  if (dst.kind === 'object') {
    let body: Body;
    let size: number | undefined;
    if (src.kind === 'stdio') {
      body = process.stdin;
    } else if (src.kind === 'local') {
      size = await readableLocalFile(src, 'cp');
      // Re-opened on a retry (a 503 after part of the body was sent); stdin cannot be.
      const path = src.path;
      body = reopenable(() => openLocalRead(path));
    } else {
      // Store to store: the copier copies server-side where it can, else streams with the
      // digest checked on both ends.
      const { copyObject } = await import('../../replication/copier.js');
      const res = await copyObject(srcStore!, src.key, dstStore!, targetKey(dst, sourceName(src)), opts.contentType ? { contentType: opts.contentType } : {});
      return { bytes: res.bytes, sha256: res.sha256 ?? res.meta.checksums.sha256, target: res.meta.key, ...chunkedSummary(dstStore!) };
    }
    const key = targetKey(dst, sourceName(src));
    const put = await dstStore!.put(key, body, { size, contentType: opts.contentType });
    return { bytes: put.size, sha256: put.checksums.sha256, target: key, ...chunkedSummary(dstStore!) };
  }
  if (src.kind === 'object') {
    const { body, meta } = await srcStore!.get(src.key, { verify: true });
    if (dst.kind === 'stdio') {
      await pipeline(body, process.stdout, { end: false });
      return { bytes: meta.size, sha256: meta.checksums.sha256, target: '-' };
    }
    const target = await writeLocal(await localTarget(dst, src.key), body);
    return { bytes: meta.size, sha256: meta.checksums.sha256, target };
  }
  if (src.kind === 'local' && dst.kind === 'local') {
    const target = await localTarget(dst, src.path);
    await mkdir(dirname(target), { recursive: true });
    await copyFile(src.path, target);
    return { bytes: (await localSize(target)) ?? 0, target };
  }
  if (src.kind === 'stdio' && dst.kind === 'local') {
    const target = await writeLocal(await localTarget(dst, ''), process.stdin);
    return { bytes: (await localSize(target)) ?? 0, target };
  }
  if (src.kind === 'local' && dst.kind === 'stdio') {
    await pipeline(openLocalRead(src.path), process.stdout, { end: false });
    return { bytes: (await localSize(src.path)) ?? 0, target: '-' };
  }
  throw new UsageError('cp from - to - is cat');
}

/** `--chunked`: what reached the destination (bytes read from the source, sent, deduplicated). */
function chunkedSummary(store: import('../../core/types.js').BlobStore): { chunked?: object } {
  const t = chunkedTotals(store);
  return t ? { chunked: { ...t } } : {};
}

interface CpFlags extends ChunkedFlags {
  contentType?: string;
  json?: boolean;
  recursive?: boolean;
  concurrency?: string;
}

/**
 * `cp -r`: every object under `<src>` to the same relative key under `<dst>` (as `aws s3 cp
 * --recursive` does: the contents of src, not src itself), through the migration engine without a
 * journal: verified copies, objects already identical at the destination skipped, its progress.
 */
async function copyTree(srcArg: string, dstArg: string, flags: CpFlags): Promise<void> {
  if (srcArg === '-' || dstArg === '-') throw new UsageError('cp -r copies a directory or prefix, not -');
  if (flags.contentType) throw new UsageError('--content-type applies to one object; cp -r keeps each source object\'s');
  const src = parseLocation(srcArg);
  if (src.kind === 'local' && (await localSize(src.path)) !== undefined) throw new UsageError(`${srcArg} is a file; cp -r copies a directory (drop -r to copy one file)`);
  const { runMigration } = await import('./migrate.js');
  await runMigration(srcArg, dstArg, {
    include: [], exclude: [], checksum: 'auto', journal: false, json: flags.json, concurrency: flags.concurrency,
    encryptWith: flags.encryptWith, decrypt: flags.decrypt, keyring: flags.keyring, chunked: flags.chunked,
  });
}

function chunkedLine(c: object | undefined): string {
  if (!c) return '';
  const t = c as { bytesSent: number; bytesDeduplicated: number; chunks: number; chunksSent: number };
  return `; chunked: sent ${t.bytesSent} bytes (${t.chunksSent} of ${t.chunks} chunks), ${t.bytesDeduplicated} deduplicated`;
}

export function register(program: Command): void {
  const cmd = program
    .command('cp')
    .description('copy an object or file (or with -r a directory or prefix): store URLs, local paths, or - for stdin/stdout')
    .argument('<src>', 'source: s3://bucket/key, gs://…, az://acct/container/key, memory://name/key, a local path, or -')
    .argument('<dst>', 'destination, same forms; an existing directory or a trailing / means "into it, keeping the source name"')
    .option('-r, --recursive', 'copy every object under <src> to the same relative key under <dst> (like aws s3 cp --recursive; migrate resumes)')
    .option('--concurrency <n>', 'with -r: objects in flight at once', '16')
    .option('--content-type <type>', 'content type to store')
    .option('--json', 'print the result as JSON (with -r: JSON lines, as migrate --json)');
  addEncryptionOptions(cmd, {
    encrypt: 'encrypt client-side under this key id before writing (the provider sees only ciphertext; a local file keeps its header in its fs store\'s .cloudmux/)',
    decrypt: 'decrypt the source (written with --encrypt-with); fails if it is not encrypted',
  });
  addChunkedOption(cmd);
  cmd.action(async (srcArg: string, dstArg: string, opts: CpFlags) => {
    if (opts.recursive) return copyTree(srcArg, dstArg, opts);
    const res = await copyOne(srcArg, dstArg, opts);
    if (dstArg === '-') return;
    if (opts.json) process.stdout.write(`${JSON.stringify(res)}\n`);
    else process.stderr.write(`copied ${res.bytes} bytes to ${res.target}${res.sha256 ? ` (sha256 ${res.sha256})` : ''}${chunkedLine(res.chunked)}\n`);
  });
}
