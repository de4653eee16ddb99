/**
 * `npm run bench [name…]`: runs every benchmark in bench/ (or the named ones) one after another,
 * each in its own process so peak-RSS figures are its own. Each prints its baseline, its result
 * and the ratio.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const wanted = process.argv.slice(2);
const all = readdirSync(here)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts' && !f.startsWith('lib'))
  .sort();
const chosen = wanted.length ? all.filter((f) => wanted.some((w) => f.includes(w))) : all;
if (chosen.length === 0) {
  console.error(`no benchmark matches ${wanted.join(' ')}; have: ${all.join(', ')}`);
  process.exit(2);
}
let failed = 0;
for (const file of chosen) {
  console.log(`\n### ${file}`);
  const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', join(here, file)], {
    stdio: 'inherit',
    env: { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --openssl-legacy-provider`.trim() },
  });
  if (r.status !== 0) {
    failed++;
    console.log(`### ${file} failed (exit ${r.status ?? r.signal})`);
  }
}
process.exit(failed ? 1 : 0);
