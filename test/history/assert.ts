import { expect } from 'vitest';
import { formatReport, violationKinds, type RunReport } from './cluster.js';
import { replayHint } from './seed.js';

/** Prints a run's report (seed and replay command included) and fails the test on any violation. */
export function expectNoViolations(report: RunReport, caseName: string): void {
  const text = formatReport(report, replayHint(caseName));
  console.log(text);
  expect(violationKinds(report), text).toEqual([]);
}
