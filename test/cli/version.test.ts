import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildProgram, packageVersion } from '../../src/cli/main.js';

describe('cloudmux --version', () => {
  it('is the version in package.json, not a copy', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(packageVersion()).toBe(pkg.version);
    expect(buildProgram().version()).toBe(pkg.version);
  });
});
