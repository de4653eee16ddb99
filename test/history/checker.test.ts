import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkHistory, type AnomalyKind } from './checker.js';
import { Readable } from 'node:stream';
import { MemoryStore } from '../../providers/memory/store.js';
import { collect } from '../../src/core/body.js';
import type { BlobStore } from '../../src/core/types.js';
import { HistoryRecorder, bodyFor, pairOps, sha256Hex, valueOf, type HistoryEvent, type Op, type Outcome } from './history.js';
import { readKey } from './workload.js';
import { historySeed } from './seed.js';

/** A compact way to write histories: times in ms, one op per line. */
type Spec =
  | ['put', string, string, number, number, Outcome?]
  | ['del', string, number, number, Outcome?]
  | ['get', string, string | null, number, number, Outcome?]
  | ['list', Record<string, string | null>, number, number]
  | ['final', string, string | null | 'FAIL'];

let n = 0;
function op(spec: Spec): Op {
  const id = `p:${++n}`;
  const ns = (t: number): number => (Number.isFinite(t) ? t * 1e6 : t);
  switch (spec[0]) {
    case 'put': {
      const [, key, value, a, b, outcome = 'ok'] = spec;
      return { id, proc: 'p', f: 'put', key, value, sha256: sha256Hex(bodyFor(key, value)), outcome, invokeT: ns(a), completeT: ns(b) };
    }
    case 'del': {
      const [, key, a, b, outcome = 'ok'] = spec;
      return { id, proc: 'p', f: 'delete', key, value: null, outcome, invokeT: ns(a), completeT: ns(b) };
    }
    case 'get': {
      const [, key, value, a, b, outcome = 'ok'] = spec;
      return { id, proc: 'p', f: 'get', key, value, outcome, invokeT: ns(a), completeT: ns(b) };
    }
    case 'list': {
      const [, values, a, b] = spec;
      const listed = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, v === null ? null : sha256Hex(bodyFor(k, v))]));
      return { id, proc: 'p', f: 'list', listed, outcome: 'ok', invokeT: ns(a), completeT: ns(b) };
    }
    case 'final': {
      const [, key, value] = spec;
      const failed = value === 'FAIL';
      return { id, proc: 'final', f: 'get', key, ...(failed ? {} : { value }), outcome: failed ? 'fail' : 'ok', invokeT: 1e12, completeT: 1e12 + 1, final: true };
    }
  }
}

const check = (specs: Spec[]): ReturnType<typeof checkHistory> => checkHistory(specs.map(op));
const kinds = (specs: Spec[]): AnomalyKind[] => check(specs).anomalies.map((a) => a.kind);

