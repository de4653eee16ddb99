import { IntegrityError } from '../../core/errors.js';
import type { GetResult } from '../../core/types.js';
import { MAX_MANIFEST_BYTES, markedSize, parseManifest, type Manifest } from './manifest.js';

/**
 * Reads and parses the manifest a get returned, refusing more than MAX_MANIFEST_BYTES and a
 * manifest whose size disagrees with the mark on its object (IntegrityError).
 */
export async function readManifest(r: GetResult, provider: string, key: string): Promise<Manifest> {
  const parts: Buffer[] = [];
  let have = 0;
  try {
    for await (const c of r.body) {
      const b = c as Buffer;
      have += b.byteLength;
      if (have > MAX_MANIFEST_BYTES) throw new IntegrityError(`chunk manifest of ${key} is over ${MAX_MANIFEST_BYTES} bytes`, { provider, key });
      parts.push(b);
    }
  } finally {
    r.body.destroy();
  }
  const manifest = parseManifest(Buffer.concat(parts, have), { provider, key });
  if (markedSize(r.meta.metadata) !== manifest.size) {
    throw new IntegrityError(`chunk manifest of ${key} describes ${manifest.size} bytes but its mark says ${String(markedSize(r.meta.metadata))}`, { provider, key });
  }
  return manifest;
}
