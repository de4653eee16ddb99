import { Readable } from 'node:stream';
import { holdErrors } from '../../src/core/body.js';

/** Sees every chunk of a download and may fail it at its end (verification). */
export interface DownloadCheck {
  update(chunk: Buffer): void;
  /** Called once the source ended; an error returned fails the body instead of ending it. */
  end(): Error | undefined;
}

/**
 * A download's bytes as the store hands them out: the transport's stream (node:http's response or
 * the SDK's) read straight through, without an async generator and iterator per download; its
 * errors mapped by `mapError`, so a reader only ever sees cloudmux errors. Destroying the body
 * destroys the source: an abandoned download never leaves unread bytes on a pooled connection.
 */
export class DownloadBody extends Readable {
  private ended = false;

  constructor(private readonly src: Readable, mapError: (e: unknown) => Error, check?: DownloadCheck) {
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
      // A source that closed without ending or failing was cut short.
      if (!this.ended && !this.destroyed) this.destroy(mapError(Object.assign(new Error('the download ended before its last byte'), { code: 'ERR_STREAM_PREMATURE_CLOSE' })));
    });
  }

  override _read(): void {
    this.src.resume();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.src.destroyed) this.src.destroy();
    callback(err);
  }
}
