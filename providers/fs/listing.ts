/**
 * Listing: walks one directory at a time (read whole, sorted by the key bytes each entry stands
 * for, then descended in order), so keys come out in UTF-8 byte order and memory is bounded by the
 * entries of the directories on the current path, not by the store. Both layouts share the walk;
 * each reads its directories its own way (crash leftovers met on the way go to sweep.ts).
 */
import { opendir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isCloudmuxError, keyProblem, throwIfAborted } from '../../src/core/index.js';
import type { ListItem, ObjectSummary } from '../../src/core/index.js';
import { PROVIDER } from './errors.js';
import { isMissing, lstatMaybe } from './file-ops.js';
import { parseEntry, sidecarName } from './layout.js';
import { HIDDEN_DIR, isReservedName, plainSidecarName } from './plain-layout.js';
import { META, type FsRoot } from './root.js';
import { derivedEtag, mtimeOf, sidecarSummary } from './sidecar.js';
import { currentObject, readSidecarAt } from './sidecar-io.js';
import { sweepEscaped, sweepHidden, sweepPlain } from './sweep.js';

/** One directory being listed: where its entries live and, for plain, where their sidecars do. */
export interface Cursor {
  dir: string;
  /** The key bytes every entry below starts with. */
  keyBytes: Buffer;
  /** Escaped: inside a chunk directory (`%e` names are valid there). */
  inChunk?: boolean;
  /** Plain: the sidecar directory mirroring `dir`. */
  metaDir?: string;
  atTop: boolean;
}

/** One listed entry, in key order within its directory. */
interface Entry {
  kind: 'data' | 'dir';
  /** The key bytes it stands for (a directory's end with its `/` or are a chunk's piece). */
  bytes: Buffer;
  path: string;
  /** Data entries: where the sidecar of a given inode would be. */
  sidecarPath?: (inode: bigint) => string;
  /** Directory entries: the cursor to descend with. */
  sub?: Omit<Cursor, 'keyBytes'>;
}

interface WalkContext {
  prefix: Buffer;
  startAfter?: Buffer;
  delimiter?: Buffer;
  signal?: AbortSignal;
  /** The last common prefix emitted, so each is emitted once. */
  lastPrefix?: string;
  /** Existence probe: yield objects without stat-ing them. */
  probe: boolean;
}

export interface WalkOptions {
  prefix: string;
  startAfter?: string;
  delimiter?: string;
  signal?: AbortSignal;
}

/** The objects and common prefixes of the store in key order (options already validated). */
export async function* listStore(fsr: FsRoot, opts: WalkOptions): AsyncGenerator<ListItem> {
  const ctx: WalkContext = {
    prefix: Buffer.from(opts.prefix, 'utf8'),
    startAfter: opts.startAfter === undefined ? undefined : Buffer.from(opts.startAfter, 'utf8'),
    delimiter: opts.delimiter ? Buffer.from(opts.delimiter, 'utf8') : undefined,
    signal: opts.signal,
    probe: false,
  };
  const { root, layout, missing } = await fsr.ready();
  if (missing) return;
  if (layout === 'plain') {
    if (sweeping(fsr)) await sweepHidden(fsr, root);
    yield* walk(fsr, { dir: root, keyBytes: Buffer.alloc(0), metaDir: join(root, HIDDEN_DIR, META), atTop: true }, ctx);
  } else {
    yield* walk(fsr, { dir: root, keyBytes: Buffer.alloc(0), inChunk: false, atTop: true }, ctx);
  }
}

async function* walk(fsr: FsRoot, cur: Cursor, ctx: WalkContext): AsyncGenerator<ListItem> {
  const entries = cur.metaDir === undefined ? await readEscapedEntries(fsr, cur) : await readPlainEntries(fsr, cur);
  for (const e of entries) {
    throwIfAborted(ctx.signal, { provider: PROVIDER });
    const full = cur.keyBytes.byteLength === 0 ? e.bytes : Buffer.concat([cur.keyBytes, e.bytes]);
    if (e.kind === 'data') {
      if (!startsWith(full, ctx.prefix)) continue;
      if (ctx.startAfter && Buffer.compare(full, ctx.startAfter) <= 0) continue;
      const key = full.toString('utf8');
      if (keyProblem(key) || Buffer.byteLength(key, 'utf8') !== full.byteLength) continue;
      const rolled = rolledUp(full, ctx);
      if (rolled !== undefined) {
        if (rolled !== ctx.lastPrefix) {
          ctx.lastPrefix = rolled;
          yield { type: 'prefix', prefix: rolled };
        }
        continue;
      }
      if (ctx.probe) {
        yield { type: 'object', key, size: 0, etag: '', lastModified: new Date(0) };
        continue;
      }
      const summary = await summarize(fsr, e, key, ctx.signal);
      if (summary) yield { type: 'object', ...summary };
      continue;
    }
    // A directory: every key below it starts with `full`.
    const n = Math.min(full.byteLength, ctx.prefix.byteLength);
    if (!full.subarray(0, n).equals(ctx.prefix.subarray(0, n))) continue;
    if (ctx.startAfter && !startsWith(ctx.startAfter, full) && Buffer.compare(full, ctx.startAfter) < 0) continue;
    const sub: Cursor = { ...e.sub!, keyBytes: full };
    const rolled = rolledUp(full, ctx);
    if (rolled !== undefined) {
      if (rolled === ctx.lastPrefix) continue;
      if (await hasObject(fsr, sub, ctx)) {
        ctx.lastPrefix = rolled;
        yield { type: 'prefix', prefix: rolled };
      }
      continue;
    }
    yield* walk(fsr, sub, ctx);
  }
}

