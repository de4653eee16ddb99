import { Readable } from 'node:stream';
import { holdErrors } from './body.js';

/** Sees every chunk of a response body and may fail it at its end (verification). */
export interface BodyCheck {
  update(chunk: Buffer): void;
  /** Called once the source ended; an error returned fails the body instead of ending it. */
  end(): Error | undefined;
}

/**
 * A response body as a driver hands it out: the transport's stream (node:http's response or an
 * SDK's) read straight through — no Transform's writable side, no async generator and iterator per
 * download (~30 µs CPU per small object on cold code) — with its errors mapped by `mapError`, so a
 * reader only ever sees cloudmux errors, and an optional `check` over the bytes.
 *
 * - A source that closes without ending or failing (cut short) fails the body, mapped as a reset
 *   connection (`ECONNRESET`), instead of leaving its reader waiting.
 * - Destroying the body destroys the source: an abandoned download never leaves unread bytes on a
 *   pooled connection.
 * - A failure before anyone reads is kept for the reader ({@link holdErrors}).
 */
export class ResponseBody extends Readable {
  private ended = false;

  constructor(private readonly src: Readable, mapError: (e: unknown) => Error, check?: BodyCheck) {
    super();
    holdErrors(this);
    src.on('data', (chunk: Buffer) => {
      check?.update(chunk);
      if (!this.push(chunk)) src.pause();
    });
    src.once('end', () => {
      this.ended = true;
      const err = check?.end();
      if (err) this.destroy(err);
      else this.push(null);
    });
    src.on('error', (e) => this.destroy(mapError(e)));
    src.once('close', () => {
      if (!this.ended && !this.destroyed) this.destroy(mapError(Object.assign(new Error('the response body closed before its end'), { code: 'ECONNRESET' })));
    });
  }

  override _read(): void {
    this.src.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.src.destroyed) this.src.destroy();
    callback(error);
  }
}
