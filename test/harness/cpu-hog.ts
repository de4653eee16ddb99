import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { BlobStore, GetOptions, GetResult, ObjectMeta, PutOptions, SignalOptions, Body } from '../../src/core/index.js';
import { ForwardingStore } from '../../src/layers/forwarding-store.js';
import { seededRandom } from '../faults/random.js';

/**
 * Busy-loop child processes, to run health tests the way a loaded 2-core box runs them. Each
 * child ends on its own after `maxLifeMs` (so a crashed test leaves no hog behind for long) and
 * when its parent goes away.
 */
export function startCpuHogs(count = 2, maxLifeMs = 90_000): { stop(): Promise<void> } {
  const src = `const end = Date.now() + ${maxLifeMs}; const parent = process.ppid; let n = 0;
    while (Date.now() < end) { if ((++n & 0xfffff) === 0 && process.ppid !== parent) break; }`;
  const children: ChildProcess[] = Array.from({ length: count }, () => spawn(process.execPath, ['-e', src], { stdio: 'ignore' }));
  return {
    async stop() {
      await Promise.all(children.map((c) => new Promise<void>((resolve) => {
        if (c.exitCode !== null || c.signalCode !== null) return resolve();
        c.once('exit', () => resolve());
        c.kill('SIGKILL');
      })));
    },
  };
}

export interface LoopBlockerReport {
  seed: number;
  blocks: number;
  blockedMs: number;
  longestMs: number;
}

/**
 * Blocks this process's event loop in bursts (a synchronous busy loop of `blockMs`, then `gapMs`
 * of freedom), both drawn from a seeded PRNG: what a CPU-heavy neighbour in the same process
 * (hashing, JSON, GC) does to timers and sockets. With `everyNth`, every n-th block (the first
 * included) takes the longest `blockMs`.
 */
export function startLoopBlocker(opts: { seed: number; blockMs: [number, number]; gapMs: [number, number]; everyNth?: number }): { stop(): LoopBlockerReport } {
  const rnd = seededRandom(opts.seed);
  const between = ([lo, hi]: [number, number]): number => lo + rnd() * (hi - lo);
  const report: LoopBlockerReport = { seed: opts.seed, blocks: 0, blockedMs: 0, longestMs: 0 };
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const next = (): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      // Every `everyNth` block (the first included) is the longest allowed, so a short run is sure
      // to contain one: the seed varies the rest, not whether the case is exercised.
      const ms = opts.everyNth && report.blocks % opts.everyNth === 0 ? opts.blockMs[1] : between(opts.blockMs);
      busy(ms);
      report.blocks++;
      report.blockedMs += ms;
      report.longestMs = Math.max(report.longestMs, ms);
      next();
    }, between(opts.gapMs));
  };
  next();
  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      return { ...report, blockedMs: Math.round(report.blockedMs), longestMs: Math.round(report.longestMs) };
    },
  };
}

function busy(ms: number): void {
  const start = performance.now();
  while (performance.now() - start < ms) { /* busy */ }
}

/**
 * A store whose process stalls right after it issues a put, get or delete (on a seeded share of
 * them): the request goes out (or is about to) and the answer arrives while the event loop is
 * blocked for `stallMs`. A deadline timer that counts wall time fires before the answer is read.
 */
export class StallAfterSend extends ForwardingStore {
  protected readonly layerName = 'StallAfterSend';
  stalls = 0;
  private readonly rnd: () => number;

  constructor(inner: BlobStore, private readonly opts: { seed: number; share: number; stallMs: [number, number] }) {
    super(inner);
    this.rnd = seededRandom(opts.seed);
  }

  private stall<T>(p: Promise<T>): Promise<T> {
    if (this.rnd() < this.opts.share) {
      const [lo, hi] = this.opts.stallMs;
      const ms = lo + this.rnd() * (hi - lo);
      this.stalls++;
      setImmediate(() => busy(ms));
    }
    return p;
  }

  override put(key: string, body: Body, opts?: PutOptions): Promise<ObjectMeta> {
    return this.stall(super.put(key, body, opts));
  }

  override get(key: string, opts?: GetOptions): Promise<GetResult> {
    return this.stall(super.get(key, opts));
  }

  override delete(key: string, opts?: SignalOptions): Promise<void> {
    return this.stall(super.delete(key, opts));
  }
}

/** A TCP server that accepts connections and never answers: a provider that hangs. */
export async function startHungServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The seed for a seeded test: `envVar` when set (to replay a failure), else a fresh one. */
export function testSeed(envVar: string): number {
  const given = process.env[envVar];
  return given ? Number(given) : Math.floor(Math.random() * 2 ** 31);
}
