import type { Op } from './history.js';

/**
 * A linearizability checker for a history of blob operations, one register per key.
 *
 * # The model checked
 * Each key is a read/write register whose value is "absent" (null) or the id of the put that wrote
 * it (every put writes a unique value, see history.ts). A put of v is a write of v, a delete is a
 * write of null, a get is a read, and a list is, for each key of the workload's key set, a read of
 * that key (present with the listed SHA-256, mapped back to the put that wrote those bytes, or
 * absent). The history is valid when, for every key separately, there is a sequential order of its
 * operations that a register allows (each read returns the last write before it) and that respects
 * real time: an operation that completed before another was invoked comes first. That is
 * linearizability per key, checked exactly (Wing & Gong's search with Lowe's memoization, as in
 * Knossos and Porcupine), not an approximation. What it does NOT check:
 * - a list is not checked as one atomic snapshot of all keys: each key's part of it is checked as a
 *   read of that key on its own (the router promises nothing across keys);
 * - failed reads observed nothing and are ignored (their count is reported, not judged), except
 *   the reads made after healing and draining (`final`): those must succeed.
 *
 * Outcomes: an `ok` write took effect once, between its invocation and its completion. A write that
 * failed, timed out or was aborted (`info`) MAY have taken effect, once, at any time after its
 * invocation (also after its error was reported), or never. A read returns the value at one point
 * between its invocation and completion.
 *
 * # Anomalies reported
 * Besides the verdict of the search, cheap exact rules name the common violations (each implies
 * that no linearization exists):
 * - `never-written`: a read returned a value no put of that key wrote (garbage, another key's body,
 *   torn bytes, an unknown digest in a listing);
 * - `read-before-write`: a read returned the value of a put invoked after the read had completed;
 * - `stale-read`: a read returned v although a write acknowledged before the read began was itself
 *   invoked after v's write was acknowledged (v had been overwritten for sure); for a read of
 *   "absent", a put acknowledged before the read began with no delete that could fall between;
 * - `stale-cached-read`: a stale-read served from a copy left by copy on read (the op's `cachedOn`):
 *   a cached copy outlived the version it was made of;
 * - `lost-write`: the same as stale-read for a read after healing and draining: an acknowledged
 *   write is gone;
 * - `unreadable-after-heal`: a read after healing and draining failed;
 * - `not-linearizable`: the search found no order, and none of the rules above names why;
 * - `inconclusive`: the search exceeded its budget (reported, never taken as a pass).
 *
 * # Search
 * Operations of a key are sorted by invocation. A configuration is the set of operations already
 * linearized plus the register's value; an operation may be linearized next when no operation
 * still to be linearized completed before it was invoked. Four reductions keep it small, each
 * preserving the answer: a read that matches the current value is linearized at once (doing so
 * never removes an option); an `info` put whose value nobody read is dropped (it can only change
 * the value to one nobody observes); an `info` put whose value was read must be linearized before
 * the first such read completes, so it gets that deadline as its completion time; and `info`
 * deletes are interchangeable, so only the earliest-invoked unused one is ever tried.
 */

export type AnomalyKind =
  | 'never-written' | 'read-before-write' | 'stale-read' | 'stale-cached-read' | 'lost-write' | 'unreadable-after-heal' | 'not-linearizable' | 'inconclusive';

export interface Anomaly {
  kind: AnomalyKind;
  key: string;
  message: string;
  /** Ids of the operations involved. */
  ops: string[];
}

export interface KeyVerdict {
  /** Register operations checked for this key (list reads included, failed reads not). */
  ops: number;
  /** Configurations the search visited. */
  configs: number;
  linearizable: boolean | 'unknown';
}

export interface CheckResult {
  valid: boolean;
  anomalies: Anomaly[];
  keys: Record<string, KeyVerdict>;
}

export interface CheckOptions {
  /** The registers' value before the history (default null: absent). */
  initial?: string | null;
  /** Search budget per key, in configurations (default 2 000 000). */
  maxConfigs?: number;
}

