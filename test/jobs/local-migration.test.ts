import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { migrate } from '../../src/replication/migrate.js';
import { migrationCases } from './migration-cases.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

migrationCases('local run, SQLite journal', async () => {
  const d = mkdtempSync(join(tmpdir(), 'cloudmux-local-cases-'));
  dirs.push(d);
  const journal = join(d, 'journal.sqlite');
  return { run: (src, dst, opts = {}) => migrate(src, dst, { ...opts, journal, preflight: false, concurrency: 4 }) };
});