describe('history checker: known-bad histories are flagged', () => {
  it('a stale read: v1 overwritten by an acknowledged v2 before the read began', () => {
    const r = check([['put', 'k', 'v1', 0, 10], ['put', 'k', 'v2', 20, 30], ['get', 'k', 'v1', 40, 50]]);
    expect(r.valid).toBe(false);
    expect(r.anomalies[0]).toMatchObject({ kind: 'stale-read', key: 'k' });
    expect(r.anomalies[0]!.message).toMatch(/overwritten before the read began/);
    expect(r.keys.k!.linearizable).toBe(false);
  });

  it('a read of a value deleted (acknowledged) before the read began', () => {
    expect(kinds([['put', 'k', 'v1', 0, 10], ['del', 'k', 20, 30], ['get', 'k', 'v1', 40, 50]])).toEqual(['stale-read']);
  });

  it('a read of absent after an acknowledged put, with no delete that could explain it', () => {
    expect(kinds([['put', 'k', 'v1', 0, 10], ['get', 'k', null, 20, 30]])).toEqual(['stale-read']);
    // A delete that ended before the put began explains nothing.
    expect(kinds([['del', 'k', 0, 5], ['put', 'k', 'v1', 6, 10], ['get', 'k', null, 20, 30]])).toEqual(['stale-read']);
  });

  it('a lost acknowledged write: after healing and draining the key holds an older value', () => {
    const r = check([['put', 'k', 'v1', 0, 10], ['put', 'k', 'v2', 20, 30], ['final', 'k', 'v1']]);
    expect(r.anomalies.map((a) => a.kind)).toEqual(['lost-write']);
    expect(kinds([['put', 'k', 'v1', 0, 10], ['final', 'k', null]])).toEqual(['lost-write']);
  });

  it('a key unreadable after healing and draining', () => {
    expect(kinds([['put', 'k', 'v1', 0, 10], ['final', 'k', 'FAIL']])).toEqual(['unreadable-after-heal']);
  });

  it('a read of a value nobody wrote (garbage, another key\'s body, an unknown digest in a listing)', () => {
    expect(kinds([['put', 'k', 'v1', 0, 10], ['get', 'k', 'v9', 5, 15]])).toEqual(['never-written']);
    expect(kinds([['put', 'j', 'v1', 0, 10], ['get', 'k', 'v1', 20, 30]])).toEqual(['never-written']);
    const listing = op(['list', { k: null }, 20, 30]);
    listing.listed = { k: 'ab'.repeat(32) };
    const r = checkHistory([op(['put', 'k', 'v1', 0, 10]), listing]);
    expect(r.anomalies.map((a) => a.kind)).toEqual(['never-written']);
    expect(r.anomalies[0]!.message).toMatch(/unknown-sha256/);
  });

  it('a read of a value whose put began only after the read had completed', () => {
    expect(kinds([['get', 'k', 'v1', 0, 10], ['put', 'k', 'v1', 20, 30]])).toEqual(['read-before-write']);
  });

  it('a stale read seen only in a listing', () => {
    expect(kinds([['put', 'k', 'v1', 0, 10], ['put', 'k', 'v2', 20, 30], ['list', { k: 'v1' }, 40, 50]])).toEqual(['stale-read']);
  });

  it('no single order explains two readers that saw two concurrent writes in opposite orders (search only)', () => {
    const r = check([
      ['put', 'k', 'a', 0, 100], ['put', 'k', 'b', 0, 100],
      ['get', 'k', 'a', 10, 20], ['get', 'k', 'b', 30, 40],
      ['get', 'k', 'b', 10, 20], ['get', 'k', 'a', 30, 40],
    ]);
    expect(r.anomalies.map((a) => a.kind)).toEqual(['not-linearizable']);
    expect(r.anomalies[0]!.message).toMatch(/no linearization/);
  });

  it('a new-old inversion: a read sees v2, a later read sees v1 again, while v2\'s put is still running', () => {
    expect(kinds([['put', 'k', 'v1', 0, 10], ['put', 'k', 'v2', 20, 40], ['get', 'k', 'v2', 25, 30], ['get', 'k', 'v1', 32, 35]])).toEqual(['not-linearizable']);
  });

  it('a failed put may land, but only once: its value cannot come back after a later acknowledged write was read', () => {
    expect(kinds([
      ['put', 'k', 'a', 0, 10, 'info'], ['get', 'k', 'a', 20, 30], ['put', 'k', 'b', 40, 50], ['get', 'k', 'b', 60, 70], ['get', 'k', 'a', 80, 90],
    ])).toEqual(['not-linearizable']);
  });

  it('a stale read served from a cached copy (copy on read) is named as such', () => {
    const ops = [['put', 'k', 'v1', 0, 10], ['put', 'k', 'v2', 20, 30], ['get', 'k', 'v1', 40, 50]].map((spec) => op(spec as Spec));
    ops[2]!.cachedOn = 'eu';
    const r = checkHistory(ops);
    expect(r.anomalies.map((a) => a.kind)).toEqual(['stale-cached-read']);
    expect(r.anomalies[0]!.message).toMatch(/from the cached copy on eu.*overwritten before the read began/);
    // The same read served from the cached copy of the current version is fine.
    ops[2]!.value = 'v2';
    expect(checkHistory(ops).valid).toBe(true);
  });

  it('recorded end to end: a store that keeps serving the copy it cached of v1 after v2 was acknowledged is flagged', async () => {
    const memory = new MemoryStore();
    let copy: Buffer | undefined;
    // A broken copy on read: the first read leaves a copy that later reads are served from, whatever was written since.
    const broken = {
      get: async (key: string) => {
        if (!copy) copy = await collect((await memory.get(key)).body);
        return { meta: await memory.head(key), body: Readable.from([copy]), provider: 'eu', cached: true };
      },
    } as unknown as BlobStore;
    const recorder = new HistoryRecorder('p', process.hrtime.bigint());
    const put = async (value: string): Promise<void> => {
      const body = bodyFor('k', value);
      recorder.invoke('put', { key: 'k', value, sha256: sha256Hex(body) }, value);
      await memory.put('k', body);
      recorder.complete(value, 'ok');
    };
    await put('p:v1');
    await readKey(broken, recorder, 'k');
    await put('p:v2');
    await readKey(broken, recorder, 'k');
    const r = checkHistory(pairOps(recorder.events));
    expect(r.anomalies.map((a) => a.kind)).toEqual(['stale-cached-read']);
    expect(r.anomalies[0]!.message).toMatch(/get → p:v1 \(from the cached copy on eu\).*overwritten before the read began/);
  });

  it('keys are separate registers: a violation on one key names that key only', () => {
    const r = check([['put', 'a', 'x', 0, 10], ['put', 'b', 'y', 0, 10], ['put', 'b', 'z', 20, 30], ['get', 'a', 'x', 40, 50], ['get', 'b', 'y', 40, 50]]);
    expect(r.anomalies.map((a) => [a.kind, a.key])).toEqual([['stale-read', 'b']]);
    expect(r.keys.a!.linearizable).toBe(true);
  });
});

