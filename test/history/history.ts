import { createHash } from 'node:crypto';
import { pseudoRandomBytes } from '../../src/testing/data.js';

/**
 * The history of a Jepsen-style run: every operation's invocation and completion, from every
 * process, on one clock.
 *
 * Time is `process.hrtime` (CLOCK_MONOTONIC on Linux: one clock for every process of the machine)
 * in nanoseconds since a base the parent hands to its children (`HISTORY_T0`), so the events of
 * several processes merge into one real-time order. An invocation is stamped before the call
 * starts and a completion after it returns, so the real operation lies inside [invoke, complete].
 */

export type OpKind = 'put' | 'delete' | 'get' | 'list';

/**
 * - `ok`: the operation completed and its result is known.
 * - `fail`: a read that failed (it observed nothing). Never used for writes.
 * - `info`: a write whose outcome is unknown: it failed, timed out or was aborted, and MAY have
 *   happened (as on S3: a request whose response was lost may have landed), now or later.
 */
export type Outcome = 'ok' | 'fail' | 'info';

export interface InvokeEvent {
  type: 'invoke';
  /** Unique over the run: `${proc}:${n}`. */
  id: string;
  proc: string;
  f: OpKind;
  key?: string;
  /** For a put: the value (its id) being written; for a delete: null (a write of "absent"). */
  value?: string | null;
  /** For a put: SHA-256 of the body written (lists report digests, mapped back to values). */
  sha256?: string;
  t: number;
}

export interface CompleteEvent {
  type: Outcome;
  id: string;
  t: number;
  /** For a get: the value read (null: NotFound). */
  value?: string | null;
  /** For a list: per key of the workload's key set, the listed SHA-256, or null when not listed. */
  listed?: Record<string, string | null>;
  error?: string;
  /** Set on the reads made after healing and draining: they must succeed. */
  final?: boolean;
  /** For a get: the provider whose copy left by copy on read served it. */
  cachedOn?: string;
}

export type HistoryEvent = InvokeEvent | CompleteEvent;

/** One operation: an invocation paired with its completion. */
export interface Op {
  id: string;
  proc: string;
  f: OpKind;
  key?: string;
  /** Written (put/delete) or read (get) value; null is "absent". */
  value?: string | null;
  sha256?: string;
  listed?: Record<string, string | null>;
  outcome: Outcome;
  invokeT: number;
  /** Infinity when the operation never completed (its process died): then its outcome is `info`. */
  completeT: number;
  error?: string;
  final?: boolean;
  /** For a get served from a copy left by copy on read: the provider holding that copy. */
  cachedOn?: string;
}

let defaultBase: bigint | undefined;

/** The clock's base for this run: `HISTORY_T0` (set by the parent for its children), else now. */
export function clockBase(): bigint {
  if (defaultBase === undefined) defaultBase = process.env.HISTORY_T0 ? BigInt(process.env.HISTORY_T0) : process.hrtime.bigint();
  return defaultBase;
}

/**
 * Records events as they happen. `sink` receives each one (a child process streams them to a
 * file so that a crash loses nothing recorded before it).
 */
export class HistoryRecorder {
  readonly events: HistoryEvent[] = [];
  private n = 0;

  constructor(readonly proc: string, private readonly base: bigint = clockBase(), private readonly sink?: (e: HistoryEvent) => void) {}

  now(): number {
    return Number(process.hrtime.bigint() - this.base);
  }

  /** A fresh op id (a put needs it before its invocation: the id is the value it writes). */
  nextId(): string {
    return `${this.proc}:${++this.n}`;
  }

  /** Records an invocation; returns its op id. */
  invoke(f: OpKind, fields: { key?: string; value?: string | null; sha256?: string } = {}, id = this.nextId()): string {
    this.push({ type: 'invoke', id, proc: this.proc, f, ...fields, t: this.now() });
    return id;
  }

