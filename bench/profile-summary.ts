/**
 * Summarises a V8 CPU profile (`node --cpu-prof`): self time by function and by package or source
 * folder, the largest first.
 *
 *   npx tsx bench/profile-summary.ts FILE.cpuprofile [top=30]
 */
import { readFileSync } from 'node:fs';

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount: number; children?: number[] }
interface Profile { nodes: Node[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] }

const [file, topArg] = process.argv.slice(2);
if (!file) {
  console.error('usage: npx tsx bench/profile-summary.ts FILE.cpuprofile [top=30]');
  process.exit(2);
}
const top = Number(topArg ?? 30);
const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const selfMs = new Map<number, number>();
for (let i = 0; i < p.samples.length; i++) selfMs.set(p.samples[i]!, (selfMs.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0) / 1000);
const total = (p.endTime - p.startTime) / 1000;

const where = (url: string): string => {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1]!;
  const s = /\/(src|providers|bench)\/(.*?)\/?[^/]*$/.exec(url);
  if (s) return `${s[1]}/${s[2]}`;
  return url === '' ? '(native)' : url.startsWith('node:') ? url : url.replace(/^.*\//, '');
};
const fns = new Map<string, number>();
const groups = new Map<string, number>();
for (const [id, ms] of selfMs) {
  const n = byId.get(id)!;
  const f = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*\/(node_modules|src|providers)\//, '$1/')}:${n.callFrame.lineNumber + 1}`;
  fns.set(f, (fns.get(f) ?? 0) + ms);
  const g = where(n.callFrame.url);
  groups.set(g, (groups.get(g) ?? 0) + ms);
}
const show = (title: string, m: Map<string, number>): void => {
  console.log(`\n${title}`);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${v.toFixed(0).padStart(8)} ms ${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`);
};
console.log(`profile: ${total.toFixed(0)} ms`);
show('self time by package or folder', groups);
show('self time by function', fns);
