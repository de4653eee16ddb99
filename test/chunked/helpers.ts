import { createCipheriv, createHash } from 'node:crypto';
import { ForwardingStore } from '../../src/layers/forwarding-store.js';
import { bodyChunks } from '../../src/core/body.js';
import type { Body, GetOptions, GetResult, ObjectMeta, PutOptions } from '../../src/core/types.js';

/** `size` pseudo-random bytes fixed by `seed` (SHA-256 in counter mode), the same on every machine. */
export function deterministicBytes(size: number, seed = 0): Buffer {
  const out = Buffer.alloc(size);
  let at = 0;
  for (let i = 0; at < size; i++) {
    const d = createHash('sha256').update(`cloudmux-test-${seed === 0 ? '' : `${seed}-`}${i}`).digest();
    d.copy(out, at);
    at += d.byteLength;
  }
  return out;
}


/** `size` fast pseudo-random bytes fixed by `seed` (AES-256-CTR keystream). */
export function seededBytes(size: number, seed: number): Buffer {
  const key = createHash('sha256').update(`seed-${seed}`).digest();
  const c = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(size)), c.final()]);
}

/** Counts what reaches the store below it: bytes and requests of puts and gets, by key. */
export class CountingStore extends ForwardingStore {
  protected readonly layerName = 'Counting';
  bytesPut = 0;
  puts: string[] = [];
  gets: string[] = [];

  reset(): void {
    this.bytesPut = 0;
    this.puts = [];
    this.gets = [];
  }

  override async put(key: string, body: Body, opts?: PutOptions): Promise<ObjectMeta> {
    this.puts.push(key);
    const count = async function* (self: CountingStore): AsyncGenerator<Buffer> {
      for await (const c of bodyChunks(body)) {
        self.bytesPut += c.byteLength;
        yield c;
      }
    };
    if (typeof body === 'string' || body instanceof Uint8Array) {
      this.bytesPut += typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
      return this.inner.put(key, body, opts);
    }
    return this.inner.put(key, count(this), opts);
  }

  override async get(key: string, opts?: GetOptions): Promise<GetResult> {
    this.gets.push(key);
    return this.inner.get(key, opts);
  }
}

/** Bytes of every object the store holds (what it costs to keep). */
export async function storedBytes(store: { list: (o?: object) => AsyncIterable<{ type: string; size?: number }> }): Promise<number> {
  let n = 0;
  for await (const item of store.list()) if (item.type === 'object') n += item.size ?? 0;
  return n;
}

/** `seededBytes(size, seed)` with its middle third replaced by bytes of `editSeed` (a new version of it). */
export function editedBytes(size: number, seed: number, editSeed?: number): Buffer {
  const data = seededBytes(size, seed);
  if (editSeed !== undefined) seededBytes(Math.floor(size / 3), editSeed).copy(data, Math.floor(size / 3));
  return data;
}
