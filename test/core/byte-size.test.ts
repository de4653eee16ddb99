import { describe, expect, it } from 'vitest';
import { parseByteSize } from '../../src/core/byte-size.js';
import { parseSize, parseBwlimit } from '../../src/cli/commands/migrate.js';
import { UsageError } from '../../src/cli/errors.js';
import { BandwidthTimetable } from '../../src/layers/bandwidth-timetable.js';
import { InvalidArgumentError } from '../../src/core/errors.js';
import { sizeSchema } from '../../src/config/priority-schema.js';

const MiB = 1024 ** 2;

// One reading of "50M" everywhere a user types a size: migrate's size flags, --bwlimit rates
// (plain and in a timetable) and config sizes.
const ACCEPTED: [string, number][] = [
  ['512', 512],
  ['512B', 512],
  ['512k', 512 * 1024],
  ['512K', 512 * 1024],
  ['50M', 50 * MiB],
  ['50MB', 50 * MiB],
  ['50MiB', 50 * MiB],
  ['50mib', 50 * MiB],
  ['1.5G', 1.5 * 1024 ** 3],
  ['1.5GiB', 1.5 * 1024 ** 3],
  ['2T', 2 * 1024 ** 4],
  ['0.5K', 512],
];

const REJECTED = ['fast', '', '-1M', '1.5.5M', 'M', '10X', '10MiBs', '1e3', '99999999999T'];

describe('byte sizes: one parser for the CLI, --bwlimit and the config', () => {
  it.each(ACCEPTED)('%s means %d bytes in every place a size is read', (text, bytes) => {
    expect(parseByteSize(text)).toBe(bytes);
    expect(parseSize(text, '--part-size')).toBe(bytes);
    expect(sizeSchema.parse(text)).toBe(bytes);
    expect(BandwidthTimetable.parse(text).at(new Date()).up).toBe(bytes);
    expect(BandwidthTimetable.parse(`08:00,${text} 19:00,off`).slots[0]!.limit.down).toBe(bytes);
    expect(parseBwlimit(text)).toEqual({ bytesPerSecond: bytes });
  });

  it.each(REJECTED)('%j is refused everywhere, with an error naming the value', (text) => {
    expect(parseByteSize(text)).toBeUndefined();
    expect(() => parseSize(text, '--part-size')).toThrow(UsageError);
    expect(() => parseSize(text, '--part-size')).toThrow(`--part-size: expected a size such as 512K, 50M, 1.5GiB or a number of bytes, got ${JSON.stringify(text)}`);
    expect(sizeSchema.safeParse(text).success).toBe(false);
    if (text !== '') {
      expect(() => BandwidthTimetable.parse(`08:00,${text}`)).toThrow(InvalidArgumentError);
      expect(() => BandwidthTimetable.parse(`08:00,${text}`)).toThrow(`rate ${JSON.stringify(text)} is not a size such as 512K`);
      expect(() => parseBwlimit(`10M:${text}`)).toThrow(UsageError);
    }
  });

  it('zero is a size but not a rate or a part size', () => {
    expect(parseByteSize('0')).toBe(0);
    expect(sizeSchema.parse('0')).toBe(0);
    expect(() => parseSize('0', '--part-size')).toThrow('--part-size: must be positive, got "0"');
    expect(() => BandwidthTimetable.parse('0K')).toThrow(/must be above 0 \(use off for no limit\)/);
  });

  it('numbers in the config are bytes; fractional or negative numbers are refused', () => {
    expect(parseByteSize(4096)).toBe(4096);
    expect(parseByteSize(1.5)).toBeUndefined();
    expect(parseByteSize(-1)).toBeUndefined();
  });
});
