import { describe, expect, it } from 'vitest';
import { TransientError } from '../../src/core/index.js';
import { createDaemonLogger } from '../../src/daemon/logger.js';
import { LogCapture } from './helpers.js';

describe('daemon logger', () => {
  it('logs an error as code and message, never its cause chain (SDK errors carry request details)', () => {
    const capture = new LogCapture();
    const log = createDaemonLogger('info', capture);
    const sdkError = Object.assign(new Error('socket hang up'), { $metadata: {}, request: { headers: { authorization: 'AWS4-HMAC-SHA256 Credential=AKIASECRET/sig' } } });
    log.error({ event: 'x', err: new TransientError('connection reset', { provider: 's3', key: 'k', cause: sdkError }) }, 'failed');
    const [line] = capture.events('x');
    expect(line!.err).toEqual({ code: 'Transient', message: 'connection reset', provider: 's3', key: 'k' });
    expect(capture.text()).not.toContain('AKIASECRET');
  });

  it('redacts secret-looking fields should a config fragment ever be logged', () => {
    const capture = new LogCapture();
    createDaemonLogger('info', capture).info({
      event: 'y', options: { secretAccessKey: 's3cr3t' }, provider: { connectionString: 'AccountKey=abc', name: 'az' },
    }, 'oops');
    const [line] = capture.events('y');
    expect(line).toMatchObject({ options: '[redacted]', provider: { connectionString: '[redacted]', name: 'az' } });
    expect(capture.text()).not.toMatch(/s3cr3t|AccountKey=abc/);
  });
});
