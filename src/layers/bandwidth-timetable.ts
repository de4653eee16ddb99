import { BYTE_SIZE_EXAMPLES, parseByteSize } from '../core/byte-size.js';
import { InvalidArgumentError } from '../core/errors.js';
import { TokenBucket } from './token-bucket.js';

/** Bytes per second each way; `undefined`: no limit that way. */
export interface BandwidthLimit {
  /** Upload: bytes written to the destination. */
  up?: number;
  /** Download: bytes read from the source. */
  down?: number;
}

/** One entry of a timetable: from `minute` (of the day, local time) on, `limit` holds. */
export interface BandwidthSlot {
  minute: number;
  limit: BandwidthLimit;
}

/**
 * `--bwlimit` as rclone takes it: a rate (`10M`), `off`, separate upload and download rates
 * (`10M:1M`, either side may be `off`), or a timetable of `HH:MM,RATE` entries separated by spaces
 * (`"08:00,1M 19:00,off"`). Rates are bytes per second with binary suffixes K, M, G, T (`50M`,
 * `50MiB`, `50MB` alike; a bare number is bytes, as cloudmux's --bwlimit always took it, where rclone
 * reads KiB). Times are local. The entry in force at a time is the last one
 * that started at or before it on that day; before the first entry of the day, the day's last
 * entry (from the evening before) holds.
 *
 * Parsing never half-succeeds: bad input throws InvalidArgument naming the entry and what was expected.
 */
export class BandwidthTimetable {
  private constructor(readonly slots: readonly BandwidthSlot[], private readonly spec: string) {}

  /** A timetable with one limit all day. */
  static constant(limit: BandwidthLimit): BandwidthTimetable {
    return new BandwidthTimetable([{ minute: 0, limit }], formatLimit(limit));
  }

  static parse(spec: string): BandwidthTimetable {
    const text = spec.trim();
    if (text === '') throw bad(spec, 'is empty; expected a rate such as 10M, off, 10M:1M, or a timetable such as "08:00,1M 19:00,off"');
    const tokens = text.split(/\s+/);
    if (tokens.length === 1 && !tokens[0]!.includes(',')) return new BandwidthTimetable([{ minute: 0, limit: parseLimit(tokens[0]!, spec) }], text);
    const slots: BandwidthSlot[] = [];
    for (const token of tokens) {
      const comma = token.indexOf(',');
      if (comma < 0) throw bad(spec, `entry ${JSON.stringify(token)} has no time; expected HH:MM,RATE (e.g. 08:00,1M)`);
      const time = token.slice(0, comma);
      const m = /^(\d{1,2}):(\d{2})$/.exec(time);
      if (!m) {
        const hint = /^[A-Za-z]{3}-/.test(time) ? ' (weekday entries such as Mon-08:00 are not supported yet)' : '';
        throw bad(spec, `time ${JSON.stringify(time)} in entry ${JSON.stringify(token)} is not HH:MM${hint}`);
      }
      const hours = Number(m[1]);
      const minutes = Number(m[2]);
      if (hours > 23 || minutes > 59) throw bad(spec, `time ${JSON.stringify(time)} is out of range 00:00–23:59`);
      const minute = hours * 60 + minutes;
      if (slots.some((s) => s.minute === minute)) throw bad(spec, `time ${time} appears twice`);
      slots.push({ minute, limit: parseLimit(token.slice(comma + 1), spec) });
    }
    slots.sort((a, b) => a.minute - b.minute);
    return new BandwidthTimetable(slots, text);
  }

  /** The limit in force at `when` (local time). */
  at(when: Date): BandwidthLimit {
    return this.slotAt(when).limit;
  }

  /** When the limit in force at `when` next changes (undefined: never). */
  nextChange(when: Date): Date | undefined {
    if (this.slots.length < 2) return undefined;
    const minute = when.getHours() * 60 + when.getMinutes();
    const next = this.slots.find((s) => s.minute > minute) ?? this.slots[0]!;
    const d = new Date(when);
    d.setHours(Math.floor(next.minute / 60), next.minute % 60, 0, 0);
    if (d.getTime() <= when.getTime()) d.setDate(d.getDate() + 1);
    return d;
  }

