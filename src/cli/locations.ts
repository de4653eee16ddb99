import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { openStore, parseStoreUrl, splitObjectUrl } from '../registry.js';
import type { BlobStore } from '../core/types.js';

/**
 * Where a CLI argument points: `-` (stdin/stdout), a local file (plain path or file:// URL, read and
 * written directly, no sidecar metadata), or an object in a store (`s3://b/key`, `gs://`, `az://`,
 * `memory://`).
 */
export type Location =
  | { kind: 'stdio' }
  | { kind: 'local'; path: string }
  | { kind: 'object'; storeUrl: URL; key: string; display: string };

export function parseLocation(arg: string): Location {
  if (arg === '-') return { kind: 'stdio' };
  const url = parseStoreUrl(arg);
  if (url.protocol === 'file:') return { kind: 'local', path: resolve(fileURLToPath(url)) };
  const { store, key } = splitObjectUrl(url);
  return { kind: 'object', storeUrl: store, key, display: arg };
}

const opened = new Map<string, Promise<BlobStore>>();

/** Opens (once per process) the store an object location lives in. */
export function storeFor(loc: { storeUrl: URL }): Promise<BlobStore> {
  const k = loc.storeUrl.href;
  let s = opened.get(k);
  if (!s) {
    s = openStore(loc.storeUrl);
    opened.set(k, s);
  }
  return s;
}

export async function closeStores(): Promise<void> {
  const all = [...opened.values()];
  opened.clear();
  await Promise.allSettled(all.map(async (p) => (await p).close()));
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

/** A local file as a stream, optionally from `start` to `end` (inclusive). */
export function openLocalRead(path: string, start?: number, end?: number): Readable {
  return createReadStream(path, { start, end });
}

/**
 * Writes a stream to a local file atomically (temp file + rename), so an interrupted download
 * never leaves a truncated file under the final name. A directory target (or trailing `/`)
 * receives `name`.
 */
export async function writeLocal(path: string, body: Readable, name: string): Promise<string> {
  let target = path;
  const st = await stat(path).catch(() => undefined);
  if (st?.isDirectory() || path.endsWith('/')) target = resolve(path, basename(name));
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
