import { pino, type DestinationStream, type Logger, type LevelWithSilent } from 'pino';
import { CloudmuxError } from '../core/errors.js';

/**
 * Keys whose values never reach a log line, wherever they appear one or two levels down. The
 * daemon does not log config objects or SDK errors in the first place; this is the second belt.
 */
const REDACT = [
  'options', '*.options', 'credentials', '*.credentials', 'connectionString', '*.connectionString', 'accountKey', '*.accountKey',
  'sasToken', '*.sasToken', 'secretAccessKey', '*.secretAccessKey', 'password', '*.password', 'token', '*.token', 'authorization', '*.authorization',
];

/**
 * An error as logged: code, message and where, never the cause chain (SDK errors carry request
 * details) nor, below debug level, the stack.
 */
export function serializeError(e: unknown): Record<string, unknown> {
  if (e instanceof CloudmuxError) {
    const out: Record<string, unknown> = { code: e.code, message: e.message };
    if (e.provider) out.provider = e.provider;
    if (e.key) out.key = e.key;
    if (e.status !== undefined) out.status = e.status;
    return out;
  }
  if (e instanceof Error) return { type: e.name, message: e.message };
  return { message: String(e) };
}

/** One line describing an error, for `reason` fields (the one describeError, src/core/errors.ts). */
export { describeError } from '../core/errors.js';

/** The daemon's pino logger: JSON lines on stdout (or `destination`), written synchronously so an exit loses none. */
export function createDaemonLogger(level: LevelWithSilent = 'info', destination?: DestinationStream): Logger {
  return pino({
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    serializers: { err: serializeError },
    redact: { paths: REDACT, censor: '[redacted]' },
    formatters: { level: (label) => ({ level: label }) },
  }, destination ?? pino.destination({ dest: 1, sync: true }));
}
