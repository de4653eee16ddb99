import { CloudmuxError, isAbortError, type ErrorCode } from '../../src/core/errors.js';

export const PROVIDER = 'fs';

/** What the failing call was doing, for the message and for codes whose meaning depends on it. */
export interface FsErrorContext {
  /** `put`, `get`, `list`, … */
  op: string;
  key?: string;
  signal?: AbortSignal;
}

const CODES: Record<string, ErrorCode> = {
  ENOENT: 'NotFound',
  ENOTDIR: 'NotFound',
  EISDIR: 'NotFound',
  EACCES: 'AccessDenied',
  EPERM: 'AccessDenied',
  EROFS: 'AccessDenied',
  // O_NOFOLLOW met a symlink planted where the layout keeps a file.
  ELOOP: 'AccessDenied',
  EEXIST: 'AlreadyExists',
  ENAMETOOLONG: 'InvalidKey',
  EMFILE: 'Transient',
  ENFILE: 'Transient',
  EAGAIN: 'Transient',
  EBUSY: 'Transient',
  EINTR: 'Transient',
  EIO: 'Transient',
  ETIMEDOUT: 'Transient',
  ESTALE: 'Transient',
  ENOMEM: 'Transient',
  // Full disk or quota: retrying at once will not help; the router should write elsewhere.
  ENOSPC: 'ProviderError',
  EDQUOT: 'ProviderError',
  EFBIG: 'InvalidArgument',
  EXDEV: 'InvalidConfig',
};

/**
 * The one place where file-system failures become cloudmux errors. Writes that meet ENOENT /
 * ENOTDIR / EISDIR mean something other than the layout sits where it writes (a file where a
 * directory should be, a directory planted by hand): that is a ProviderError, not NotFound.
 * Messages name the key, never anything but the store's own paths.
 */
export function mapFsError(e: unknown, ctx: FsErrorContext): CloudmuxError {
  if (e instanceof CloudmuxError) return e;
  if (ctx.signal?.aborted || isAbortError(e)) {
    return new CloudmuxError('Aborted', `${ctx.op}: aborted`, { provider: PROVIDER, key: ctx.key, cause: ctx.signal?.reason ?? e });
  }
  const sys = e as { code?: unknown; message?: unknown } | null;
  const errno = typeof sys?.code === 'string' ? sys.code : undefined;
  let code: ErrorCode = (errno && CODES[errno]) || 'ProviderError';
  const isWrite = ctx.op !== 'get' && ctx.op !== 'head' && ctx.op !== 'list';
  if (isWrite && code === 'NotFound' && errno !== 'ENOENT') code = 'ProviderError';
  const what = ctx.key === undefined ? ctx.op : `${ctx.op} ${JSON.stringify(ctx.key)}`;
  const detail = typeof sys?.message === 'string' ? sys.message : String(e);
  return new CloudmuxError(code, `${what}: ${describe(code, errno)} (${detail})`, { provider: PROVIDER, key: ctx.key, cause: e, providerCode: errno });
}

function describe(code: ErrorCode, errno: string | undefined): string {
  switch (code) {
    case 'NotFound': return 'no such object';
    case 'AccessDenied': return errno === 'ELOOP' ? 'refusing to follow a symlink inside the store' : 'permission denied';
    case 'AlreadyExists': return 'already exists';
    case 'InvalidKey': return 'the key maps to a path the file system cannot hold';
    case 'Transient': return 'temporary file-system failure';
    case 'InvalidConfig': return 'the store spans file systems';
    default: return errno ? `file-system error ${errno}` : 'file-system error';
  }
}
