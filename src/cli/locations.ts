import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { openStore, parseStoreUrl, splitObjectUrl } from '../registry.js';
import type { BlobStore } from '../core/types.js';
import { RetryStore } from '../layers/retry.js';
import { UsageError } from './errors.js';

/**
 * Where a CLI argument points: `-` (stdin/stdout), a local file or directory (plain path or
 * file:// URL, read and written directly, no sidecar metadata), or an object in a store
 * (`s3://b/key`, `gs://`, `az://`, `memory://`). `dir` records that the argument ends with `/`
 * (or is `.`/`..`): "into this directory".
 */
export type Location =
  | { kind: 'stdio' }
  | { kind: 'local'; path: string; dir: boolean; display: string }
  | { kind: 'object'; storeUrl: URL; key: string; display: string };

export type LocalLocation = Extract<Location, { kind: 'local' }>;
export type ObjectLocation = Extract<Location, { kind: 'object' }>;

/** Parses a CLI argument. Store URLs keep the key as typed (see parseStoreUrl); bad ones are InvalidKey/InvalidConfig, exit 2. */
export function parseLocation(arg: string): Location {
  if (arg === '-') return { kind: 'stdio' };
  const url = parseStoreUrl(arg);
  if (url.protocol === 'file:') {
    if (url.search) throw new UsageError(`${arg}: store options on a file:// URL apply to ls, migrate and verify; this command reads or writes the file itself`);
    const typed = /^file:/i.test(arg) ? fileURLToPath(url) : arg;
    return { kind: 'local', path: resolve(fileURLToPath(url)), dir: /[/\\]$/.test(typed) || /(^|[/\\])\.\.?$/.test(typed), display: arg };
  }
  const { store, key } = splitObjectUrl(url);
  return { kind: 'object', storeUrl: store, key, display: arg };
}

/**
 * Opens a store for a one-shot command (cp, cat, rm, ls), behind the retry layer: a 500 or 503
 * the provider asks to be retried ("We encountered an internal error. Please try again.") is
 * retried with backoff, as the SDK CLIs and rclone do, rather than failing the command. Six
 * retries within a minute: a CLI user would rather see the error than wait out the library's
 * default three-minute budget. migrate and sync have their own per-object retries and open
 * their stores themselves.
 */
export async function openCliStore(url: URL, options?: Record<string, unknown>): Promise<BlobStore> {
  return new RetryStore(await openStore(url, options), { retries: 6, budgetMs: 60_000 });
}

const opened = new Map<string, Promise<BlobStore>>();

/** Opens (once per process) the store an object location lives in. */
export function storeFor(loc: { storeUrl: URL }): Promise<BlobStore> {
  const k = loc.storeUrl.href;
  let s = opened.get(k);
  if (!s) {
    s = openCliStore(loc.storeUrl);
    opened.set(k, s);
  }
  return s;
}

export async function closeStores(): Promise<void> {
  const all = [...opened.values()];
  opened.clear();
  await Promise.allSettled(all.map(async (p) => (await p).close()));
}

/** What is at a local path. */
export async function localKind(path: string): Promise<'file' | 'dir' | 'missing' | 'other'> {
  const st = await stat(path).catch(() => undefined);
  if (!st) return 'missing';
  return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : 'other';
}

/** A local file's size, or undefined if it is not a regular file. */
export async function localSize(path: string): Promise<number | undefined> {
  try {
    const st = await stat(path);
    return st.isFile() ? st.size : undefined;
  } catch {
    return undefined;
  }
}

/** The size of a local file a command reads; a UsageError saying what is there otherwise (a directory: use -r). */
export async function readableLocalFile(loc: LocalLocation, command: string): Promise<number> {
  const size = await localSize(loc.path);
  if (size !== undefined) return size;
  const kind = await localKind(loc.path);
  if (kind === 'dir') throw new UsageError(`${loc.display} is a directory${command === 'cp' ? '; use cp -r to copy a tree' : ''}`);
  if (kind === 'missing') throw new UsageError(`${loc.display}: no such file`);
  throw new UsageError(`${loc.display} is not a regular file`);
}

/**
 * The file a copy to `loc` writes: `loc` itself, or `loc/<name>` when `loc` ends with `/` or is an
 * existing directory ("into this directory, keeping the source name", as `cp` and `aws s3 cp` do).
 */
export async function localTarget(loc: LocalLocation, name: string): Promise<string> {
  if (!loc.dir && (await localKind(loc.path)) !== 'dir') return loc.path;
  if (!name) throw new UsageError(`${loc.display} is a directory; give the file name when copying from stdin`);
  return join(loc.path, basename(name));
}

/** A local file as a stream, optionally from `start` to `end` (inclusive). */
export function openLocalRead(path: string, start?: number, end?: number): Readable {
  return createReadStream(path, { start, end });
}

/**
 * Writes a stream to the local file `target` atomically (temp file + rename), so an interrupted
 * download never leaves a truncated file under the final name.
 */
export async function writeLocal(target: string, body: Readable): Promise<string> {
  await mkdir(dirname(target), { recursive: true });
  const tmp = `${target}.cloudmux-partial-${process.pid}`;
  try {
    await pipeline(body, createWriteStream(tmp));
    await rename(tmp, target);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  return target;
}

/**
 * A local file as an object of the fs store it belongs to, for what needs metadata (encryption
 * headers) or a store's delete: the nearest enclosing directory that is a plain-layout fs store
 * (holds `.cloudmux/layout`), else the file's own directory. Its key is the path below that root.
 */
export async function localAsObject(path: string, display: string): Promise<ObjectLocation> {
  const root = (await enclosingStoreRoot(path)) ?? dirname(path);
  const key = relative(root, path).split(sep).join('/');
  return { kind: 'object', storeUrl: pathToFileURL(root), key, display };
}

/**
 * A local file read with `--decrypt`, as an object of its fs store. A file in no fs store has no
 * metadata and so no encryption header: that is said at once, without opening a store in the
 * user's directory (a read never writes there).
 */
export async function localEncryptedSource(loc: LocalLocation, command: string): Promise<ObjectLocation> {
  await readableLocalFile(loc, command);
  if ((await enclosingStoreRoot(loc.path)) === undefined) {
    throw new UsageError(`--decrypt: ${loc.display} is not encrypted (it is in no fs store, so it has no cloudmux_enc metadata); read it without --decrypt`);
  }
  return localAsObject(loc.path, loc.display);
}

/** The nearest directory from `dir` upwards that is a plain-layout fs store, if any. */
export async function enclosingStoreRoot(dir: string): Promise<string | undefined> {
  for (let d = dir; ; d = dirname(d)) {
    if ((await localKind(join(d, '.cloudmux', 'layout'))) === 'file') return d;
    if (dirname(d) === d) return undefined;
  }
}
