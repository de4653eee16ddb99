import { lstat, readdir, rmdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError } from './errors.js';

/**
 * `rm` over a local path that is not inside an fs store: a file is unlinked (a missing one is not
 * an error, as for a store key); with `recursive`, every file below a directory is unlinked and
 * reported, then the directories left empty are removed, the directory itself included, as
 * `rm -r` does. Symbolic links are removed, never followed. `dryRun` reports and removes nothing.
 */
export async function removeLocalTree(path: string, opts: { recursive?: boolean; dryRun?: boolean; onResult: (path: string, error?: Error) => void }): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (!st?.isDirectory()) {
    if (st && !opts.dryRun) await unlinkReported(path, opts.onResult);
    else opts.onResult(path);
    return;
  }
  if (!opts.recursive) throw new UsageError(`${path} is a directory; use rm -r to delete what is under it`);
  const entries = await readdir(path, { recursive: true, withFileTypes: true });
  const files = entries.filter((e) => !e.isDirectory()).map((e) => join(e.parentPath, e.name)).sort();
  for (const file of files) {
    if (opts.dryRun) opts.onResult(file);
    else await unlinkReported(file, opts.onResult);
  }
  if (opts.dryRun) return;
  // Deepest first; a directory that still holds something (a failed unlink) stays.
  const dirs = entries.filter((e) => e.isDirectory()).map((e) => join(e.parentPath, e.name)).sort().reverse();
  for (const dir of [...dirs, path]) await rmdir(dir).catch(() => undefined);
}

async function unlinkReported(file: string, onResult: (path: string, error?: Error) => void): Promise<void> {
  try {
    await unlink(file);
    onResult(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') onResult(file);
    else onResult(file, e as Error);
  }
}
