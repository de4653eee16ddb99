import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isCloudmuxError } from '../../src/core/errors.js';
import { ClockDriftError, HybridClock, MAX_COUNTER, compareHlc, formatHlc, parseHlc, type HlcStamp } from '../../src/sync/hlc.js';
import { historySeed } from '../history/seed.js';

/** A physical clock the test moves (forwards or backwards). */
function manual(start: number): { now: () => number; set(t: number): void } {
  let t = start;
  return { now: () => t, set: (v) => void (t = v) };
}

const T0 = 1_764_000_000_000;

describe('hybrid logical clock', () => {
  it('stamps local events in order, also when the physical clock stands still or goes back', () => {
    const pc = manual(T0);
    const c = new HybridClock({ device: 'a', now: pc.now });
    const s1 = c.now();
    const s2 = c.now();
    pc.set(T0 - 10_000);
    const s3 = c.now();
    pc.set(T0 + 5);
    const s4 = c.now();
    expect([s1, s2, s3, s4]).toEqual([
      { wall: T0, counter: 0, device: 'a' }, { wall: T0, counter: 1, device: 'a' }, { wall: T0, counter: 2, device: 'a' }, { wall: T0 + 5, counter: 0, device: 'a' },
    ]);
  });

  it('a write made after reading a remote stamp is stamped after it, whatever the physical clocks say', () => {
    const slow = new HybridClock({ device: 'slow', now: () => T0 });
    const fast = new HybridClock({ device: 'fast', now: () => T0 + 60_000 });
    const written = fast.now();
    const after = slow.observe(formatHlc(written));
    expect(compareHlc(after, written)).toBe(1);
    expect(compareHlc(slow.now(), after)).toBe(1);
  });

  it('refuses a stamp further ahead than maxDriftMs and stays unchanged; admits says whether a stamp is trusted', () => {
    const c = new HybridClock({ device: 'a', now: () => T0, maxDriftMs: 1000 });
    const before = c.now();
    const liar: HlcStamp = { wall: T0 + 1001, counter: 0, device: 'wrong-clock' };
    expect(c.admits(liar)).toBe(false);
    const err = (() => { try { c.observe(liar); } catch (e) { return e; } })();
    expect(err).toBeInstanceOf(ClockDriftError);
    expect(isCloudmuxError(err, 'InvalidArgument')).toBe(true);
    expect((err as ClockDriftError).aheadMs).toBe(1001);
    expect(c.last()).toEqual(before);
    const near: HlcStamp = { wall: T0 + 1000, counter: 7, device: 'b' };
    expect(c.admits(near)).toBe(true);
    expect(c.observe(near)).toEqual({ wall: T0 + 1000, counter: 8, device: 'a' });
  });

  it('resumes after a restart from the persisted last stamp, even with the physical clock set back', () => {
    const first = new HybridClock({ device: 'a', now: () => T0 });
    first.now();
    const last = formatHlc(first.now());
    const again = new HybridClock({ device: 'a', now: () => T0 - 3_600_000, last });
    expect(compareHlc(again.now(), parseHlc(last))).toBe(1);
  });

  it('moves wall on by 1 ms instead of overflowing the counter', () => {
    const c = new HybridClock({ device: 'a', now: () => T0, last: { wall: T0, counter: MAX_COUNTER, device: 'a' } });
    expect(c.now()).toEqual({ wall: T0 + 1, counter: 0, device: 'a' });
  });

  it('string form: fixed width, sorts as compareHlc, ties broken by device id; bad input is InvalidArgument', () => {
    const s = { wall: 0x18c3f2a9b10, counter: 3, device: 'laptop' };
    expect(formatHlc(s)).toBe('018c3f2a9b10-000003-laptop');
    expect(parseHlc(formatHlc(s))).toEqual(s);
    expect(compareHlc({ ...s, device: 'a' }, { ...s, device: 'b' })).toBe(-1);
    for (const bad of ['', 'x', '018c3f2a9b10-000003-', '018C3F2A9B10-000003-a', '018c3f2a9b10-000003-a b', '18c3f2a9b10-000003-a']) {
      expect(isCloudmuxError((() => { try { parseHlc(bad); } catch (e) { return e; } })(), 'InvalidArgument'), bad).toBe(true);
    }
    expect(() => new HybridClock({ device: 'bad device' })).toThrow(/device id/);
    expect(() => formatHlc({ wall: -1, counter: 0, device: 'a' })).toThrow(/not a clock stamp/);
  });

  // Properties: any interleaving of local events, receives and physical clock moves (forwards,
  // backwards, within and beyond the drift bound) on three devices.
  const stampArb = fc.record({ wall: fc.integer({ min: 0, max: 2 ** 40 }), counter: fc.integer({ min: 0, max: MAX_COUNTER }), device: fc.constantFrom('a', 'b', 'c', 'a.b', 'Z-9') });
  const step = fc.oneof(
    fc.record({ op: fc.constant('now' as const), dev: fc.nat(2) }),
    fc.record({ op: fc.constant('send' as const), from: fc.nat(2), to: fc.nat(2) }),
    fc.record({ op: fc.constant('tick' as const), dev: fc.nat(2), by: fc.integer({ min: -5000, max: 5000 }) }),
  );

  it('property: stamps are monotonic per device, causality is preserved, and wall never runs past the highest physical time seen + maxDrift', () => {
    fc.assert(fc.property(fc.array(step, { maxLength: 200 }), (steps) => {
      const drift = 2000;
      const pcs = [manual(T0), manual(T0 + 1500), manual(T0 - 3000)];
      const clocks = pcs.map((pc, i) => new HybridClock({ device: ['a', 'b', 'c'][i]!, now: pc.now, maxDriftMs: drift }));
      const lastOf = clocks.map((): HlcStamp | undefined => undefined);
      // A physical clock set back cannot pull wall back: the bound is against the highest time seen.
      const highest = pcs.map((pc) => pc.now());
      const issue = (i: number, s: HlcStamp): void => {
        if (lastOf[i]) expect(compareHlc(s, lastOf[i]!)).toBe(1);
        expect(s.wall - highest[i]!).toBeLessThanOrEqual(drift);
        lastOf[i] = s;
      };
      for (const st of steps) {
        if (st.op === 'now') issue(st.dev, clocks[st.dev]!.now());
        else if (st.op === 'tick') {
          pcs[st.dev]!.set(Math.max(0, pcs[st.dev]!.now() + st.by));
          highest[st.dev] = Math.max(highest[st.dev]!, pcs[st.dev]!.now());
        }
        else {
          const sent = clocks[st.from]!.now();
          issue(st.from, sent);
          let got: HlcStamp;
          try {
            got = clocks[st.to]!.observe(sent);
          } catch (e) {
            expect(e).toBeInstanceOf(ClockDriftError);
            expect(sent.wall - pcs[st.to]!.now()).toBeGreaterThan(drift);
            continue;
          }
          expect(compareHlc(got, sent)).toBe(1);
          issue(st.to, got);
        }
      }
    }), { seed: historySeed('hlc-properties'), numRuns: 300 });
  });

  it('property: the string form round-trips and its order is compareHlc', () => {
    fc.assert(fc.property(stampArb, stampArb, (x, y) => {
      expect(parseHlc(formatHlc(x))).toEqual(x);
      const byString = formatHlc(x) < formatHlc(y) ? -1 : formatHlc(x) > formatHlc(y) ? 1 : 0;
      expect(byString).toBe(compareHlc(x, y));
    }), { seed: historySeed('hlc-format'), numRuns: 1000 });
  });
});
