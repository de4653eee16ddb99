import { Readable } from 'node:stream';
import { holdErrors } from '../../src/core/body.js';

/**
 * A response body whose failures arrive already mapped (`map`), and whose destruction releases
 * the source (the socket). What `src.pipe(new PassThrough())` with an error listener gives, without
 * a Transform's writable side: that costs ~30 µs CPU per small object on cold code, ~6 µs warm.
 * A source that closes without ending and without an error (which IncomingMessage does not do)
 * fails the body instead of leaving its reader waiting.
 */
export class MappedBody extends Readable {
  constructor(private readonly src: Readable, map: (e: unknown) => Error) {
    super();
    holdErrors(this);
    src.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) src.pause();
    });
    src.once('end', () => this.push(null));
    src.once('error', (e) => this.destroy(map(e)));
    src.once('close', () => {
      if (!src.readableEnded && !this.destroyed) this.destroy(map(Object.assign(new Error('the response body closed before its end'), { code: 'ECONNRESET' })));
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
