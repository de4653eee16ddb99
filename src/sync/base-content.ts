import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The bytes of the base of paths under a merge policy, content-addressed by SHA-256, kept beside
 * the sync state: a three-way text merge needs the version both sides last agreed on, and neither
 * side holds it any more once both have changed. Only merge-policy paths up to the merger's size
 * limit are kept; everything else would only cost disk.
 */
export class BaseContent {
  constructor(readonly dir: string) {}

  private file(sha256: string): string {
    return join(this.dir, sha256);
  }

  /** The bytes recorded for `sha256`, or undefined (never kept, or failed its digest check). */
  async read(sha256: string): Promise<Uint8Array | undefined> {
    try {
      const bytes = await readFile(this.file(sha256));
      return createHash('sha256').update(bytes).digest('hex') === sha256 ? bytes : undefined;
    } catch {
      return undefined;
    }
  }

  async has(sha256: string): Promise<boolean> {
    try {
      await (await open(this.file(sha256), 'r')).close();
      return true;
    } catch {
      return false;
    }
  }

  /** Copies `source` in if its bytes hash to `sha256` (a file that changed meanwhile is not kept). */
  async keep(sha256: string, source: string): Promise<boolean> {
    if (await this.has(sha256)) return true;
    await mkdir(this.dir, { recursive: true });
    const temp = join(this.dir, `.tmp-${randomBytes(6).toString('hex')}`);
    const fh = await open(temp, 'wx');
    const h = createHash('sha256');
    try {
      for await (const chunk of createReadStream(source)) {
        h.update(chunk as Buffer);
        await fh.write(chunk as Buffer);
      }
    } catch {
      await fh.close();
      await unlink(temp).catch(() => undefined);
      return false;
    }
    await fh.close();
    if (h.digest('hex') !== sha256) {
      await unlink(temp).catch(() => undefined);
      return false;
    }
    await rename(temp, this.file(sha256));
    return true;
  }

  /** Removes every kept content not in `keep` (and leftover temp files). */
  async prune(keep: ReadonlySet<string>): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return;
    }
    await Promise.all(names.filter((n) => !keep.has(n)).map((n) => unlink(join(this.dir, n)).catch(() => undefined)));
  }
}
