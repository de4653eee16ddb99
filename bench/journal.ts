/**
 * CPU the migration journal costs per object, recorded the way `migrate` records a small object
 * copied in one request: `copying` before the copy, `verified` after it, the cursor moved past it
 * once settled; `concurrency` objects in flight, each "copy" one turn of the event loop (so timed
 * flushes get to run as they would between real requests). The same loop without a journal is
 * measured too and subtracted, so the figure is the journal's own. `--in-calls` also adds up the CPU
 * spent inside the journal's calls and its timed commits, which is steadier when copies are paced
 * (the clock readings it takes then inflate the first figure by a few µs).
 *
 *   npx tsx bench/journal.ts [objects=20000] [concurrency=16] [--delete-source] [--rounds=3] [--copy-ms=0] [--flush-ms=N] [--in-calls]
 *
 * `--flush-ms=N` overrides the journal's commit interval. `--copy-ms=N` makes each copy take N ms of wall time instead of one turn of the event loop, so
 * that objects settle at a migration's pace (16 in flight at 40 ms each: 400 objects/s) and the
 * journal's timed commits carry as few records as they would in a real run.
 * `--delete-source` also waits for the verified record to be durable before each (pretend) source
 * delete and records the delete, as `migrate --delete-source` does. A second phase times the
 * look-ups of a resumed run over the same keys (each found verified, nothing written).
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MigrationJournal } from '../src/replication/journal.js';

const args = process.argv.slice(2);
const positional = args.filter((a) => !a.startsWith('--'));
const count = Number(positional[0] ?? 20_000);
const concurrency = Number(positional[1] ?? 16);
const deleteSource = args.includes('--delete-source');
const flag = (name: string, dflt: number): number => Number(args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt);
const rounds = flag('rounds', 3);
const copyMs = flag('copy-ms', 0);
const inCallsWanted = args.includes('--in-calls');
const flushMs = args.some((a) => a.startsWith('--flush-ms=')) ? { flushMs: flag('flush-ms', 20) } : {};

const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
const keys = Array.from({ length: count }, (_, i) => `data/${String(Math.floor(i / 1000)).padStart(3, '0')}/object-${String(i).padStart(7, '0')}.bin`);
const etag = (i: number): string => `"${(i * 2654435761 >>> 0).toString(16).padStart(8, '0')}c0ffee"`;
const sha = (i: number): string => (i * 2654435761 >>> 0).toString(16).padStart(8, '0').repeat(8);

type Durable = { durable?(): Promise<void> };

/** Runs `count` objects through `each`, `concurrency` at a time, settling the cursor in key order. */
async function drive(j: MigrationJournal | undefined, each: (i: number) => Promise<void>): Promise<void> {
  const settled: boolean[] = new Array<boolean>(count).fill(false);
  let head = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      await each(i);
      settled[i] = true;
      let last: number | undefined;
      while (head < count && settled[head]) last = head++;
      if (last !== undefined) j?.setCursor(keys[last]!);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

function copyOne(j: MigrationJournal | undefined): (i: number) => Promise<void> {
  return async (i) => {
    const key = keys[i]!;
    j?.copying(key, 4096, etag(i));
    await (copyMs > 0 ? new Promise((r) => setTimeout(r, copyMs)) : turn()); // the copy
    j?.verified(key, { size: 4096, srcEtag: etag(i), dstEtag: `0x8DC${i.toString(16)}`, sha256: sha(i), verifiedBy: 'sha256', copied: true });
    if (deleteSource) {
      await (j as Durable | undefined)?.durable?.();
      await turn(); // the source delete
      j?.sourceDeleted(key, etag(i));
    }
  };
}

function lookUpOne(j: MigrationJournal | undefined): (i: number) => Promise<void> {
  return async (i) => {
    const known = j?.lookup(keys[i]!);
    if (j && known?.state !== (deleteSource ? 'source-deleted' : 'verified')) throw new Error(`${keys[i]} not recorded: ${JSON.stringify(known)}`);
    await turn();
  };
}

/**
 * Wraps the journal's methods to add up the CPU spent inside them (outermost call only, so a
 * commit made inside `verified` is not counted twice; `flush` also catches the timed commits).
 * Less noisy than the difference of two whole loops when objects arrive at a migration's pace.
 */
function instrument(j: MigrationJournal): { ms(): number } {
  let depth = 0;
  let total = 0;
  let calls = 0;
  const target = j as unknown as Record<string, (...a: unknown[]) => unknown>;
  for (const name of ['copying', 'verified', 'failed', 'sourceDeleted', 'setCursor', 'passComplete', 'lookup', 'flush', 'durable', 'finishRun']) {
    const original = target[name];
    if (typeof original !== 'function') continue;
    target[name] = function (this: unknown, ...a: unknown[]) {
      if (depth > 0) return original.apply(this, a);
      depth++;
      calls++;
      const c0 = cpuMs();
      try {
        return original.apply(this, a);
      } finally {
        total += cpuMs() - c0;
        depth--;
      }
    };
  }
  // What reading the clock twice costs, charged to every call above.
  const c0 = cpuMs();
  for (let i = 0; i < 20_000; i++) cpuMs();
  const clock = (cpuMs() - c0) / 20_000;
  return { ms: () => total - calls * clock };
}

async function measure(phase: (j: MigrationJournal | undefined) => (i: number) => Promise<void>, j: MigrationJournal | undefined): Promise<number> {
  const c0 = cpuMs();
  await drive(j, phase(j));
  return cpuMs() - c0;
}

const results: { copy: number; inCalls: number; lookup: number; bytes: number }[] = [];
for (let round = 0; round < rounds; round++) {
  const dir = mkdtempSync(join(tmpdir(), 'bench-journal-'));
  try {
    const path = join(dir, 'journal.sqlite');
    const bareCopy = await measure(copyOne, undefined);
    let j = MigrationJournal.open(path, { src: 's3://bench/src', dst: 'az://bench/dst' }, '', flushMs);
    const inCalls = inCallsWanted ? instrument(j) : { ms: () => NaN };
    const c0 = cpuMs();
    await drive(j, copyOne(j));
    j.passComplete();
    j.finishRun('complete', { copied: count });
    const withCopy = cpuMs() - c0;
    j.close();
    const bytes = statSync(path).size + (statSync(`${path}-wal`, { throwIfNoEntry: false })?.size ?? 0);
    const bareLookup = await measure(lookUpOne, undefined);
    j = MigrationJournal.open(path, { src: 's3://bench/src', dst: 'az://bench/dst' });
    const withLookup = await measure(lookUpOne, j);
    j.finishRun('complete', {});
    j.close();
    results.push({ copy: withCopy - bareCopy, inCalls: inCalls.ms(), lookup: withLookup - bareLookup, bytes });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const us = (ms: number): string => `${((ms / count) * 1000).toFixed(1)} µs`;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`journal: ${count} objects, concurrency ${concurrency}${copyMs ? `, ${copyMs} ms per copy` : ''}${deleteSource ? ', delete-source' : ''}, ${rounds} rounds, node ${process.versions.node}`);
console.log(`  record (copying + verified + cursor${deleteSource ? ' + durable + source-deleted' : ''}): ${us(median(results.map((r) => r.copy)))} CPU per object (rounds: ${results.map((r) => us(r.copy)).join(', ')})`);
if (inCallsWanted) console.log(`    of which inside journal calls and commits: ${us(median(results.map((r) => r.inCalls)))} (rounds: ${results.map((r) => us(r.inCalls)).join(', ')})`);
console.log(`  resumed run's look-up: ${us(median(results.map((r) => r.lookup)))} CPU per object (rounds: ${results.map((r) => us(r.lookup)).join(', ')})`);
console.log(`  journal size: ${(median(results.map((r) => r.bytes)) / count).toFixed(0)} bytes per object (db + wal)`);
