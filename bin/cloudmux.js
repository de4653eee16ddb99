#!/usr/bin/env node
// The `cloudmux` command as package.json's `bin`. In a clone (src/ present, tsx installed as a dev
// dependency) it runs the TypeScript sources, so `npx cloudmux` works after `npm ci` without a
// build and never runs a stale dist/; an installed package ships only dist/ and runs that.
import { existsSync } from 'node:fs';
import process from 'node:process';
import { URL } from 'node:url';

const sources = new URL('../src/cli/bin.ts', import.meta.url);
const built = new URL('../dist/src/cli/bin.js', import.meta.url);

async function tsxRegister() {
  try {
    return (await import('tsx/esm/api')).register;
  } catch {
    return undefined;
  }
}

const register = existsSync(sources) ? await tsxRegister() : undefined;
if (register) {
  register();
  await import(sources.href);
} else if (existsSync(built)) {
  await import(built.href);
} else {
  process.stderr.write('cloudmux: neither dist/ nor the TypeScript sources with tsx are here; run `npm ci` (and `npm run build` to use dist/)\n');
  process.exitCode = 1;
}
