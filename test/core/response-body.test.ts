import { PassThrough, Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ResponseBody } from '../../src/core/response-body.js';
import { collect } from '../../src/core/index.js';

/** The S3 driver's response body wrapper: bytes through unchanged, failures mapped, the source released. */

const mapped = (e: unknown): Error => Object.assign(new Error(`mapped: ${(e as Error).message}`), { name: 'Mapped' });

describe('ResponseBody (the S3 and Azure data paths)', () => {
  it('passes every byte through in order, holding the source back while the reader is slow', async () => {
    const chunks = Array.from({ length: 64 }, (_, i) => Buffer.alloc(16 * 1024, i));
    let pulled = 0;
    const src = new Readable({
      highWaterMark: 16 * 1024,
      read() {
        this.push(pulled < chunks.length ? chunks[pulled++] : null);
      },
    });
    const body = new ResponseBody(src, mapped);
    const got: Buffer[] = [];
    for await (const c of body) {
      got.push(c as Buffer);
      if (got.length === 1) {
        await sleep(20);
        // Backpressure: with one chunk read, the source has not been drained into memory.
        expect(pulled).toBeLessThan(16);
      }
    }
    expect(Buffer.concat(got).equals(Buffer.concat(chunks))).toBe(true);
  });

  it('maps a source error for readers that started before it and after it', async () => {
    const src = new PassThrough();
    const body = new ResponseBody(src, mapped);
    const reading = collect(body);
    src.write('abc');
    src.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
    await expect(reading).rejects.toMatchObject({ name: 'Mapped', message: 'mapped: read ECONNRESET' });

    const src2 = new PassThrough();
    const late = new ResponseBody(src2, mapped);
    // As with any stream, an error with no listener at all would be an uncaught exception.
    late.on('error', () => undefined);
    src2.destroy(new Error('gone'));
    await sleep(5);
    await expect(collect(late)).rejects.toMatchObject({ name: 'Mapped', message: 'mapped: gone' });
  });

  it('a source that closes without ending or failing fails the body (no reader left waiting)', async () => {
    const src = new PassThrough();
    const body = new ResponseBody(src, mapped);
    const reading = collect(body);
    src.write('abc');
    src.destroy();
    await expect(reading).rejects.toMatchObject({ name: 'Mapped', message: 'mapped: the response body closed before its end' });
  });

  it('a reader that stops early destroys the source (the socket goes back)', async () => {
    const src = new PassThrough();
    const body = new ResponseBody(src, mapped);
    src.write(Buffer.alloc(1000));
    for await (const _ of body) break;
    await sleep(1);
    expect(src.destroyed).toBe(true);
  });

  it('an empty source is an empty body', async () => {
    expect((await collect(new ResponseBody(Readable.from([]), mapped))).byteLength).toBe(0);
  });
});
