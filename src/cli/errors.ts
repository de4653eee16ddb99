import { CloudmuxError } from '../core/errors.js';

/** Exit codes of every command: scripts rely on them. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/** A usage or configuration mistake: exit 2 with the offending flag or path named. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** One line for stderr, never a stack trace or a credential. */
export function describeError(e: unknown): string {
  if (e instanceof CloudmuxError) {
    const where = [e.provider, e.key].filter(Boolean).join(' ');
    return `${e.code}${where ? ` (${where})` : ''}: ${e.message}`;
  }
  if (e instanceof Error) return e.message;
  return String(e);
}

export function exitCodeFor(e: unknown): number {
  if (e instanceof UsageError) return EXIT.usage;
  if (e instanceof CloudmuxError && (e.code === 'InvalidConfig' || e.code === 'InvalidKey' || e.code === 'InvalidArgument')) return EXIT.usage;
  return EXIT.failed;
}
