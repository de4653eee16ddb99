import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../providers/memory/index.js';
import { isCloudmuxError } from '../../src/core/index.js';
import { BandwidthTimetable, ScheduledTokenBucket } from '../../src/layers/bandwidth-timetable.js';
import { RateLimitStore } from '../../src/layers/rate-limit.js';
import { parseBwlimit } from '../../src/cli/commands/migrate.js';

const M = 1024 * 1024;
const at = (hhmm: string, day = 2): Date => {
  const [h, m] = hhmm.split(':').map(Number);
  return new Date(2026, 11, day, h, m, 0, 0);
};

describe('BandwidthTimetable', () => {
  it('parses a rate, off, and separate up/down limits', () => {
    expect(BandwidthTimetable.parse('10M').at(at('12:00'))).toEqual({ up: 10 * M, down: 10 * M });
    expect(BandwidthTimetable.parse('512K').constantSymmetric).toBe(512 * 1024);
    expect(BandwidthTimetable.parse('50MiB').constantSymmetric).toBe(50 * M);
    expect(BandwidthTimetable.parse('1000').constantSymmetric).toBe(1000);
    expect(BandwidthTimetable.parse('off').unlimited).toBe(true);
    expect(BandwidthTimetable.parse('10M:1M').at(at('00:00'))).toEqual({ up: 10 * M, down: M });
    expect(BandwidthTimetable.parse('off:1M').at(at('00:00'))).toEqual({ down: M });
    expect(BandwidthTimetable.parse('10M:1M').constantSymmetric).toBeUndefined();
  });

  it('a timetable: the last entry at or before the time holds; before the first, the evening before', () => {
    const t = BandwidthTimetable.parse(' 19:00,off   08:00,1M 12:30,10M:2M ');
    expect(t.slots.map((s) => s.minute)).toEqual([8 * 60, 12 * 60 + 30, 19 * 60]);
    expect(t.at(at('07:59'))).toEqual({});
    expect(t.at(at('08:00'))).toEqual({ up: M, down: M });
    expect(t.at(at('12:29'))).toEqual({ up: M, down: M });
    expect(t.at(at('12:30'))).toEqual({ up: 10 * M, down: 2 * M });
    expect(t.at(at('18:59'))).toEqual({ up: 10 * M, down: 2 * M });
    expect(t.at(at('19:00'))).toEqual({});
    expect(t.nextChange(at('18:00'))).toEqual(at('19:00'));
    expect(t.nextChange(at('20:00'))).toEqual(at('08:00', 3));
    expect(BandwidthTimetable.parse('1M').nextChange(at('08:00'))).toBeUndefined();
  });

  it.each([
    ['', 'is empty'],
    ['fast', 'rate "fast" is not a size'],
    ['0', 'must be above 0 (use off'],
    ['10M:1M:2M', "more than one ':'"],
    ['08:00,1M 19:00', 'entry "19:00" has no time'],
    ['8h,1M', 'time "8h" in entry "8h,1M" is not HH:MM'],
    ['Mon-08:00,1M', 'weekday entries'],
    ['24:00,1M', 'out of range'],
    ['08:00,1M 08:00,2M', 'appears twice'],
    ['08:00,1Q', 'rate "1Q" is not a size'],
  ])('refuses %j with a typed error saying why', (spec, why) => {
    let err: unknown;
    try {
      BandwidthTimetable.parse(spec);
    } catch (e) {
      err = e;
    }
    expect(isCloudmuxError(err, 'InvalidArgument')).toBe(true);
    expect((err as Error).message).toContain(why);
    // The CLI turns it into a usage error (exit 2) with the same words.
    expect(() => parseBwlimit(spec)).toThrow(why);
  });

  it('the CLI keeps a plain rate on the old path and hands a timetable on', () => {
    expect(parseBwlimit('50M')).toEqual({ bytesPerSecond: 50 * M });
    expect(parseBwlimit('off')).toEqual({});
    expect(String(parseBwlimit('08:00,1M 19:00,off').bwlimit)).toBe('08:00,1M 19:00,off');
  });
});

describe('ScheduledTokenBucket', () => {
  it('switches the limit in force at the window boundary (injected clock)', async () => {
    let now = new Date(2026, 11, 2, 18, 59, 59, 999);
    const t = BandwidthTimetable.parse('08:00,1M 19:00,off');
    const down = new ScheduledTokenBucket(t, 'down', { now: () => now });
    expect(down.rateNow()).toBe(M);
    await down.take(1024);
    expect(down.ratePerSec).toBe(M);
    now = new Date(2026, 11, 2, 19, 0, 0, 0);
    expect(down.rateNow()).toBeUndefined();
    // Off: a take far beyond any bucket passes at once (no wait could be scheduled for it).
    await down.take(1024 * M);
    now = new Date(2026, 11, 3, 8, 0, 0, 0);
    expect(down.rateNow()).toBe(M);
  });

  it('a take waiting at a low rate is released when the window switches to off (not after its wait at the old rate)', async () => {
    let now = new Date(2026, 11, 2, 18, 59);
    const up = new ScheduledTokenBucket(BandwidthTimetable.parse('08:00,1 19:00,off'), 'up', { now: () => now });
    await up.take(64 * 1024); // the initial burst
    let done = false;
    // 1000 bytes at 1 byte/s: 1000 s at the old rate (a hang here fails by the test timeout).
    const waiting = up.take(1000).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(done).toBe(false);
    now = new Date(2026, 11, 2, 19, 0);
    await waiting;
    expect(done).toBe(true);
  });

  it('up and down limits pace their own direction through RateLimitStore', async () => {
    const now = new Date(2026, 11, 2, 12, 0);
    const t = BandwidthTimetable.parse('off:1M');
    const up = new ScheduledTokenBucket(t, 'up', { now: () => now });
    const down = new ScheduledTokenBucket(t, 'down', { now: () => now });
    expect(up.rateNow()).toBeUndefined();
    expect(down.rateNow()).toBe(M);
    const store = new RateLimitStore(new MemoryStore(), { writeBytesPerSec: up, readBytesPerSec: down });
    // 8 MiB up at "off" would take 8 s at 1 MiB/s: it must not wait (a hang here fails by the test timeout).
    await store.put('big', new Uint8Array(8 * M));
    expect(String(store)).toContain('bwlimit "off:1M" down, bwlimit "off:1M" up');
  });
});