describe('history checker: valid histories pass', () => {
  it('a read concurrent with a write may see either value', () => {
    expect(check([['put', 'k', 'v1', 0, 10], ['put', 'k', 'v2', 20, 40], ['get', 'k', 'v1', 25, 30], ['get', 'k', 'v2', 26, 31]]).valid).toBe(true);
    expect(check([['put', 'k', 'v1', 0, 10], ['put', 'k', 'v2', 20, 40], ['get', 'k', 'v2', 25, 30], ['get', 'k', 'v2', 32, 35]]).valid).toBe(true);
    expect(check([['put', 'k', 'v1', 0, 10], ['put', 'k', 'v2', 20, 40], ['get', 'k', 'v1', 25, 30], ['get', 'k', 'v2', 32, 35]]).valid).toBe(true);
  });

  it('a failed put may have landed, now or after a later write (like S3), or never', () => {
    expect(check([['put', 'k', 'v1', 0, 10], ['put', 'k', 'v2', 20, 30, 'info'], ['get', 'k', 'v2', 40, 50], ['final', 'k', 'v2']]).valid).toBe(true);
    expect(check([['put', 'k', 'v1', 0, 10], ['put', 'k', 'v2', 20, 30, 'info'], ['get', 'k', 'v1', 40, 50], ['final', 'k', 'v1']]).valid).toBe(true);
    // It lands late: after v3 was acknowledged.
    expect(check([['put', 'k', 'v2', 0, 10, 'info'], ['put', 'k', 'v3', 20, 30], ['get', 'k', 'v3', 40, 50], ['get', 'k', 'v2', 60, 70], ['final', 'k', 'v2']]).valid).toBe(true);
    // A failed delete, too.
    expect(check([['put', 'k', 'v1', 0, 10], ['del', 'k', 20, 30, 'info'], ['get', 'k', 'v1', 40, 50], ['get', 'k', null, 60, 70], ['final', 'k', null]]).valid).toBe(true);
  });

  it('absent before any write and after a delete; failed reads observe nothing', () => {
    expect(check([['get', 'k', null, 0, 5], ['put', 'k', 'v1', 10, 20], ['del', 'k', 30, 40], ['get', 'k', null, 50, 60], ['get', 'k', 'v9', 70, 80, 'fail'], ['final', 'k', null]]).valid).toBe(true);
  });

  it('listings are per-key reads', () => {
    expect(check([['put', 'a', 'x', 0, 10], ['put', 'b', 'y', 0, 30], ['list', { a: 'x', b: null }, 20, 25], ['list', { a: 'x', b: 'y' }, 40, 50]]).valid).toBe(true);
  });
});

