import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { RunningClock } from '../../src/core/running-clock.js';

function busy(ms: number): void {
  const start = performance.now();
  while (performance.now() - start < ms) { /* busy */ }
}

describe('RunningClock', () => {
  it('an answer that arrives while the process is stalled past the deadline wins (a wall-clock timer would not)', async () => {
    const clock = new RunningClock();
    let expired = false;
    const d = clock.deadline(100, () => (expired = true));
    // A plain setTimeout deadline armed next to it: Node runs it first after the stall.
    let wallExpired = false;
    const wall = setTimeout(() => (wallExpired = true), 100);
    const answered = new Promise<void>((resolve) => setTimeout(() => resolve(), 150));
    busy(300);
    await answered;
    const span = d.cancel();
    clearTimeout(wall);
    expect(wallExpired).toBe(true);
    expect(expired).toBe(false);
    expect(span.stalledMs).toBeGreaterThanOrEqual(200);
    expect(span.runningMs).toBeLessThan(100);
  });

  it('a silence expires after the deadline in running time, not starved', async () => {
    const clock = new RunningClock();
    const e = await new Promise<{ runningMs: number; starved: boolean }>((resolve) => clock.deadline(50, resolve));
    expect(e.starved).toBe(false);
    expect(e.runningMs).toBeGreaterThanOrEqual(50);
  });

  it('gives up at maxWallMs as starved when the process barely ran', async () => {
    const clock = new RunningClock();
    const blocker = setInterval(() => busy(100), 1);
    try {
      const e = await new Promise<{ runningMs: number; wallMs: number; starved: boolean }>((resolve) => clock.deadline(200, resolve, { maxWallMs: 400 }));
      expect(e.starved).toBe(true);
      expect(e.wallMs).toBeGreaterThanOrEqual(400);
      expect(e.runningMs).toBeLessThan(200);
    } finally {
      clearInterval(blocker);
    }
  });

  it('a stopwatch leaves out a synchronous block', async () => {
    const clock = new RunningClock();
    const w = clock.stopwatch();
    busy(150);
    await sleep(30);
    const span = w.stop();
    expect(span.wallMs).toBeGreaterThanOrEqual(150);
    expect(span.stalledMs).toBeGreaterThanOrEqual(100);
    expect(w.stop()).toBe(span);
  });
});
