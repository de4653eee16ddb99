import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, decodeMetadataValue, encodeMetadataValue, userMetadata, validateMetadata } from '../../src/core/index.js';
import { systemMetadata } from '../../src/core/system-metadata.js';

describe('portable metadata', () => {
  it('accepts C#-identifier-safe lower-case names and printable ASCII values', () => {
    expect(() => validateMetadata({ a: '', owner_team: 'x y', n1: '~!@#' })).not.toThrow();
  });

  it('rejects names Azure or S3 would refuse or rewrite', () => {
    for (const name of ['Owner', 'has-hyphen', '1x', '_x', 'a.b', '']) {
      expect(() => validateMetadata({ [name]: 'v' }), name).toThrow(InvalidArgumentError);
    }
  });

  it('rejects non-ASCII and control characters in values, pointing at the encoder', () => {
    expect(() => validateMetadata({ a: 'naïve' })).toThrow(/encodeMetadataValue/);
    expect(() => validateMetadata({ a: 'x\ny' })).toThrow(InvalidArgumentError);
  });

  it('caps user metadata so cloudmux keys always fit in 2 KiB', () => {
    expect(() => validateMetadata({ big: 'x'.repeat(1400) })).not.toThrow();
    expect(() => validateMetadata({ big: 'x'.repeat(1410) })).toThrow(/bytes/);
    expect(() => validateMetadata(systemMetadata({ big: 'x'.repeat(1400), cloudmux_x: 'y'.repeat(700) }))).toThrow(/2048/);
    // From a caller, reserved names are refused whatever their size.
    expect(() => validateMetadata({ cloudmux_x: 'y' })).toThrow(/reserved/);
  });

  it('encodes any string as a portable value and back (RFC 2047 form)', () => {
    for (const v of ['plain', 'naïve café', '日本語', 'line\nbreak', '=?utf-8?b?abc?=', '']) {
      const enc = encodeMetadataValue(v);
      expect(() => validateMetadata({ v: enc })).not.toThrow();
      expect(decodeMetadataValue(enc)).toBe(v);
    }
    expect(encodeMetadataValue('plain')).toBe('plain');
  });

  it('separates user metadata from cloudmux keys', () => {
    expect(userMetadata({ a: '1', cloudmux_sha256: 'x' })).toEqual({ a: '1' });
  });
});
