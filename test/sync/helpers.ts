import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { getBuffer, listObjects } from '../../src/core/index.js';
import type { BlobStore } from '../../src/core/index.js';
import { isInternalPath } from '../../src/sync/remote-scan.js';
import { FS_STORE_DIR, STATE_DIR } from '../../src/sync/local-tree.js';

const made: string[] = [];

/** A fresh temp directory, removed by {@link cleanupDirs}. */
export function tempDir(tag = 'sync'): string {
  const d = mkdtempSync(join(tmpdir(), `cloudmux-${tag}-`));
  made.push(d);
  return d;
}

export function cleanupDirs(): void {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
}

export function writeFile(root: string, path: string, content: string | Buffer): void {
  const p = join(root, ...path.split('/'));
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, content);
}

export function readFile(root: string, path: string): string | undefined {
  try {
    return readFileSync(join(root, ...path.split('/')), 'utf8');
  } catch {
    return undefined;
  }
}

export function removeFile(root: string, path: string): void {
  unlinkSync(join(root, ...path.split('/')));
}

export function sha(s: string | Buffer): string {
  return createHash('sha256').update(s).digest('hex');
}

/** path → sha256 of every user file under `root` (the state directory and an fs store's hidden tree left out). */
export function localTree(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string, prefix: string): void => {
    for (const name of readdirSync(dir)) {
      if (prefix === '' && (name === STATE_DIR || name === FS_STORE_DIR)) continue;
      const full = join(dir, name);
      if (statSync(full).isDirectory()) walk(full, `${prefix}${name}/`);
      else out.set(prefix + name, sha(readFileSync(full)));
    }
  };
  walk(root, '');
  return new Map([...out].sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** path → sha256 of every user object in `store` (versions area left out). */
export async function remoteTree(store: BlobStore): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const o of listObjects(store)) {
    if (isInternalPath(o.key)) continue;
    out.set(o.key, sha(await getBuffer(store, o.key)));
  }
  return new Map([...out].sort(([a], [b]) => (a < b ? -1 : 1)));
}