/** One operation on one key's register. */
interface RegOp {
  write: boolean;
  value: string | null;
  inv: number;
  /** Completion time, or the deadline by which it must have happened; Infinity when it may never. */
  ret: number;
  /** Must be linearized (ok operations, and info puts whose value was read). */
  required: boolean;
  src: Op;
  final: boolean;
}

const ms = (t: number): string => (Number.isFinite(t) ? `${(t / 1e6).toFixed(3)}ms` : '∞');

function describe(op: Op, value = op.value): string {
  const v = value === null ? 'absent' : value === undefined ? '?' : value;
  const what = op.f === 'delete' ? 'delete' : op.f === 'put' ? `put ${v}` : `${op.f} → ${v}`;
  return `${op.id} ${what}${op.cachedOn ? ` (from the cached copy on ${op.cachedOn})` : ''} [${op.outcome}${op.final ? ', final' : ''} ${ms(op.invokeT)}..${ms(op.completeT)}]${op.error ? ` (${op.error.slice(0, 120)})` : ''}`;
}

/** Checks a merged history (see {@link pairOps}); deterministic for a given input. */
export function checkHistory(ops: Op[], opts: CheckOptions = {}): CheckResult {
  const initial = opts.initial ?? null;
  const anomalies: Anomaly[] = [];
  const byKey = new Map<string, RegOp[]>();
  const at = (key: string): RegOp[] => {
    let list = byKey.get(key);
    if (!list) byKey.set(key, (list = []));
    return list;
  };
  // Digest → value, per key, for listings.
  const bySha = new Map<string, string>();
  for (const op of ops) if (op.f === 'put' && op.key !== undefined && op.sha256 && typeof op.value === 'string') bySha.set(`${op.key}\n${op.sha256}`, op.value);

  for (const op of ops) {
    if (op.f === 'put' || op.f === 'delete') {
      if (op.key === undefined) continue;
      at(op.key).push({ write: true, value: op.f === 'delete' ? null : op.value ?? null, inv: op.invokeT, ret: op.outcome === 'ok' ? op.completeT : Infinity, required: op.outcome === 'ok', src: op, final: false });
    } else if (op.outcome !== 'ok') {
      if (op.final) anomalies.push({ kind: 'unreadable-after-heal', key: op.key ?? '(list)', message: `after healing and draining, ${describe(op)} failed`, ops: [op.id] });
    } else if (op.f === 'get' && op.key !== undefined) {
      at(op.key).push({ write: false, value: op.value ?? null, inv: op.invokeT, ret: op.completeT, required: true, src: op, final: !!op.final });
    } else if (op.f === 'list' && op.listed) {
      for (const [key, sha] of Object.entries(op.listed)) {
        const value = sha === null ? null : bySha.get(`${key}\n${sha}`) ?? `!unknown-sha256:${sha.slice(0, 16)}`;
        at(key).push({ write: false, value, inv: op.invokeT, ret: op.completeT, required: true, src: op, final: !!op.final });
      }
    }
  }

  const keys: Record<string, KeyVerdict> = {};
  for (const [key, regOps] of [...byKey].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const named = classify(key, regOps, initial);
    anomalies.push(...named);
    const verdict = searchKey(key, regOps, initial, opts.maxConfigs ?? 2_000_000);
    keys[key] = { ops: verdict.ops, configs: verdict.configs, linearizable: verdict.linearizable };
    if (verdict.linearizable === 'unknown') {
      anomalies.push({ kind: 'inconclusive', key, message: `key ${key}: search gave up after ${verdict.configs} configurations`, ops: [] });
    } else if (!verdict.linearizable && named.length === 0) {
      anomalies.push({ kind: 'not-linearizable', key, message: verdict.why!, ops: verdict.ops_ ?? [] });
    } else if (verdict.linearizable && named.length > 0) {
      // The rules are sound: if one fires, the search must fail too. Disagreement is a checker bug.
      throw new Error(`checker bug: key ${key} linearizable but ${named.map((a) => a.kind).join(', ')} reported`);
    }
  }
  return { valid: anomalies.length === 0, anomalies, keys };
}

