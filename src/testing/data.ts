import { createCipheriv, createHash } from 'node:crypto';

/**
 * Deterministic pseudo-random bytes (AES-256-CTR keystream of a seed), fast enough to generate
 * hundreds of MiB in tests and benchmarks without holding them.
 */
export function pseudoRandomBytes(size: number, seed = 'cloudmux'): Buffer {
  const key = createHash('sha256').update(seed).digest();
  const c = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return c.update(Buffer.alloc(size));
}

export interface GeneratedStream {
  /** The chunks; pull-based, nothing is generated ahead of the consumer. */
  stream: AsyncIterable<Buffer>;
  /** SHA-256 (hex) of everything generated, once the stream has been consumed. */
  sha256(): string;
  /** Bytes generated so far. */
  generated(): number;
}

/**
 * A stream of `size` pseudo-random bytes in `chunkSize` chunks. `onChunk` runs before each chunk is
 * handed out (memory sampling, aborting at a point, …).
 */
export function generatedStream(size: number, opts: { chunkSize?: number; seed?: string; onChunk?: (generated: number) => void } = {}): GeneratedStream {
  const chunkSize = opts.chunkSize ?? 1024 * 1024;
  const key = createHash('sha256').update(opts.seed ?? 'cloudmux').digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const hash = createHash('sha256');
  let done = 0;
  let digest: string | undefined;
  const zeros = Buffer.alloc(chunkSize);
  async function* gen(): AsyncGenerator<Buffer> {
    while (done < size) {
      const n = Math.min(chunkSize, size - done);
      opts.onChunk?.(done);
      const chunk = cipher.update(n === chunkSize ? zeros : zeros.subarray(0, n));
      hash.update(chunk);
      done += n;
      yield chunk;
    }
  }
  return {
    stream: gen(),
    sha256: () => (digest ??= hash.digest('hex')),
    generated: () => done,
  };
}

/** SHA-256 (hex) of a stream, consumed chunk by chunk. */
export async function sha256OfStream(stream: AsyncIterable<Uint8Array>): Promise<{ sha256: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const c of stream) {
    h.update(c);
    bytes += c.byteLength;
  }
  return { sha256: h.digest('hex'), bytes };
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}