describe('history recording', () => {
  it('pairs invocations with completions; a write without completion, or failed, is indeterminate', () => {
    const events: HistoryEvent[] = [
      { type: 'invoke', id: 'a:1', proc: 'a', f: 'put', key: 'k', value: 'a:1', t: 1 },
      { type: 'invoke', id: 'b:1', proc: 'b', f: 'get', key: 'k', t: 2 },
      { type: 'ok', id: 'b:1', t: 5, value: 'a:1' },
      { type: 'invoke', id: 'a:2', proc: 'a', f: 'delete', key: 'k', t: 6 },
      { type: 'fail', id: 'a:2', t: 7, error: 'Transient' },
    ];
    const ops = pairOps(events);
    expect(ops.map((o) => [o.id, o.outcome, o.completeT])).toEqual([['a:1', 'info', Infinity], ['b:1', 'ok', 5], ['a:2', 'info', 7]]);
    expect(checkHistory(ops).valid).toBe(true);
    expect(() => pairOps([events[2]!])).toThrow(/never invoked/);
  });

  it('a body names its put; torn, foreign and garbage bodies name no put', () => {
    const body = bodyFor('k', 'p1:7', 300);
    expect(body.byteLength).toBe(300);
    expect(valueOf('k', body)).toBe('p1:7');
    expect(valueOf('k', bodyFor('k', 'p1:7', 5))).toBe('p1:7');
    expect(valueOf('j', body)).toMatch(/^!foreign/);
    expect(valueOf('k', body.subarray(0, 200))).toMatch(/^!torn/);
    const flipped = Buffer.from(body);
    flipped[250]! ^= 1;
    expect(valueOf('k', flipped)).toMatch(/^!torn/);
    expect(valueOf('k', Buffer.from('hello'))).toMatch(/^!garbage/);
  });
});

// -------------------------------------------------------------------------------------------------
// Properties

/** Linearizability by brute force: every order of every allowed subset (tiny histories only). */
function bruteForce(ops: Op[]): boolean {
  const regs = new Map<string, Op[]>();
  for (const o of ops) {
    if (o.outcome === 'fail' && o.f !== 'put' && o.f !== 'delete') continue;
    const list = regs.get(o.key!) ?? [];
    list.push(o);
    regs.set(o.key!, list);
  }
  for (const list of regs.values()) {
    const must = list.filter((o) => o.outcome === 'ok');
    const maybe = list.filter((o) => o.outcome !== 'ok');
    let found = false;
    for (let mask = 0; mask < 1 << maybe.length && !found; mask++) {
      const chosen = [...must, ...maybe.filter((_, i) => mask & (1 << i))];
      const ret = (o: Op): number => (o.outcome === 'ok' ? o.completeT : Infinity);
      const go = (left: Op[], value: string | null): boolean => {
        if (left.length === 0) return true;
        for (const o of left) {
          if (left.some((p) => p !== o && ret(p) < o.invokeT)) continue;
          const write = o.f === 'put' || o.f === 'delete';
          if (!write && o.value !== value) continue;
          if (go(left.filter((p) => p !== o), write ? (o.value ?? null) : value)) return true;
        }
        return false;
      };
      found = go(chosen, null);
    }
    if (!found) return false;
  }
  return true;
}

const outcomes: Outcome[] = ['ok', 'ok', 'info'];
/** Small random histories on one or two keys: writes with unique values, reads of one of them or of absent. */
const tinyHistory = fc.array(
  fc.record({
    kind: fc.constantFrom('put', 'put', 'del', 'get', 'get', 'get'),
    key: fc.constantFrom('a', 'a', 'a', 'b'),
    start: fc.integer({ min: 0, max: 40 }),
    length: fc.integer({ min: 1, max: 25 }),
    outcome: fc.constantFrom(...outcomes),
    read: fc.nat(),
  }),
  { minLength: 1, maxLength: 7 },
).map((specs) => {
  const ops: Op[] = [];
  specs.forEach((s, i) => {
    const base = { id: `t:${i}`, proc: 't', key: s.key, invokeT: s.start, completeT: s.start + s.length };
    if (s.kind === 'put') ops.push({ ...base, f: 'put', value: `v${i}`, outcome: s.outcome });
    else if (s.kind === 'del') ops.push({ ...base, f: 'delete', value: null, outcome: s.outcome });
  });
  specs.forEach((s, i) => {
    if (s.kind !== 'get') return;
    const values = ops.filter((o) => o.f === 'put' && o.key === s.key).map((o) => o.value!);
    const pick = s.read % (values.length + 1);
    ops.push({ id: `t:${i}`, proc: 't', key: s.key, invokeT: s.start, completeT: s.start + s.length, f: 'get', value: pick === 0 ? null : values[pick - 1]!, outcome: 'ok' });
  });
  return ops;
});

/**
 * A history linearizable by construction: each op gets a linearization point inside its interval
 * (an info write lands at some point after its invocation, maybe after its error, or never) and
 * reads return the register's value at their point.
 */