/** The exact rules of the file comment (`never-written`, `read-before-write`, `stale-read`, `stale-cached-read`, `lost-write`). */
function classify(key: string, regOps: RegOp[], initial: string | null): Anomaly[] {
  const out: Anomaly[] = [];
  const writesOf = new Map<string, RegOp>();
  for (const w of regOps) if (w.write && w.value !== null) writesOf.set(w.value, w);
  // Acknowledged writes by completion time, with the latest invocation among those completed so far.
  const acked = regOps.filter((o) => o.write && o.required).sort((a, b) => a.ret - b.ret);
  const latestInvoked: RegOp[] = [];
  for (const w of acked) latestInvoked.push(latestInvoked.length && latestInvoked[latestInvoked.length - 1]!.inv >= w.inv ? latestInvoked[latestInvoked.length - 1]! : w);
  /** Among writes acknowledged strictly before t, the one invoked last. */
  const lastAckedBefore = (t: number): RegOp | undefined => {
    let lo = 0;
    let hi = acked.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (acked[mid]!.ret < t) lo = mid + 1;
      else hi = mid;
    }
    return lo === 0 ? undefined : latestInvoked[lo - 1];
  };
  const deletes = regOps.filter((o) => o.write && o.value === null);
  for (const r of regOps) {
    if (r.write) continue;
    const stale = r.final ? 'lost-write' : r.src.cachedOn ? 'stale-cached-read' : 'stale-read';
    const w2 = lastAckedBefore(r.inv);
    if (r.value === null) {
      if (!w2 || w2.value === null) continue;
      // Absent although w2 (a put) was acknowledged before the read began: a delete must fall in between.
      if (deletes.some((d) => d.inv <= r.ret && d.ret >= w2.inv)) continue;
      out.push({
        kind: stale, key,
        message: `key ${key}: ${describe(r.src, null)} reads absent, but ${describe(w2.src)} was acknowledged before the read began and no delete could fall in between`,
        ops: [r.src.id, w2.src.id],
      });
      continue;
    }
    if (r.value === initial) continue;
    const w = writesOf.get(r.value);
    if (!w) {
      out.push({ kind: 'never-written', key, message: `key ${key}: ${describe(r.src, r.value)} returns a value no put of this key wrote`, ops: [r.src.id] });
      continue;
    }
    if (w.inv > r.ret) {
      out.push({ kind: 'read-before-write', key, message: `key ${key}: ${describe(r.src, r.value)} completed before its write ${describe(w.src)} was invoked`, ops: [r.src.id, w.src.id] });
      continue;
    }
    if (w2 && w2 !== w && w.required && w2.inv > w.ret) {
      out.push({
        kind: stale, key,
        message: `key ${key}: ${describe(r.src, r.value)} returns ${r.value}, overwritten before the read began: ${describe(w.src)} was acknowledged, then ${describe(w2.src)} was invoked and acknowledged`,
        ops: [r.src.id, w.src.id, w2.src.id],
      });
    }
  }
  return out;
}

interface SearchVerdict {
  ops: number;
  configs: number;
  linearizable: boolean | 'unknown';
  why?: string;
  ops_?: string[];
}