async function hasObject(fsr: FsRoot, cur: Cursor, ctx: WalkContext): Promise<boolean> {
  const probe: WalkContext = { ...ctx, delimiter: undefined, probe: true };
  for await (const _ of walk(fsr, cur, probe)) return true;
  return false;
}

/** The escaped-layout entries of one directory in key order; crash leftovers met on the way are removed. */
async function readEscapedEntries(fsr: FsRoot, cur: Cursor): Promise<Entry[]> {
  const { dir, inChunk } = cur;
  let handle;
  try {
    handle = await opendir(dir);
  } catch (e) {
    if (isMissing(e)) return [];
    throw e;
  }
  const entries: Entry[] = [];
  const leftovers: string[] = [];
  const sidecars = new Map<string, { name: string; inode: bigint }[]>();
  const dataNames = new Set<string>();
  for await (const d of handle) {
    const p = parseEntry(d.name);
    if (!p) continue;
    const path = join(dir, d.name);
    if (p.kind === 'data') {
      if (!d.isFile() || (p.base === '%e' && !inChunk)) continue;
      dataNames.add(p.base);
      entries.push({ kind: 'data', bytes: p.bytes, path, sidecarPath: (ino) => join(dir, sidecarName(p.base, ino)) });
    } else if (p.kind === 'dir' || p.kind === 'chunk') {
      if (!d.isDirectory() || (p.base === '%e' && !inChunk)) continue;
      entries.push({ kind: 'dir', bytes: p.bytes, path, sub: { dir: path, inChunk: p.kind === 'chunk', atTop: false } });
    } else if (p.kind === 'sidecar') {
      const list = sidecars.get(p.base) ?? [];
      list.push({ name: d.name, inode: p.inode! });
      sidecars.set(p.base, list);
    } else {
      leftovers.push(d.name);
    }
  }
  entries.sort((a, b) => Buffer.compare(a.bytes, b.bytes));
  if (sweeping(fsr)) await sweepEscaped(fsr, dir, leftovers, sidecars, dataNames);
  return entries;
}

/**
 * The plain-layout entries of one directory in key order: files are objects, directories the
 * keys below them; the store's own names, symlinks, other file types and names that are not valid
 * UTF-8 are skipped. Crash leftovers and orphaned sidecars met on the way are removed.
 */
async function readPlainEntries(fsr: FsRoot, cur: Cursor): Promise<Entry[]> {
  const { dir, metaDir, atTop } = cur;
  let dirents;
  try {
    dirents = await readdir(dir, { withFileTypes: true, encoding: 'buffer' });
  } catch (e) {
    if (isMissing(e)) return [];
    throw e;
  }
  const entries: Entry[] = [];
  const leftovers: string[] = [];
  const names = new Set<string>();
  for (const d of dirents) {
    const raw = d.name as unknown as Buffer;
    const name = raw.toString('utf8');
    if (!Buffer.from(name, 'utf8').equals(raw)) continue;
    if (isReservedName(name, atTop)) {
      if (!atTop || name !== HIDDEN_DIR) leftovers.push(name);
      continue;
    }
    const path = join(dir, name);
    if (d.isFile()) {
      names.add(name);
      entries.push({ kind: 'data', bytes: raw, path, sidecarPath: (ino) => join(metaDir!, name, plainSidecarName(ino)) });
    } else if (d.isDirectory()) {
      names.add(name);
      entries.push({ kind: 'dir', bytes: Buffer.concat([raw, Buffer.from('/')]), path, sub: { dir: path, metaDir: join(metaDir!, name), atTop: false } });
    }
  }
  entries.sort((a, b) => Buffer.compare(a.bytes, b.bytes));
  if (sweeping(fsr)) await sweepPlain(fsr, cur, leftovers, names);
  return entries;
}

/**
 * A listed object: from its sidecar when that can be believed; recomputed (as head would) when the
 * sidecar is in doubt, so a listing never shows a digest or etag of bytes the file no longer holds;
 * from the file's stat, without digests, when the store never saw the file (no hashing of trees
 * written by other programs just to list them).
 */
async function summarize(fsr: FsRoot, e: Entry, key: string, signal: AbortSignal | undefined): Promise<ObjectSummary | undefined> {
  for (let attempt = 0; attempt < 2; attempt++) {
    const st = await lstatMaybe(e.path);
    if (!st || !st.isFile()) return undefined;
    const reading = await readSidecarAt(fsr, e.sidecarPath!(st.ino), key, st);
    if (reading.current) return sidecarSummary(reading.current);
    if (reading.stale) {
      try {
        return sidecarSummary((await currentObject(fsr, key, signal)).sidecar);
      } catch (err) {
        if (isMissing(err) || (isCloudmuxError(err) && err.code === 'NotFound')) return undefined; // Deleted meanwhile.
        throw err;
      }
    }
    const again = await lstatMaybe(e.path);
    if (again && again.ino !== st.ino) continue; // Replaced meanwhile: describe the new one.
    return { key, size: Number(st.size), etag: derivedEtag(st), lastModified: mtimeOf(st) };
  }
  return undefined;
}

function sweeping(fsr: FsRoot): boolean {
  return fsr.options.sweepOnList && !fsr.readOnly;
}

function startsWith(buf: Buffer, prefix: Buffer): boolean {
  return buf.byteLength >= prefix.byteLength && buf.subarray(0, prefix.byteLength).equals(prefix);
}

/** The common prefix `full` rolls up into with a delimiter, when the delimiter lies inside it after the prefix. */
function rolledUp(full: Buffer, ctx: WalkContext): string | undefined {
  if (!ctx.delimiter || !startsWith(full, ctx.prefix)) return undefined;
  const i = full.indexOf(ctx.delimiter, ctx.prefix.byteLength);
  return i < 0 ? undefined : full.subarray(0, i + ctx.delimiter.byteLength).toString('utf8');
}
