import { bodyChunks, collect } from '../../src/core/body.js';
import type { BlobStore, ObjectMeta } from '../../src/core/types.js';
import { carriedMetadata } from '../../src/core/system-metadata.js';
import { MemoryStore } from '../../providers/memory/index.js';
import { EncryptedStore, LocalKeyring, generateKey, type EncryptedStoreOptions } from '../../src/layers/encryption/index.js';

export interface Stack {
  inner: MemoryStore;
  store: EncryptedStore;
  keyring: LocalKeyring;
  keyId: string;
  /** The base64 key material, to check it never leaks. */
  secret: string;
}

export function stack(opts: Partial<EncryptedStoreOptions> = {}, inner = new MemoryStore()): Stack {
  const k = generateKey('primary');
  const keyring = new LocalKeyring({ [k.id]: k.key });
  return { inner, keyring, keyId: k.id, secret: k.key, store: new EncryptedStore(inner, { keyring, keyId: k.id, ...opts }) };
}

/** The stored (ciphertext) bytes and metadata of an object, read behind the encryption layer. */
export async function raw(inner: BlobStore, key: string): Promise<{ bytes: Buffer; meta: ObjectMeta }> {
  const r = await inner.get(key);
  return { bytes: await collect(r.body), meta: r.meta };
}

/**
 * Replaces an object's stored bytes and/or metadata behind the encryption layer, the way someone
 * with write access to the provider could (reserved names included; the digest is the inner store's).
 */
export async function rewrite(inner: BlobStore, key: string, bytes: Buffer, metadata: Record<string, string>, contentType?: string): Promise<void> {
  await inner.put(key, bytes, { metadata: carriedMetadata(metadata), contentType });
}

/**
 * Reads everything a get yields until it fails. Returns the bytes received and the error, so a
 * test can check that nothing but a correct prefix was ever handed out.
 */
export async function readUntilError(store: BlobStore, key: string, opts: Parameters<BlobStore['get']>[1] = {}): Promise<{ bytes: Buffer; error: unknown }> {
  const parts: Buffer[] = [];
  try {
    const r = await store.get(key, opts);
    for await (const c of r.body) parts.push(c as Buffer);
    return { bytes: Buffer.concat(parts), error: undefined };
  } catch (e) {
    return { bytes: Buffer.concat(parts), error: e };
  }
}

/** A store that counts what crosses it (for "metadata only" proofs). */
export class CountingStore implements BlobStore {
  puts = 0;
  putBytes = 0;
  copies = 0;
  metadataUpdates = 0;
  gets = 0;
  constructor(readonly inner: BlobStore) {}
  get provider(): string {
    return this.inner.provider;
  }
  get capabilities(): BlobStore['capabilities'] {
    return this.inner.capabilities;
  }
  reset(): void {
    this.puts = this.putBytes = this.copies = this.metadataUpdates = this.gets = 0;
  }
  put: BlobStore['put'] = async (key, body, opts) => {
    this.puts++;
    const bytes = await collect(bodyChunks(body));
    this.putBytes += bytes.byteLength;
    return this.inner.put(key, bytes, opts);
  };
  get: BlobStore['get'] = (key, opts) => {
    this.gets++;
    return this.inner.get(key, opts);
  };
  head: BlobStore['head'] = (key, opts) => this.inner.head(key, opts);
  delete: BlobStore['delete'] = (key, opts) => this.inner.delete(key, opts);
  deleteMany: BlobStore['deleteMany'] = (keys, opts) => this.inner.deleteMany(keys, opts);
  list: BlobStore['list'] = (opts) => this.inner.list(opts);
  copy: BlobStore['copy'] = (src, dst, opts) => {
    this.copies++;
    return this.inner.copy(src, dst, opts);
  };
  updateMetadata: BlobStore['updateMetadata'] = (key, opts) => {
    this.metadataUpdates++;
    return this.inner.updateMetadata(key, opts);
  };
  presign: BlobStore['presign'] = (key, opts) => this.inner.presign(key, opts);
  close: BlobStore['close'] = () => this.inner.close();
  toString(): string {
    return `Counting(${this.inner.toString()})`;
  }
}