/** Wing & Gong / Lowe search for one key's register (see the file comment). */
function searchKey(key: string, regOps: RegOp[], initial: string | null, maxConfigs: number): SearchVerdict {
  // Reductions on info puts: dropped when unread, required with the first read's completion as deadline when read.
  const firstReadRet = new Map<string, number>();
  for (const o of regOps) {
    if (!o.write && o.value !== null) firstReadRet.set(o.value, Math.min(firstReadRet.get(o.value) ?? Infinity, o.ret));
  }
  const ops: RegOp[] = [];
  // Info deletes: interchangeable, so the search always uses the earliest-invoked unused one; the
  // ones used are then always a prefix of this list, and a count describes them.
  const optional: RegOp[] = [];
  for (const o of regOps) {
    if (o.write && !o.required) {
      if (o.value === null) {
        optional.push(o);
        continue;
      }
      const deadline = firstReadRet.get(o.value);
      if (deadline !== undefined) ops.push({ ...o, ret: deadline, required: true });
    } else {
      ops.push(o);
    }
  }
  const byTime = (a: RegOp, b: RegOp): number => a.inv - b.inv || a.ret - b.ret;
  ops.sort(byTime);
  optional.sort(byTime);
  const n = ops.length;
  const valueIds = new Map<string | null, number>([[null, 0]]);
  const vid = (v: string | null): number => {
    let id = valueIds.get(v);
    if (id === undefined) valueIds.set(v, (id = valueIds.size));
    return id;
  };
  const val = ops.map((o) => vid(o.value));
  const done = new Uint8Array(n);
  let value = vid(initial);
  /** First op not linearized yet (every op before it is). */
  let lo = 0;
  /** Info deletes used so far (a prefix of `optional`). */
  let used = 0;
  let left = n;
  const visited = new Set<string>();
  let configs = 0;
  let deepest = { done: -1, value, stuck: [] as number[] };
  const OPTIONAL = -1;

  /** Ops that may be linearized next, reductions applied; OPTIONAL stands for the next info delete. */
  const candidates = (): number[] => {
    let minRet = Infinity;
    let end = lo;
    for (; end < n; end++) {
      const o = ops[end]!;
      if (o.inv > minRet) break;
      if (!done[end] && o.ret < minRet) minRet = o.ret;
    }
    const usable: number[] = [];
    for (let i = lo; i < end; i++) {
      if (done[i]) continue;
      const o = ops[i]!;
      if (o.inv > minRet) break;
      if (o.write) usable.push(i);
      else if (val[i] === value) return [i]; // a read matching the value: take it, no branching
    }
    if (used < optional.length && optional[used]!.inv <= minRet && value !== 0) usable.push(OPTIONAL);
    return usable;
  };
  const memoKey = (): string => {
    let k = `${value}|${lo}|${used}`;
    for (let i = lo + 1; i < n; i++) if (done[i]) k += `,${i}`;
    return k;
  };
  const note = (): void => {
    if (n - left <= deepest.done) return;
    const stuck: number[] = [];
    for (let i = lo; i < n; i++) if (!done[i]) stuck.push(i);
    stuck.sort((a, b) => ops[a]!.ret - ops[b]!.ret);
    deepest = { done: n - left, value, stuck: stuck.slice(0, 3) };
  };

  if (left === 0) return { ops: n, configs: 0, linearizable: true };
  interface Frame { cands: number[]; next: number; chosen: number | undefined; prevValue: number; prevLo: number }
  visited.add(memoKey());
  note();
  const stack: Frame[] = [{ cands: candidates(), next: 0, chosen: undefined, prevValue: 0, prevLo: 0 }];
  while (stack.length > 0) {
    const f = stack[stack.length - 1]!;
    if (f.chosen !== undefined) {
      if (f.chosen === OPTIONAL) used--;
      else {
        done[f.chosen] = 0;
        left++;
      }
      value = f.prevValue;
      lo = f.prevLo;
      f.chosen = undefined;
    }
    if (f.next >= f.cands.length) {
      stack.pop();
      continue;
    }
    const c = f.cands[f.next++]!;
    f.prevValue = value;
    f.prevLo = lo;
    f.chosen = c;
    if (c === OPTIONAL) {
      used++;
      value = 0;
    } else {
      done[c] = 1;
      left--;
      if (ops[c]!.write) value = val[c]!;
      while (lo < n && done[lo]) lo++;
    }
    if (left === 0) return { ops: n, configs, linearizable: true };
    const k = memoKey();
    if (visited.has(k)) continue;
    visited.add(k);
    if (++configs > maxConfigs) return { ops: n, configs, linearizable: 'unknown' };
    note();
    stack.push({ cands: candidates(), next: 0, chosen: undefined, prevValue: 0, prevLo: 0 });
  }
  const names = [...valueIds.keys()];
  const stuck = deepest.stuck.map((i) => ops[i]!);
  const why = `key ${key}: no linearization of its ${n} operations. The longest valid prefix places ${deepest.done}; `
    + `the register then holds ${names[deepest.value] ?? 'absent'}, and none of these can come next: `
    + stuck.map((o) => describe(o.src, o.value)).join('; ');
  return { ops: n, configs, linearizable: false, why, ops_: stuck.map((o) => o.src.id) };
}
