import type { Command } from 'commander';
import type { BlobStore } from '../core/types.js';
import type { ChunkedStore as ChunkedStoreClass, TransferStats } from '../layers/chunked/index.js';
import { keyringFor, type EncryptionFlags } from './encryption-flags.js';

/**
 * `--chunked` of cp, migrate and verify: both sides go through a ChunkedStore, so large objects are
 * written as deduplicated content-defined chunks (only the chunks the destination lacks are sent)
 * and manifests are read back as the objects they describe. With `--encrypt-with` the chunk ids
 * are keyed by that key (docs/chunk-format.md); with `--decrypt` every keyring key may have keyed
 * what is read.
 */
export interface ChunkedFlags extends EncryptionFlags {
  chunked?: boolean;
}

export function addChunkedOption(cmd: Command): Command {
  return cmd.option('--chunked', 'store large objects as deduplicated content-defined chunks and read chunked ones (only chunks the destination lacks are sent; see cloudmux gc)');
}

/**
 * True when `store` holds chunks under the default chunk prefix: a chunked tree, whose manifests
 * mean the objects they describe (one listing request).
 */
export async function holdsChunks(store: BlobStore): Promise<boolean> {
  const { DEFAULT_CHUNK_PREFIX } = await import('../layers/chunked/manifest.js');
  for await (const _item of store.list({ prefix: DEFAULT_CHUNK_PREFIX, pageSize: 1 })) return true;
  return false;
}

/** `store` wrapped in a ChunkedStore when `--chunked` is given; `store` itself otherwise. */
export async function chunkedStore(store: BlobStore, flags: ChunkedFlags): Promise<BlobStore> {
  if (!flags.chunked) return store;
  const { ChunkedStore, chunkIdKeyFromKeyring } = await import('../layers/chunked/index.js');
  let idKey: Uint8Array | undefined;
  const readIdKeys: Uint8Array[] = [];
  if (flags.encryptWith !== undefined || flags.decrypt) {
    const keyring = await keyringFor(flags);
    if (flags.encryptWith !== undefined) idKey = await chunkIdKeyFromKeyring(keyring, flags.encryptWith);
    if (flags.decrypt) {
      for (const id of (keyring as { keyIds?: string[] }).keyIds ?? []) readIdKeys.push(await chunkIdKeyFromKeyring(keyring, id));
    }
  }
  return new ChunkedStore(store, { idKey, readIdKeys });
}

/** What the ChunkedStore behind `store` moved (undefined when it is not one). */
export function chunkedTotals(store: BlobStore): TransferStats | undefined {
  return 'chunkPrefix' in store ? (store as Partial<ChunkedStoreClass>).totals : undefined;
}
