/**
 * Who wrote a temp file, in its name, so that a sweep can tell a dead writer's leftover from a live
 * writer's file in flight without waiting an hour: 48 hex digits = 16 random, 8 of a digest of the
 * host name, 8 of the pid, 16 of the process's start time (Linux: clock ticks since boot, from
 * /proc; 0 elsewhere). Liveness is pid + start time, so a reused pid is not mistaken for the
 * writer; where the start time is unknown, a live pid is taken as the writer (kept: the safe side).
 * Files of other hosts (a shared network root) or without a tag are judged by age only.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

const TAG = /^([0-9a-f]{16})([0-9a-f]{8})([0-9a-f]{8})([0-9a-f]{16})$/;
const HOST = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);

/** Start time of `pid` in clock ticks since boot (Linux), 0n when unknown, undefined when no such process. */
function startTime(pid: number | 'self'): bigint | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' && process.platform === 'linux' ? undefined : 0n;
  }
  // Field 22, counted after the command name, which may hold spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const v = fields[19];
  return v !== undefined && /^\d+$/.test(v) ? BigInt(v) : 0n;
}

const SELF = (startTime('self') ?? 0n).toString(16).padStart(16, '0').slice(-16);
const PID = process.pid.toString(16).padStart(8, '0').slice(-8);

/** A fresh tag for a temp file of this process. */
export function writerTag(): string {
  return `${randomBytes(8).toString('hex')}${HOST}${PID}${SELF}`;
}

/**
 * True when the tag names a writer on this host that is gone (its pid is not running, or runs a
 * process started at another time), false when it may be alive, undefined when this host cannot
 * tell (another host's tag, or a name without one).
 */
export function writerGone(tag: string | undefined): boolean | undefined {
  const m = tag === undefined ? null : TAG.exec(tag);
  if (!m || m[2] !== HOST) return undefined;
  const pid = parseInt(m[3]!, 16);
  const started = BigInt(`0x${m[4]!}`);
  if (pid === process.pid) return started !== BigInt(`0x${SELF}`);
  if (!pidAlive(pid)) return true;
  if (started === 0n) return false;
  const now = startTime(pid);
  if (now === undefined) return true;
  return now !== 0n && now !== started;
}

/** True when a process with this pid runs on this host (EPERM: it runs, under another user). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The writer tag in the name of a temp file of either layout, if it has one. */
export function tagOfTempName(name: string): string | undefined {
  return /(?:%t|^\.cloudmux-tmp-)([0-9a-f]{48})$/.exec(name)?.[1];
}
