import { open, readFile, realpath, rename, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FsStore } from '../../providers/fs/index.js';

/** Where the sidecar of `key`'s data file (inode `ino`) lives, in either layout. */
export async function sidecarPathOf(store: FsStore, key: string, ino: bigint): Promise<string> {
  const data = await store.dataPath(key);
  if ((await store.layout()) === 'plain') return join(await realpath(store.options.root), '.cloudmux', 'meta', ...key.split('/'), `${ino}.json`);
  return join(dirname(data), `${basename(data)}%m${ino}`);
}

/** Flips one byte in the middle of the data file, in place (same inode, same size). */
export async function flipByte(path: string): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const { size } = await fh.stat();
    const at = size >> 1;
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, at);
    b[0]! ^= 0x01;
    await fh.write(b, 0, 1, at);
  } finally {
    await fh.close();
  }
}

/**
 * Changes `key`'s bytes in a way no stat can tell: flips a byte, then rewrites the sidecar as if
 * it had been written after the change (the data file's new mtime and ctime, sealed later). What a
 * disk that rots under the file system looks like, or a program that restores the timestamps and
 * the system clock.
 */
export async function rotUnnoticed(store: FsStore, key: string): Promise<void> {
  const data = await store.dataPath(key);
  const before = await stat(data, { bigint: true });
  const sidecar = await sidecarPathOf(store, key, before.ino);
  const json = JSON.parse(await readFile(sidecar, 'utf8')) as Record<string, unknown>;
  await flipByte(data);
  const after = await stat(data, { bigint: true });
  json.mtimeNs = String(after.mtimeNs);
  json.ctimeNs = String(after.ctimeNs);
  await writeFile(`${sidecar}.rot`, JSON.stringify(json));
  // The seal must be later than the data's ctime, as the store's own would be.
  while ((await stat(`${sidecar}.rot`, { bigint: true })).mtimeNs <= after.ctimeNs) {
    await sleep(2);
    await writeFile(`${sidecar}.rot`, JSON.stringify(json));
  }
  await rename(`${sidecar}.rot`, sidecar);
}
