/**
 * The small file-system operations the fs store is built from: open flags, whole writes and
 * reads, directory fsync, safe mkdir, and the tests of what an errno means. No store logic here.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants, type BigIntStats } from 'node:fs';
import { lstat, mkdir, open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { AccessDeniedError, ProviderError } from '../../src/core/index.js';
import { PROVIDER } from './errors.js';

export const O_NOFOLLOW = fsConstants.O_NOFOLLOW ?? 0;
export const READ_FLAGS = fsConstants.O_RDONLY | O_NOFOLLOW;
export const CREATE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | O_NOFOLLOW;
export const READ_CHUNK = 128 * 1024;
export const DEFAULT_CONTENT_TYPE = 'application/octet-stream';
/** Retries when a concurrent writer or delete changes the file between two looks at it. */
export const RACE_RETRIES = 8;

export async function writeAll(fh: FileHandle, chunk: Buffer): Promise<void> {
  for (let off = 0; off < chunk.byteLength;) {
    const { bytesWritten } = await fh.write(chunk, off, chunk.byteLength - off);
    off += bytesWritten;
  }
}

export async function readExactly(fh: FileHandle, start: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, start + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return buf.subarray(0, got);
}

/** Writes a file unless it exists. */
export async function writeNew(path: string, content: string): Promise<void> {
  let fh: FileHandle;
  try {
    fh = await open(path, CREATE_FLAGS, 0o666);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return;
    throw e;
  }
  try {
    await fh.writeFile(content);
  } finally {
    await fh.close();
  }
}

export async function syncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, fsConstants.O_RDONLY);
    await fh.sync();
  } catch (e) {
    // Some file systems cannot fsync a directory; the renames are still atomic.
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM' && code !== 'ENOTSUP') throw e;
  } finally {
    await fh?.close();
  }
}

/** A directory that is really one (not a symlink to one), made if missing. */
export async function safeMkdir(path: string): Promise<void> {
  try {
    await mkdir(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const st = await lstat(path);
  if (st.isSymbolicLink()) throw new AccessDeniedError('refusing to follow a symlink planted in the store\'s hidden directory', { provider: PROVIDER });
  if (!st.isDirectory()) throw new ProviderError('a file that is not part of the store blocks its hidden directory', { provider: PROVIDER });
}

/**
 * Makes `root/...parts` one directory at a time inside the hidden tree. A file where a directory
 * belongs is an orphaned sidecar (of a key that has since become a directory of keys): removed.
 */
export async function mkdirInside(root: string, parts: string[]): Promise<void> {
  let cur = root;
  for (const part of parts) {
    cur = join(cur, part);
    for (let attempt = 0; ; attempt++) {
      try {
        await safeMkdir(cur);
        break;
      } catch (e) {
        if (!(e instanceof ProviderError) || attempt > 0) throw e;
        await unlink(cur).catch(() => undefined);
      }
    }
  }
}

export async function lstatMaybe(path: string): Promise<BigIntStats | undefined> {
  try {
    return await lstat(path, { bigint: true });
  } catch (e) {
    if (isMissing(e)) return undefined;
    throw e;
  }
}

export function isMissing(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

export function newEtag(): string {
  return randomBytes(16).toString('hex');
}
