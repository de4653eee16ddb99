import { randomBytes } from 'node:crypto';
import { link, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { Backoff, sleep } from '../../src/core/backoff.js';
import { TransientError, throwIfAborted } from '../../src/core/errors.js';
import { PROVIDER } from './errors.js';
import { pidAlive } from './writer-tag.js';

export interface KeyLockOptions {
  /** Give up (Transient) after waiting this long. */
  timeoutMs: number;
  /** Break a lock of another host (or an unreadable one) older than this. */
  staleMs: number;
  /** Where to move a lock while judging it (a name the leftover sweep recognises). */
  asidePath: () => string;
  signal?: AbortSignal;
  key?: string;
}

const HOST = hostname();
/** Polls of a held lock (the one backoff): full jitter under 2 ms doubling to 100 ms. */
const LOCK_POLL = new Backoff({ baseMs: 2, capMs: 100 });

/**
 * Waiters in this process, per lock path. Module-wide so that two stores over one root in one
 * process queue instead of polling each other's lock files.
 */
const queues = new Map<string, Promise<void>>();

/**
 * Runs `fn` holding the per-key lock `lockPath`: first in this process (a promise queue), then
 * across processes (a lock file created with O_EXCL, which exactly one creator wins). Holders keep
 * it for a few file operations only. A lock whose owner died is broken: at once when the owner
 * was on this host and its pid is gone, after `staleMs` otherwise.
 */
export async function withKeyLock<T>(lockPath: string, opts: KeyLockOptions, fn: () => Promise<T>): Promise<T> {
  const previous = queues.get(lockPath);
  let release!: () => void;
  const mine = new Promise<void>((resolve) => (release = resolve));
  const tail = (previous ?? Promise.resolve()).then(() => mine);
  queues.set(lockPath, tail);
  try {
    if (previous) await waitFor(previous, opts);
    const token = await acquire(lockPath, opts);
    try {
      return await fn();
    } finally {
      await releaseFile(lockPath, token);
    }
  } finally {
    release();
    if (queues.get(lockPath) === tail) queues.delete(lockPath);
  }
}

async function waitFor(previous: Promise<void>, opts: KeyLockOptions): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    await Promise.race([
      previous,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(busy(opts)), opts.timeoutMs);
        onAbort = () => reject(opts.signal!.reason ?? new Error('aborted'));
        opts.signal?.addEventListener('abort', onAbort, { once: true });
      }),
    ]);
  } finally {
    clearTimeout(timer);
    if (onAbort) opts.signal?.removeEventListener('abort', onAbort);
  }
  throwIfAborted(opts.signal, { provider: PROVIDER, key: opts.key });
}

function busy(opts: KeyLockOptions): Error {
  return new TransientError(`another writer held the lock on this key for more than ${opts.timeoutMs} ms`, { provider: PROVIDER, key: opts.key });
}

async function acquire(lockPath: string, opts: KeyLockOptions): Promise<string> {
  const token = randomBytes(12).toString('hex');
  const content = JSON.stringify({ pid: process.pid, host: HOST, token, at: new Date().toISOString() });
  const deadline = Date.now() + opts.timeoutMs;
  for (let attempt = 1; ; attempt++) {
    throwIfAborted(opts.signal, { provider: PROVIDER, key: opts.key });
    try {
      const fh = await open(lockPath, 'wx');
      try {
        await fh.writeFile(content);
      } finally {
        await fh.close();
      }
      return token;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    if (await breakIfStale(lockPath, opts)) continue;
    if (Date.now() > deadline) throw busy(opts);
    await sleep(1 + LOCK_POLL.delay(attempt), opts.signal);
  }
}

interface LockInfo {
  pid?: unknown;
  host?: unknown;
  token?: unknown;
}

/** True when the lock is gone or was broken (try again at once). */
async function breakIfStale(lockPath: string, opts: KeyLockOptions): Promise<boolean> {
  let seen: string;
  let mtimeMs: number;
  try {
    mtimeMs = (await stat(lockPath)).mtimeMs;
    seen = await readFile(lockPath, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw e;
  }
  let info: LockInfo | undefined;
  try {
    info = JSON.parse(seen) as LockInfo;
  } catch {
    // Being written right now, or garbage: only age can tell.
  }
  const sameHostOther = info?.host === HOST && typeof info.pid === 'number' && info.pid !== process.pid;
  const stale = sameHostOther ? !pidAlive(info!.pid as number) : Date.now() - mtimeMs > opts.staleMs;
  if (!stale) return false;
  // Move it aside before judging, so that a lock taken between our look and our move is not lost.
  const aside = opts.asidePath();
  try {
    await rename(lockPath, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw e;
  }
  const moved = await readFile(aside, 'utf8').catch(() => '');
  if (moved !== seen) {
    // Someone took the lock meanwhile: give it back (unless yet another writer has one now).
    await link(aside, lockPath).catch(() => undefined);
  }
  await unlink(aside).catch(() => undefined);
  return moved === seen;
}

async function releaseFile(lockPath: string, token: string): Promise<void> {
  try {
    const content = await readFile(lockPath, 'utf8');
    // A holder that outlived staleMs may have had its lock broken; never remove someone else's.
    if (content.includes(token)) await unlink(lockPath);
  } catch {
    // Already gone: nothing to release.
  }
}