  /** True when no entry limits anything. */
  get unlimited(): boolean {
    return this.slots.every((s) => s.limit.up === undefined && s.limit.down === undefined);
  }

  /** A single all-day limit, the same both ways (what a plain `--bwlimit 10M` gives), else undefined. */
  get constantSymmetric(): number | undefined {
    if (this.slots.length !== 1) return undefined;
    const { up, down } = this.slots[0]!.limit;
    return up !== undefined && up === down ? up : undefined;
  }

  toString(): string {
    return this.spec;
  }

  private slotAt(when: Date): BandwidthSlot {
    const minute = when.getHours() * 60 + when.getMinutes();
    let found = this.slots[this.slots.length - 1]!;
    for (const s of this.slots) if (s.minute <= minute) found = s;
    return found;
  }
}

function bad(spec: string, why: string): Error {
  return new InvalidArgumentError(`bandwidth limit ${JSON.stringify(spec)}: ${why}`);
}

function parseLimit(text: string, spec: string): BandwidthLimit {
  const parts = text.split(':');
  if (parts.length > 2) throw bad(spec, `rate ${JSON.stringify(text)} has more than one ':'; expected RATE or UP:DOWN`);
  const up = parseRate(parts[0]!, spec);
  const down = parts.length === 2 ? parseRate(parts[1]!, spec) : up;
  const limit: BandwidthLimit = {};
  if (up !== undefined) limit.up = up;
  if (down !== undefined) limit.down = down;
  return limit;
}

/** `1M` → 1048576 bytes/s; `off` → undefined. */
function parseRate(text: string, spec: string): number | undefined {
  if (text.toLowerCase() === 'off') return undefined;
  const n = parseByteSize(text);
  if (n === undefined) throw bad(spec, `rate ${JSON.stringify(text)} is not ${BYTE_SIZE_EXAMPLES}, nor off`);
  if (!(n > 0)) throw bad(spec, `rate ${JSON.stringify(text)} must be above 0 (use off for no limit)`);
  return n;
}

function formatLimit(l: BandwidthLimit): string {
  const f = (n: number | undefined): string => (n === undefined ? 'off' : `${n}B`);
  return l.up === l.down ? f(l.up) : `${f(l.up)}:${f(l.down)}`;
}

/**
 * A token bucket whose rate follows a timetable: before each grant it looks up the limit in force
 * (on `now`, injectable for tests) and switches its rate at the window boundary, and a take
 * already waiting looks again at least every second; while the timetable says `off`, takes pass at once.
 */
export class ScheduledTokenBucket extends TokenBucket {
  private readonly now: () => Date;

  constructor(readonly timetable: BandwidthTimetable, readonly direction: 'up' | 'down', opts: { now?: () => Date } = {}) {
    // The rate is replaced at the first take; 1 B/s is a placeholder the constructor demands.
    super({ ratePerSec: 1, capacity: 64 * 1024 });
    this.now = opts.now ?? (() => new Date());
  }

  /** Bytes per second in force now (undefined: no limit). */
  rateNow(): number | undefined {
    return this.timetable.at(this.now())[this.direction];
  }

  override describeRate(unit: string): string {
    return `bwlimit "${String(this.timetable)}" ${this.direction}${unit.includes('B/s') ? '' : unit}`;
  }

  /** A take waiting when a window switches sees the new limit within a second (not after its wait at the old rate). */
  protected override readonly longestWaitMs = 1000;

  protected override limitNow(): boolean {
    const rate = this.rateNow();
    if (rate === undefined) return false;
    if (rate !== this.ratePerSec) this.setRate(rate, Math.max(64 * 1024, rate / 10));
    return true;
  }

  override take(n: number, signal?: AbortSignal): Promise<void> {
    // Off: pass at once, without queueing behind takes made under a limit.
    if (this.rateNow() === undefined) return Promise.resolve();
    return super.take(n, signal);
  }
}
