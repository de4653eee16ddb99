import { describe, expect, it } from 'vitest';
import { mapAzureError } from '../../providers/azure/errors.js';
import { mapGcsError } from '../../providers/gcs/errors.js';
import { mapS3Error } from '../../providers/s3/errors.js';
import {
  CloudmuxError, ERROR_SEMANTICS, TransientError, countsAgainstBreaker, countsAgainstHealth, describeError, isCallerFault, mayTryOtherReplica,
  type ErrorCode, type OpClass,
} from '../../src/core/errors.js';
import { HealthTracker } from '../../src/router/health-tracker.js';

const OPS: OpClass[] = ['read', 'write', 'delete', 'list'];

/**
 * The decisions, written out once more as the reader of the issue would state them, so that a
 * change to the table is a change to this list too.
 */
const RULES: { code: ErrorCode; caller: OpClass[]; retryable: boolean; health: OpClass[]; breaker: OpClass[]; otherReplica: boolean }[] = [
  { code: 'NotFound', caller: OPS, retryable: false, health: [], breaker: [], otherReplica: true },
  { code: 'PreconditionFailed', caller: OPS, retryable: false, health: [], breaker: [], otherReplica: false },
  { code: 'NotModified', caller: OPS, retryable: false, health: [], breaker: [], otherReplica: false },
  { code: 'AlreadyExists', caller: OPS, retryable: false, health: [], breaker: [], otherReplica: false },
  { code: 'InvalidKey', caller: OPS, retryable: false, health: [], breaker: [], otherReplica: false },
  { code: 'InvalidArgument', caller: OPS, retryable: false, health: [], breaker: [], otherReplica: false },
  { code: 'InvalidRange', caller: OPS, retryable: false, health: [], breaker: [], otherReplica: false },
  { code: 'NotSupported', caller: OPS, retryable: false, health: [], breaker: [], otherReplica: true },
  { code: 'Aborted', caller: OPS, retryable: false, health: [], breaker: [], otherReplica: false },
  { code: 'InvalidConfig', caller: [], retryable: false, health: OPS, breaker: OPS, otherReplica: true },
  { code: 'AuthFailed', caller: [], retryable: false, health: OPS, breaker: OPS, otherReplica: true },
  { code: 'AccessDenied', caller: [], retryable: false, health: OPS, breaker: OPS, otherReplica: true },
  { code: 'Throttled', caller: [], retryable: true, health: OPS, breaker: OPS, otherReplica: true },
  { code: 'Transient', caller: [], retryable: true, health: OPS, breaker: OPS, otherReplica: true },
  { code: 'ProviderUnavailable', caller: [], retryable: false, health: OPS, breaker: [], otherReplica: true },
  // A provider serving bad bytes is its fault; a write whose body does not match `expect` is the caller's.
  { code: 'IntegrityError', caller: ['write', 'delete', 'list'], retryable: false, health: ['read'], breaker: ['read'], otherReplica: true },
  { code: 'ProviderError', caller: [], retryable: false, health: OPS, breaker: OPS, otherReplica: true },
];

describe('the error table (src/core/errors.ts)', () => {
  it('has a rule for every code and nothing else', () => {
    expect(Object.keys(ERROR_SEMANTICS).sort()).toEqual(RULES.map((r) => r.code).sort());
  });

  for (const rule of RULES) {
    it(`${rule.code}: caller's fault on [${rule.caller.join(',')}], ${rule.retryable ? '' : 'not '}retryable, health on [${rule.health.join(',')}], breaker on [${rule.breaker.join(',')}], ${rule.otherReplica ? 'tries' : 'does not try'} another replica`, () => {
      const e = new CloudmuxError(rule.code, 'x');
      expect(e.retryable).toBe(rule.retryable);
      expect(mayTryOtherReplica(e)).toBe(rule.otherReplica);
      for (const op of OPS) {
        expect(isCallerFault(e, op), `callerFault on ${op}`).toBe(rule.caller.includes(op));
        expect(countsAgainstHealth(e, op), `health on ${op}`).toBe(rule.health.includes(op));
        expect(countsAgainstBreaker(e, op), `breaker on ${op}`).toBe(rule.breaker.includes(op));
      }
    });
  }

  it('anything that is not a CloudmuxError is the provider\'s failure', () => {
    const e = new Error('boom');
    for (const op of OPS) {
      expect(isCallerFault(e, op)).toBe(false);
      expect(countsAgainstHealth(e, op)).toBe(true);
      expect(countsAgainstBreaker(e, op)).toBe(true);
    }
    expect(mayTryOtherReplica(e)).toBe(true);
  });

  it('the health tracker reads the table: a corrupt read hurts health, a write\'s IntegrityError and a NotFound do not', () => {
    const h = new HealthTracker(['a', 'b', 'c'], { minRequests: 2, downErrorRate: 0.5 });
    for (let i = 0; i < 4; i++) h.record('a', 1, new CloudmuxError('IntegrityError', 'flipped byte'), 'read');
    for (let i = 0; i < 4; i++) h.record('b', 1, new CloudmuxError('IntegrityError', 'body differs from expect'), 'write');
    for (let i = 0; i < 4; i++) h.record('c', 1, new CloudmuxError('NotFound', 'no'), 'read');
    expect(h.health('a')!.state).toBe('down');
    expect(h.health('b')!.state).toBe('healthy');
    expect(h.health('c')!.state).toBe('healthy');
  });
});

