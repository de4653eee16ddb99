import { CloudmuxError } from '../core/errors.js';

/** Exit codes of every command: scripts rely on them. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/** A usage or configuration mistake: exit 2 with the offending flag or path named. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** One line for stderr, never a stack trace or a credential (the one describeError, src/core/errors.ts). */
export { describeError } from '../core/errors.js';

export function exitCodeFor(e: unknown): number {
  if (e instanceof UsageError) return EXIT.usage;
  if (e instanceof CloudmuxError && (e.code === 'InvalidConfig' || e.code === 'InvalidKey' || e.code === 'InvalidArgument')) return EXIT.usage;
  return EXIT.failed;
}