const validHistory = fc.record({
  ops: fc.array(fc.record({
    kind: fc.constantFrom('put', 'put', 'del', 'get', 'get', 'list'),
    key: fc.constantFrom('a', 'b', 'c'),
    start: fc.integer({ min: 0, max: 2000 }),
    length: fc.integer({ min: 1, max: 200 }),
    point: fc.double({ min: 0, max: 1, noNaN: true }),
    outcome: fc.constantFrom<Outcome>('ok', 'ok', 'ok', 'info'),
    lands: fc.boolean(),
    lateBy: fc.integer({ min: 0, max: 500 }),
  }), { minLength: 20, maxLength: 150 }),
}).map(({ ops: specs }) => {
  type Pending = { op: Op; at: number; effect?: { key: string; value: string | null }; reads?: string[] };
  const pending: Pending[] = specs.map((s, i) => {
    const inv = s.start;
    const ret = s.start + s.length;
    const at = inv + s.point * s.length;
    const base = { id: `g:${i}`, proc: `g${i % 4}`, invokeT: inv, completeT: ret };
    if (s.kind === 'put' || s.kind === 'del') {
      const value = s.kind === 'put' ? `g:${i}` : null;
      const op: Op = { ...base, f: s.kind === 'put' ? 'put' : 'delete', key: s.key, value, outcome: s.outcome };
      if (value) op.sha256 = sha256Hex(bodyFor(s.key, value));
      if (s.outcome === 'info' && !s.lands) return { op, at };
      return { op, at: s.outcome === 'info' ? at + s.lateBy : at, effect: { key: s.key, value } };
    }
    if (s.kind === 'get') return { op: { ...base, f: 'get', key: s.key, outcome: 'ok' }, at, reads: [s.key] };
    return { op: { ...base, f: 'list', outcome: 'ok' }, at, reads: ['a', 'b', 'c'] };
  });
  const state = new Map<string, string | null>();
  for (const p of [...pending].sort((x, y) => x.at - y.at)) {
    if (p.effect) state.set(p.effect.key, p.effect.value);
    if (p.reads && p.op.f === 'get') p.op.value = state.get(p.reads[0]!) ?? null;
    if (p.reads && p.op.f === 'list') {
      p.op.listed = Object.fromEntries(p.reads.map((k) => {
        const v = state.get(k) ?? null;
        return [k, v === null ? null : sha256Hex(bodyFor(k, v))];
      }));
    }
  }
  return pending.map((p) => p.op);
});

describe('history checker: properties', () => {
  const seed = historySeed('checker-properties');

  it('agrees with a brute-force search on every small history', () => {
    fc.assert(fc.property(tinyHistory, (ops) => {
      const r = checkHistory(ops);
      expect(r.valid, JSON.stringify(ops)).toBe(bruteForce(ops));
    }), { seed, numRuns: 1000 });
  });

  it('passes every history produced by a linearizable execution, failed writes that land late included', () => {
    fc.assert(fc.property(validHistory, (ops) => {
      const r = checkHistory(ops);
      expect(r.anomalies).toEqual([]);
    }), { seed, numRuns: 100 });
  });

  it('flags a read changed to a value nobody wrote, and a final read that misses the last acknowledged write', () => {
    fc.assert(fc.property(validHistory, fc.nat(), (ops, pick) => {
      const reads = ops.filter((o) => o.f === 'get');
      if (reads.length > 0) {
        const r = reads[pick % reads.length]!;
        const bad = checkHistory(ops.map((o) => (o === r ? { ...o, value: 'nobody' } : o)));
        expect(bad.anomalies.map((a) => a.kind)).toContain('never-written');
      }
      // After everything, an acknowledged put of `a`, then a final read that returns an older
      // acknowledged value of `a`: the last put was lost.
      const end = Math.max(...ops.map((o) => o.completeT)) + 1;
      const older = ops.filter((o) => o.key === 'a' && o.f === 'put' && o.outcome === 'ok');
      if (older.length === 0) return;
      const last: Op = { id: 'last:a', proc: 'last', f: 'put', key: 'a', value: 'last:a', outcome: 'ok', invokeT: end, completeT: end + 1 };
      const final: Op = { id: 'final:a', proc: 'final', f: 'get', key: 'a', value: older[pick % older.length]!.value!, outcome: 'ok', invokeT: end + 2, completeT: end + 3, final: true };
      expect(checkHistory([...ops, last, final]).anomalies.map((a) => a.kind)).toEqual(['lost-write']);
    }), { seed, numRuns: 100 });
  });
});