describe('describeError: one line for any error', () => {
  it.each([
    [new CloudmuxError('NotFound', 'no such object', { provider: 's3', key: 'a/b' }), 'NotFound (s3 a/b): no such object'],
    [new CloudmuxError('Transient', 'reset'), 'Transient: reset'],
    [new CloudmuxError('InvalidKey', 'bad', { provider: 'fs', key: 'a\nb' }), 'InvalidKey (fs "a\\nb"): bad'],
    [new Error('plain'), 'plain'],
    ['a string', 'a string'],
    [new CloudmuxError('Transient', 'first line\n  second\tline '), 'Transient: first line second line'],
    [new Error('multi\r\nline'), 'multi line'],
  ])('%# → %s', (e, want) => {
    expect(describeError(e)).toBe(want);
  });

  it('cuts the line at maxLength (journal and report fields)', () => {
    expect(describeError(new CloudmuxError('Transient', 'x'.repeat(600)), { where: false, maxLength: 500 })).toHaveLength(500);
  });

  it('leaves out provider and key with where: false', () => {
    expect(describeError(new CloudmuxError('AuthFailed', 'refused', { provider: 'azure', key: 'probe' }), { where: false })).toBe('AuthFailed: refused');
  });
});

/**
 * The three mappers agree on what one situation is. Each row gives the situation as each
 * provider's SDK reports it.
 */
describe('the three provider mappers agree', () => {
  const s3 = (name: string, status: number, headers: Record<string, string> = {}): Error =>
    Object.assign(new Error(`${name} message`), { name, $metadata: { httpStatusCode: status }, $response: { headers } });
  const gcs = (code: number, reason?: string, headers?: Record<string, string>): Error =>
    Object.assign(new Error('m'), { code, errors: reason ? [{ reason }] : [], response: { headers } });
  const azure = (statusCode: number, code?: string, headers: Record<string, string> = {}): unknown =>
    ({ name: 'RestError', statusCode, code, message: 'm', details: { errorCode: code }, response: { headers: { get: (n: string) => headers[n] } } });
  const abortError = (): Error => Object.assign(new Error('This operation was aborted'), { name: 'AbortError' });
  const aborted = (): AbortSignal => AbortSignal.abort();
  const live = (): AbortSignal => new AbortController().signal;

  const map = {
    s3: (e: unknown, signal?: AbortSignal) => mapS3Error(e, { op: 'put', bucket: 'b', key: 'k', signal }),
    gcs: (e: unknown, signal?: AbortSignal) => mapGcsError(e, { op: 'put', bucket: 'b', key: 'k', signal }),
    azure: (e: unknown, signal?: AbortSignal) => mapAzureError(e, { key: 'k', container: 'c', account: 'a', signal }),
  };
  const situations: { name: string; want: ErrorCode; retryAfterMs?: number; s3: [unknown, AbortSignal?]; gcs: [unknown, AbortSignal?]; azure: [unknown, AbortSignal?] }[] = [
    { name: '503 meaning "slow down"', want: 'Throttled', s3: [s3('SlowDown', 503)], gcs: [gcs(503, 'rateLimitExceeded')], azure: [azure(503, 'ServerBusy')] },
    { name: '503 meaning "slow down", with Retry-After', want: 'Throttled', retryAfterMs: 2000, s3: [s3('SlowDown', 503, { 'retry-after': '2' })], gcs: [gcs(503, 'rateLimitExceeded', { 'retry-after': '2' })], azure: [azure(503, 'ServerBusy', { 'retry-after': '2' })] },
    { name: '429', want: 'Throttled', s3: [s3('TooManyRequests', 429)], gcs: [gcs(429)], azure: [azure(429)] },
    { name: 'any other 503', want: 'Transient', s3: [s3('SomethingElse', 503)], gcs: [gcs(503, 'backendError')], azure: [azure(503, 'SomethingElse')] },
    { name: 'an AbortError nobody asked for (a cut connection)', want: 'Transient', s3: [abortError(), live()], gcs: [abortError(), live()], azure: [abortError(), live()] },
    { name: 'an AbortError without any signal', want: 'Transient', s3: [abortError()], gcs: [abortError()], azure: [abortError()] },
    { name: 'the caller aborted', want: 'Aborted', s3: [abortError(), aborted()], gcs: [abortError(), aborted()], azure: [abortError(), aborted()] },
    { name: 'a reset connection', want: 'Transient', s3: [Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })], gcs: [Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })], azure: [Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })] },
    { name: '500', want: 'Transient', s3: [s3('InternalError', 500)], gcs: [gcs(500)], azure: [azure(500, 'InternalError')] },
  ];
  for (const s of situations) {
    for (const provider of ['s3', 'gcs', 'azure'] as const) {
      it(`${s.name} → ${s.want} on ${provider}`, () => {
        const [e, signal] = s[provider];
        const m = map[provider](e, signal);
        expect(m.code).toBe(s.want);
        expect(m.retryable).toBe(ERROR_SEMANTICS[s.want].retryable);
        if (s.retryAfterMs !== undefined) expect(m.retryAfterMs).toBe(s.retryAfterMs);
      });
    }
  }

  it('a signal fired with a cloudmux error (a deadline, a lost lease) fails with that error on every provider', () => {
    const deadline = new TransientError('get timed out after 100 ms', { provider: 'timeout' });
    const signal = AbortSignal.abort(deadline);
    const abortError = Object.assign(new Error('This operation was aborted'), { name: 'AbortError' });
    for (const provider of ['s3', 'gcs', 'azure'] as const) expect(map[provider](abortError, signal), provider).toBe(deadline);
  });
});