  complete(id: string, type: Outcome, fields: Omit<CompleteEvent, 'type' | 'id' | 't'> = {}): void {
    this.push({ type, id, t: this.now(), ...fields });
  }

  private push(e: HistoryEvent): void {
    this.events.push(e);
    this.sink?.(e);
  }
}

/**
 * Pairs invocations with completions (events of several processes, in any order). An invocation
 * without a completion (its process died) becomes `info` with completion time Infinity; a write
 * completed `fail` is made `info` (a failed write may have happened).
 */
export function pairOps(events: Iterable<HistoryEvent>): Op[] {
  const invokes = new Map<string, InvokeEvent>();
  const done = new Map<string, CompleteEvent>();
  for (const e of events) {
    if (e.type === 'invoke') {
      if (invokes.has(e.id)) throw new Error(`history: op ${e.id} invoked twice`);
      invokes.set(e.id, e);
    } else {
      if (done.has(e.id)) throw new Error(`history: op ${e.id} completed twice`);
      done.set(e.id, e);
    }
  }
  for (const id of done.keys()) if (!invokes.has(id)) throw new Error(`history: op ${id} completed but never invoked`);
  const ops: Op[] = [];
  for (const inv of invokes.values()) {
    const c = done.get(inv.id);
    const write = inv.f === 'put' || inv.f === 'delete';
    let outcome: Outcome = c?.type ?? 'info';
    if (write && outcome === 'fail') outcome = 'info';
    if (!write && !c) outcome = 'fail';
    const op: Op = { id: inv.id, proc: inv.proc, f: inv.f, outcome, invokeT: inv.t, completeT: c ? c.t : Infinity };
    if (inv.key !== undefined) op.key = inv.key;
    if (write) op.value = inv.f === 'delete' ? null : inv.value ?? null;
    else if (c?.value !== undefined) op.value = c.value;
    if (inv.sha256) op.sha256 = inv.sha256;
    if (c?.listed) op.listed = c.listed;
    if (c?.error) op.error = c.error;
    if (c?.final) op.final = true;
    if (c?.cachedOn) op.cachedOn = c.cachedOn;
    ops.push(op);
  }
  return ops.sort((a, b) => a.invokeT - b.invokeT || a.id.localeCompare(b.id));
}

// -------------------------------------------------------------------------------------------------
// Values: each put writes a body that names its own op, so a read tells which write it saw.

const MAGIC = 'cmx-history';

/**
 * The body a put of `value` (an op id) to `key` writes: a header naming key, value and size, then
 * filler derived from the value, `size` bytes in all (at least the header).
 */
export function bodyFor(key: string, value: string, size = 64): Buffer {
  const headerBytes = Buffer.byteLength(`${MAGIC}|${key}|${value}|0000000000|`);
  const total = Math.max(size, headerBytes);
  const body = Buffer.alloc(total);
  body.write(`${MAGIC}|${key}|${value}|${String(total).padStart(10, '0')}|`, 'utf8');
  pseudoRandomBytes(total - headerBytes, `${key}|${value}`).copy(body, headerBytes);
  return body;
}

export const sha256Hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/**
 * The value a body read back from `key` carries: the writer's op id when the body is exactly what
 * {@link bodyFor} wrote for this key, else a `!`-prefixed description (a value nobody wrote).
 */
export function valueOf(key: string, body: Buffer): string {
  const text = body.subarray(0, 512).toString('latin1');
  const m = /^cmx-history\|(.*?)\|([^|]+)\|(\d{10})\|/.exec(text);
  if (!m) return `!garbage:${sha256Hex(body).slice(0, 12)}:${JSON.stringify(text.slice(0, 40))}`;
  const [, bodyKey, value, size] = m;
  if (bodyKey !== key) return `!foreign:${bodyKey}:${value}`;
  const expected = bodyFor(key, value!, Number(size));
  if (!expected.equals(body)) return `!torn:${value}:${body.byteLength}/${expected.byteLength}`;
  return value!;
}
